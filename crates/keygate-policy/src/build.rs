//! What an action builder gets: its config (strictly deserialized), the CEL compiler, the
//! process-wide dependencies, and helpers that turn problems into located diagnostics.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use keygate_cel::{Compiler, Expression, SecretSource, Template};
use keygate_ratelimit::{BudgetStore, RateLimiter};
use serde::de::DeserializeOwned;

use crate::access_keys::AccessKeys;
use crate::action::Phase;
use crate::diagnostic::{position_in_scalar, Diagnostic};
use crate::document::{from_node, join_key, Node, NodeValue};
use crate::internal::InternalEndpoints;
use crate::ip_policies::IpPolicies;
use keygate_http::HttpClient;

/// Process-wide services actions are built with. Cloning is cheap.
#[derive(Clone)]
pub struct Deps {
    pub secrets: Arc<dyn SecretSource>,
    pub http: HttpClient,
    pub rate_limiter: Arc<dyn RateLimiter>,
    /// Access keys' token and spend budgets.
    pub budgets: Arc<dyn BudgetStore>,
    /// `--provider-url ID=URL` overrides of built-in provider base URLs.
    pub provider_urls: Arc<HashMap<String, String>>,
    /// True for `policy check`: builders must not fetch anything (JWKS, ...).
    pub offline: bool,
    /// The data dir's access keys (`None` for `policy check`).
    pub access_keys: Option<Arc<dyn AccessKeys>>,
    /// The data dir's IP policies for `restrict-ips` (`None` for `policy check`).
    pub ip_policies: Option<Arc<dyn IpPolicies>>,
    /// Seals the login actions' session cookies (`oauth`, `openid-connect`).
    pub session_key: SessionKey,
    /// The internal endpoints `forward-internal` may target (`None` for `policy check`: any
    /// name is accepted at load).
    pub internal_endpoints: Option<Arc<dyn InternalEndpoints>>,
}

impl Deps {
    /// What `keygate policy check` builds with: `secrets`, in-memory rate limits and budgets,
    /// the default HTTP client, no stores, nothing fetched while building, a random session key.
    pub fn offline(secrets: Arc<dyn SecretSource>) -> Self {
        Self {
            secrets,
            http: HttpClient::default(),
            rate_limiter: Arc::new(keygate_ratelimit::MemoryLimiter::default()),
            budgets: Arc::new(keygate_ratelimit::MemoryBudgets::default()),
            provider_urls: Arc::default(),
            offline: true,
            access_keys: None,
            ip_policies: None,
            session_key: SessionKey::random(),
            internal_endpoints: None,
        }
    }

    /// [`Deps::offline`] with empty in-memory secrets.
    #[cfg(test)]
    pub(crate) fn for_test() -> Self {
        Self::offline(Arc::new(keygate_cel::MemorySecrets::default()))
    }
}

/// A 256-bit key for sealing session cookies: derived from the master key by `serve`, so sessions
/// outlive restarts and hold across gateways sharing a data dir; random where nothing is served.
#[derive(Clone)]
pub struct SessionKey(Arc<zeroize::Zeroizing<[u8; 32]>>);

impl SessionKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(Arc::new(zeroize::Zeroizing::new(bytes)))
    }

    /// A fresh key from the OS random source (`policy check`, tests).
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the OS random source is available");
        Self::new(bytes)
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey([REDACTED])")
    }
}

/// The context one action is built in.
pub struct BuildContext<'a> {
    pub compiler: &'a Compiler,
    pub deps: &'a Deps,
    pub phase: Phase,
    /// The action's node (`{type, config}`).
    pub(crate) node: &'a Node,
    /// The action's field path, e.g. `on_http_request[1].actions[0]`.
    pub(crate) path: String,
    /// The whole policy text, for [`BuildContext::results_read`].
    pub(crate) source: &'a str,
    pub(crate) warnings: RefCell<Vec<Diagnostic>>,
}

impl<'a> BuildContext<'a> {
    pub(crate) fn new(
        compiler: &'a Compiler,
        deps: &'a Deps,
        phase: Phase,
        node: &'a Node,
        path: String,
        source: &'a str,
    ) -> Self {
        Self {
            compiler,
            deps,
            phase,
            node,
            path,
            source,
            warnings: RefCell::new(Vec::new()),
        }
    }

