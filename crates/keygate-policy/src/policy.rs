//! Turning a policy document into a compiled [`Policy`]: phases, rules and actions checked
//! strictly, every error collected with its position.

use std::sync::Arc;

use keygate_cel::{Compiler, Expression};

use crate::access_keys::AccessKeyCheck;
use crate::action::{Action, ActionKind, Phase, Termination};
use crate::actions;
use crate::build::{BuildContext, Deps};
use crate::diagnostic::{position_in_scalar, Diagnostic, PolicyError, Severity};
use crate::document::{join_key, parse, Node, NodeValue, Position};

/// A compiled Traffic Policy, ready to run requests.
pub struct Policy {
    pub(crate) on_tcp_connect: Vec<Rule>,
    pub(crate) on_http_request: Vec<Rule>,
    pub(crate) on_http_response: Vec<Rule>,
    /// Shared with every event stream the phase is running on.
    pub(crate) on_event_stream_message: Arc<[Rule]>,
    /// Warnings found while loading (deprecated keys, ...).
    pub warnings: Vec<Diagnostic>,
    /// Run before the first rule when the `ai-gateway` action sets `access_keys`.
    pub(crate) access_keys: Option<AccessKeyCheck>,
}

/// One compiled rule.
pub(crate) struct Rule {
    /// The rule's `name`, or its path (`on_http_request[2]`) when unnamed.
    pub name: Arc<str>,
    pub expressions: Vec<Expression>,
    pub actions: Vec<CompiledAction>,
}

pub(crate) struct CompiledAction {
    pub kind: &'static ActionKind,
    pub action: Box<dyn Action>,
}

/// Phase keys and what they run as; `inbound` and `outbound` are the deprecated names.
const PHASES: [(&str, Phase); 6] = [
    ("on_tcp_connect", Phase::OnTcpConnect),
    ("on_http_request", Phase::OnHttpRequest),
    ("on_http_response", Phase::OnHttpResponse),
    ("on_event_stream_message", Phase::OnEventStreamMessage),
    ("inbound", Phase::OnHttpRequest),
    ("outbound", Phase::OnHttpResponse),
];

impl Policy {
    /// Parses and compiles policy text (YAML or JSON). `file` names it in diagnostics.
    pub fn compile(
        file: &str,
        text: &str,
        compiler: &Compiler,
        deps: &Deps,
    ) -> Result<Policy, PolicyError> {
        let mut diagnostics = Vec::new();
        let policy = match parse(text) {
            Ok(root) => Compilation {
                compiler,
                deps,
                source: text,
                diagnostics: &mut diagnostics,
            }
            .policy(&root),
            Err(err) => {
                diagnostics.push(Diagnostic::error(
                    err.pos,
                    "",
                    format!("invalid YAML/JSON: {}", err.message),
                ));
                None
            }
        };
        match policy {
            Some(mut policy) if !diagnostics.iter().any(|d| d.severity == Severity::Error) => {
                policy.warnings = diagnostics;
                Ok(policy)
            }
            _ => Err(PolicyError {
                file: file.to_owned(),
                diagnostics,
            }),
        }
    }

    /// Rule names per phase, for logs and tests.
    pub fn rule_names(&self, phase: Phase) -> Vec<&str> {
        self.rules(phase).iter().map(|r| &*r.name).collect()
    }

    pub(crate) fn rules(&self, phase: Phase) -> &[Rule] {
        match phase {
            Phase::OnTcpConnect => &self.on_tcp_connect,
            Phase::OnHttpRequest => &self.on_http_request,
            Phase::OnHttpResponse => &self.on_http_response,
            Phase::OnEventStreamMessage => &self.on_event_stream_message,
        }
    }
}

struct Compilation<'a> {
    compiler: &'a Compiler,
    deps: &'a Deps,
    source: &'a str,
    diagnostics: &'a mut Vec<Diagnostic>,
}