    /// Whether anything in the policy can read `actions.ngrok.<result_name>`: the name appears, or
    /// the whole `actions.ngrok` map (or `actions[...]`) is used. Actions whose results are costly
    /// to build skip them when this is false.
    pub fn results_read(&self, result_name: &str) -> bool {
        self.source.contains(result_name)
            || self.source.contains("actions[")
            || self
                .source
                .match_indices("actions.ngrok")
                .any(|(at, needle)| !self.source[at + needle.len()..].starts_with('.'))
    }

    /// The raw `config` node, if the action has one.
    pub fn config_node(&self) -> Option<&'a Node> {
        self.node
            .get("config")
            .filter(|n| n.value != NodeValue::Null)
    }

    /// Deserializes `config` into `T` (an absent config reads as an empty map).
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, Diagnostic> {
        let path = join_key(&self.path, "config");
        let empty = Node {
            value: NodeValue::Map(Vec::new()),
            pos: self.node.pos,
        };
        let node = self.config_node().unwrap_or(&empty);
        from_node(node, &path).map_err(|err| {
            let (pos, path) = err.at.unwrap_or((node.pos, path));
            Diagnostic::error(pos, path, err.message)
        })
    }

    /// An error at `field`, a path relative to `config` (`allow[0]`, `headers.x-a`; `""` for config itself).
    pub fn error(&self, field: &str, message: impl Into<String>) -> Diagnostic {
        let (pos, path) = self.locate(field);
        Diagnostic::error(pos, path, message)
    }

    /// Records a warning at `field` (relative to `config`); loading goes on.
    pub fn warn(&self, field: &str, message: impl Into<String>) {
        let (pos, path) = self.locate(field);
        self.warnings
            .borrow_mut()
            .push(Diagnostic::warning(pos, path, message));
    }

    /// Compiles a `${...}` template found at `field`.
    pub fn template(&self, field: &str, source: &str) -> Result<Template, Diagnostic> {
        self.compiler.template(source).map_err(|err| {
            self.error_within(
                field,
                source,
                err.offset,
                format!("invalid interpolation: {err}"),
            )
        })
    }

    /// Compiles a CEL expression found at `field`.
    pub fn expression(&self, field: &str, source: &str) -> Result<Expression, Diagnostic> {
        self.compiler.expression(source).map_err(|err| {
            self.error_within(
                field,
                source,
                err.offset,
                format!("invalid expression: {err}"),
            )
        })
    }

    /// An error at byte `offset` of the string `value` written at `field` (at the field when
    /// the exact place cannot be told).
    fn error_within(
        &self,
        field: &str,
        value: &str,
        offset: Option<usize>,
        message: String,
    ) -> Diagnostic {
        let (pos, path) = self.locate(field);
        let pos = position_in_scalar(self.source, pos, value, offset);
        Diagnostic::error(pos, path, message)
    }

    fn locate(&self, field: &str) -> (crate::document::Position, String) {
        let base = join_key(&self.path, "config");
        let Some(mut node) = self.config_node() else {
            return (self.node.pos, base);
        };
        for step in field_steps(field) {
            let next = match (&node.value, step) {
                (NodeValue::Map(_), Step::Key(key)) => node.get(key),
                (NodeValue::Seq(items), Step::Index(i)) => items.get(i),
                _ => None,
            };
            match next {
                Some(next) => node = next,
                None => break,
            }
        }
        let path = if field.is_empty() {
            base
        } else if field.starts_with('[') {
            format!("{base}{field}")
        } else {
            join_key(&base, field)
        };
        (node.pos, path)
    }
}

enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// Splits `a.b[2].c` into key and index steps.
fn field_steps(field: &str) -> Vec<Step<'_>> {
    let mut steps = Vec::new();
    for part in field.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            steps.push(Step::Key(key));
        }
        while let Some((index, tail)) = rest.split_once(']') {
            if let Ok(i) = index.parse() {
                steps.push(Step::Index(i));
            }
            rest = tail.strip_prefix('[').unwrap_or(tail);
        }
    }
    steps
}