impl Compilation<'_> {
    fn error(&mut self, pos: Position, path: impl Into<String>, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::error(pos, path, message));
    }

    fn error_count(&self) -> usize {
        (self.diagnostics.iter())
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    fn policy(&mut self, root: &Node) -> Option<Policy> {
        let entries = match &root.value {
            NodeValue::Map(entries) => entries,
            NodeValue::Null => {
                self.error(
                    root.pos,
                    "",
                    "the policy is empty: expected on_http_request and/or on_http_response",
                );
                return None;
            }
            _ => {
                self.error(
                    root.pos,
                    "",
                    format!("expected a map of phases, found {}", root.type_name()),
                );
                return None;
            }
        };
        let mut policy = Policy {
            on_tcp_connect: Vec::new(),
            on_http_request: Vec::new(),
            on_http_response: Vec::new(),
            on_event_stream_message: Arc::new([]),
            warnings: Vec::new(),
            access_keys: None,
        };
        let mut seen: Vec<Phase> = Vec::new();
        for (key, node) in entries {
            let Some(&(_, phase)) = PHASES.iter().find(|(name, _)| name == key) else {
                self.error(
                    node.pos,
                    key.as_str(),
                    format!("unknown key '{key}': expected on_tcp_connect, on_http_request, on_http_response or on_event_stream_message"),
                );
                continue;
            };
            if key != phase.key() {
                self.diagnostics.push(Diagnostic::warning(
                    node.pos,
                    key.as_str(),
                    format!("'{key}' is deprecated; use '{}'", phase.key()),
                ));
            }
            if seen.contains(&phase) {
                self.error(
                    node.pos,
                    key.as_str(),
                    format!("{} is given twice (legacy and current name)", phase.key()),
                );
                continue;
            }
            seen.push(phase);
            let rules = self.rules(phase, key, node);
            match phase {
                Phase::OnTcpConnect => policy.on_tcp_connect = rules,
                Phase::OnHttpRequest => policy.on_http_request = rules,
                Phase::OnHttpResponse => policy.on_http_response = rules,
                Phase::OnEventStreamMessage => policy.on_event_stream_message = rules.into(),
            }
        }
        self.check_single_ai_gateway(&policy);
        self.check_single_login(&policy);
        policy.access_keys = self.access_key_check(&policy);
        Some(policy)
    }

    fn rules(&mut self, phase: Phase, key: &str, node: &Node) -> Vec<Rule> {
        let items = match &node.value {
            NodeValue::Seq(items) => items,
            NodeValue::Null => return Vec::new(),
            _ => {
                self.error(
                    node.pos,
                    key,
                    format!("expected a list of rules, found {}", node.type_name()),
                );
                return Vec::new();
            }
        };
        let mut rules = Vec::new();
        let mut unreachable_after: Option<String> = None;
        for (i, item) in items.iter().enumerate() {
            let path = format!("{key}[{i}]");
            if let Some(earlier) = &unreachable_after {
                self.error(
                    item.pos,
                    path.as_str(),
                    format!("rule can never run: {earlier} always ends the phase"),
                );
            }
            let errors_before = self.error_count();
            if let Some(rule) = self.rule(phase, &path, item) {
                // A rule whose expressions failed to compile is not unconditional: no
                // follow-on "can never run" errors for the rules after it.
                let always_matches =
                    rule.expressions.is_empty() && self.error_count() == errors_before;
                let ends = rule
                    .actions
                    .last()
                    .is_some_and(|a| a.kind.termination == Termination::Always);
                if always_matches && ends && unreachable_after.is_none() {
                    unreachable_after = Some(path.clone());
                }
                rules.push(rule);
            }
        }
        rules
    }

    fn rule(&mut self, phase: Phase, path: &str, node: &Node) -> Option<Rule> {
        let NodeValue::Map(entries) = &node.value else {
            self.error(
                node.pos,
                path,
                format!(
                    "expected a rule (a map with actions), found {}",
                    node.type_name()
                ),
            );
            return None;
        };
        // ngrok's AI Gateway guides write the action itself where a rule goes
        // (`on_http_request: [{type: ai-gateway, config: ...}]`); its meaning is plain.
        if node.get("type").is_some() && node.get("actions").is_none() {
            self.diagnostics.push(Diagnostic::warning(
                node.pos,
                path,
                "an action written in place of a rule: loaded as a rule with this one action \
                 (ngrok refuses this shape; the portable form is `- actions: [{type: ...}]`)",
            ));
            let action = self.action(phase, path, node)?;
            return Some(Rule {
                name: path.into(),
                expressions: Vec::new(),
                actions: vec![action],
            });
        }
        let mut name = None;
        let mut expressions = Vec::new();
        let mut actions_node = None;
        for (key, value) in entries {
            let field = join_key(path, key);
            match key.as_str() {
                "name" => match &value.value {
                    NodeValue::Str(s) => name = Some(s.clone()),
                    _ => self.error(value.pos, field, "expected a string"),
                },
                "expressions" => expressions = self.expressions(&field, value),
                "actions" => actions_node = Some(value),
                "type" | "config" => self.error(
                    value.pos,
                    field,
                    format!(
                        "unknown key '{key}' in a rule: actions go in the rule's 'actions' list"
                    ),
                ),
                _ => self.error(
                    value.pos,
                    field,
                    format!("unknown key '{key}': a rule has name, expressions and actions"),
                ),
            }
        }
        let actions_path = join_key(path, "actions");
        let actions = match actions_node.map(|n| (n, &n.value)) {
            Some((_, NodeValue::Seq(items))) if !items.is_empty() => {
                let mut actions = Vec::new();
                let mut always_ended: Option<usize> = None;
                for (i, item) in items.iter().enumerate() {
                    let action_path = format!("{actions_path}[{i}]");
                    if let Some(earlier) = always_ended {
                        self.error(
                            item.pos,
                            action_path.as_str(),
                            format!("action can never run: {actions_path}[{earlier}] always ends the phase"),
                        );
                    }
                    if let Some(action) = self.action(phase, &action_path, item) {
                        if action.kind.termination == Termination::Always && always_ended.is_none()
                        {
                            always_ended = Some(i);
                        }
                        actions.push(action);
                    }
                }
                actions
            }
            Some((n, _)) => {
                self.error(n.pos, actions_path, "expected a non-empty list of actions");
                Vec::new()
            }
            None => {
                self.error(node.pos, path, "a rule needs at least one action");
                Vec::new()
            }
        };
        let name: Arc<str> = name.unwrap_or_else(|| path.to_owned()).into();
        Some(Rule {
            name,
            expressions,
            actions,
        })
    }

    fn expressions(&mut self, path: &str, node: &Node) -> Vec<Expression> {
        let items = match &node.value {
            NodeValue::Seq(items) => items,
            NodeValue::Null => return Vec::new(),
            _ => {
                self.error(
                    node.pos,
                    path,
                    format!(
                        "expected a list of CEL expressions, found {}",
                        node.type_name()
                    ),
                );
                return Vec::new();
            }
        };
        let mut compiled = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let field = format!("{path}[{i}]");
            let NodeValue::Str(source) = &item.value else {
                self.error(
                    item.pos,
                    field,
                    format!(
                        "expected a CEL expression string, found {}",
                        item.type_name()
                    ),
                );
                continue;
            };
            match self.compiler.condition(source) {
                Ok(expr) => compiled.push(expr),
                Err(err) => {
                    let pos = position_in_scalar(self.source, item.pos, source, err.offset);
                    self.error(pos, field, format!("invalid expression: {err}"))
                }
            }
        }
        compiled
    }

    fn action(&mut self, phase: Phase, path: &str, node: &Node) -> Option<CompiledAction> {
        let NodeValue::Map(entries) = &node.value else {
            self.error(
                node.pos,
                path,
                format!(
                    "expected an action (a map with type and config), found {}",
                    node.type_name()
                ),
            );
            return None;
        };
        for (key, value) in entries {
            if key != "type" && key != "config" {
                self.error(
                    value.pos,
                    join_key(path, key),
                    format!("unknown key '{key}': an action has type and config"),
                );
            }
        }
        let type_path = join_key(path, "type");
        let type_name = match node.get("type").map(|n| (n, &n.value)) {
            Some((_, NodeValue::Str(s))) => s.as_str(),
            Some((n, _)) => {
                self.error(n.pos, type_path, "expected the action type as a string");
                return None;
            }
            None => {
                self.error(node.pos, path, "an action needs a 'type'");
                return None;
            }
        };
        let type_pos = node.get("type").map_or(node.pos, |n| n.pos);
        let Some(kind) = actions::find(type_name) else {
            self.error(type_pos, type_path, unknown_action_message(type_name));
            return None;
        };
        if !kind.phases.contains(&phase) {
            self.error(
                type_pos,
                type_path,
                format!("action '{}' cannot run in {}", kind.name, phase.key()),
            );
            return None;
        }
        let config = node.get("config").filter(|n| n.value != NodeValue::Null);
        if kind.needs_config && config.is_none() {
            self.error(
                node.pos,
                path,
                format!("action '{}' needs a config", kind.name),
            );
            return None;
        }
        let cx = BuildContext::new(
            self.compiler,
            self.deps,
            phase,
            node,
            path.to_owned(),
            self.source,
        );
        let built = (kind.build)(&cx);
        self.diagnostics.extend(cx.warnings.into_inner());
        match built {
            Ok(action) => Some(CompiledAction { kind, action }),
            Err(diagnostic) => {
                self.diagnostics.push(diagnostic);
                None
            }
        }
    }

    fn check_single_ai_gateway(&mut self, policy: &Policy) {
        let count = policy
            .on_http_request
            .iter()
            .flat_map(|r| &r.actions)
            .filter(|a| a.kind.name == "ai-gateway")
            .count();
        if count > 1 {
            self.error(
                Position { line: 1, col: 1 },
                "on_http_request",
                format!("a policy may hold at most one ai-gateway action, found {count}"),
            );
        }
    }

    /// ngrok's ERR_NGROK_2239: one `oauth` or `openid-connect` action per policy (they share the
    /// callback and login paths).
    fn check_single_login(&mut self, policy: &Policy) {
        let count = policy
            .on_http_request
            .iter()
            .flat_map(|r| &r.actions)
            .filter(|a| matches!(a.kind.name, "oauth" | "openid-connect"))
            .count();
        if count > 1 {
            self.error(
                Position { line: 1, col: 1 },
                "on_http_request",
                format!(
                    "a policy may hold at most one oauth or openid-connect action, found {count}"
                ),
            );
        }
    }

    /// The access-key check the policy's actions ask for; the data dir's keys must be there
    /// unless the policy is only checked.
    fn access_key_check(&mut self, policy: &Policy) -> Option<AccessKeyCheck> {
        let mode = policy
            .on_http_request
            .iter()
            .flat_map(|r| &r.actions)
            .find_map(|a| a.action.access_keys())?;
        match &self.deps.access_keys {
            Some(keys) => Some(AccessKeyCheck {
                keys: keys.clone(),
                mode,
            }),
            None => {
                if !self.deps.offline {
                    self.error(
                        Position { line: 1, col: 1 },
                        "on_http_request",
                        "access_keys needs the data dir's key store, which this gateway has not opened",
                    );
                }
                None
            }
        }
    }
}

/// ngrok action types Keygate does not run, and why: each needs something outside a self-hosted
/// gateway, or has a Keygate equivalent.
const UNSUPPORTED_ACTIONS: [(&str, &str); 4] = [
    (
        "terminate-tls",
        "Keygate terminates TLS itself: use `keygate serve --tls-cert/--tls-key` (certificates reload when the files change)",
    ),
    (
        "owasp-crs-request",
        "it runs ngrok's hosted Coraza WAF with the OWASP Core Rule Set, which Keygate does not embed; put a WAF in front of Keygate",
    ),
    (
        "owasp-crs-response",
        "it runs ngrok's hosted Coraza WAF with the OWASP Core Rule Set, which Keygate does not embed; put a WAF in front of Keygate",
    ),
    (
        "saml",
        "ngrok has not released it (its docs say coming soon); use openid-connect",
    ),
];

fn unknown_action_message(name: &str) -> String {
    if let Some((_, why)) = UNSUPPORTED_ACTIONS.iter().find(|(known, _)| *known == name) {
        return format!("action type '{name}' is not supported by Keygate: {why}");
    }
    let known: Vec<&str> = actions::REGISTRY.iter().map(|k| k.name).collect();
    format!(
        "unknown action type '{name}'; Keygate supports: {}",
        known.join(", ")
    )
}
