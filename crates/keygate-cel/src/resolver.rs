//! Variable lookup for one evaluation: answers `req.url.path`, `conn.tls.sni`, `vars.x`, ...
//! from the borrowed [`Scope`], computing each value only when an expression reads it.
//!
//! The interpreter asks for the longest qualified name first (`req.url.path`, then `req.url`,
//! then `req`), so `req.url` can be a plain string while `req.url.path` is still answered.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::SystemTime;

use cel::common::traits::{Container, Indexer};
use cel::common::types::{CelBool, CelInt, CelMap, CelMapKey, CelString, CelTimestamp, Type};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::ExecutionError;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::EvalError;
use crate::functions::regex::{RegexTable, RegexVal};
use crate::ip_intel::{self, Field, PlaceValue};
use crate::rewrite::{HEADERS_PREFIX, SECRET_PREFIX};
use crate::secrets::{read_secret, SecretError, Secrets};
use crate::views::request::{content_length, content_type, header, version};
use crate::views::user_agent::UserAgent;
use crate::views::{cookies, Headers, QueryParams, StrList};
use crate::{IpFacts, IpIntel, Scope};

/// The per-evaluation variable resolver.
pub(crate) struct Resolver<'a> {
    scope: &'a Scope<'a>,
    regexes: &'a [RegexVal],
    /// Set when the evaluation reads a secret.
    pub(crate) secrets_read: AtomicBool,
    /// Why a `secrets.get` with literal names failed, see [`Resolver::internal`].
    secret_error: OnceLock<SecretError>,
    /// `req.user_agent.*`, parsed on the first read of one of them.
    user_agent: OnceLock<UserAgent>,
    /// Answers the IP-intelligence fields (none: they read as empty).
    ip_intel: Option<&'a dyn IpIntel>,
}

type Found<'b> = Option<CowVal<'b, 'b>>;

fn text<'b>(s: &'b str) -> Found<'b> {
    Some(CowVal::owned(CelString::from(s)))
}

fn owned_text<'b>(s: String) -> Found<'b> {
    Some(CowVal::owned(CelString::from(s)))
}

fn int<'b>(i: i64) -> Found<'b> {
    Some(CowVal::owned(CelInt::from(i)))
}

fn timestamp<'b>(t: SystemTime) -> Found<'b> {
    let t: DateTime<Utc> = t.into();
    Some(CowVal::owned(CelTimestamp::from(t.fixed_offset())))
}

fn string_map<'b>(entries: &[(String, String)]) -> Found<'b> {
    let map: HashMap<CelMapKey<'b>, Box<dyn Val + 'b>> = entries
        .iter()
        .map(|(k, v)| {
            (
                CelMapKey::from(k.clone()),
                Box::new(CelString::from(v.clone())) as Box<dyn Val>,
            )
        })
        .collect();
    Some(CowVal::owned(CelMap::from(map)))
}

impl<'a> Resolver<'a> {
    pub(crate) fn new(
        scope: &'a Scope<'a>,
        regexes: &'a [RegexVal],
        ip_intel: Option<&'a dyn IpIntel>,
    ) -> Self {
        Self {
            scope,
            regexes,
            secrets_read: AtomicBool::new(false),
            secret_error: OnceLock::new(),
            user_agent: OnceLock::new(),
            ip_intel,
        }
    }

    fn node<'b>(&'b self, prefix: &'static str) -> Found<'b> {
        Some(CowVal::owned(Node {
            resolver: self,
            prefix,
        }))
    }

    /// The value of the variable `name` (a dotted path), if it exists in this scope.
    pub(crate) fn lookup<'b>(&'b self, name: &str) -> Found<'b> {
        if name.starts_with('@') {
            return self.internal(name);
        }
        let (root, rest) = name.split_once('.').unwrap_or((name, ""));
        match root {
            "req" => self.request(rest),
            "res" => self.response(rest),
            "conn" => self.connection(rest),
            "time" => match rest {
                "" => self.node("time"),
                "now" => owned_text(Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)),
                _ => None,
            },
            "vars" => match rest {
                "" => Some(CowVal::owned(Named {
                    resolver: self,
                    source: Source::Vars,
                })),
                name => self.scope.vars.val(name).map(CowVal::Borrowed),
            },
            "actions" => match rest {
                "" => self.node("actions"),
                "ngrok" => Some(CowVal::owned(Named {
                    resolver: self,
                    source: Source::Actions,
                })),
                _ => rest
                    .strip_prefix("ngrok.")
                    .and_then(|name| self.scope.actions.val(name))
                    .map(CowVal::Borrowed),
            },
            _ => self
                .scope
                .extra
                .iter()
                .find(|(extra, _)| *extra == name)
                .and_then(|(_, variable)| variable.val())
                .map(CowVal::Borrowed),
        }
    }

    /// The hidden names the compile-time rewrite introduces (no expression can spell them).
    fn internal<'b>(&'b self, name: &str) -> Found<'b> {
        if let Some(path) = name.strip_prefix(SECRET_PREFIX) {
            let (vault, secret) = path.split_once('/')?;
            return match read_secret(self.scope.secrets, &self.secrets_read, vault, secret) {
                Ok(value) => Some(value),
                Err(error) => {
                    // The resolver cannot fail: the interpreter reports the name as undeclared
                    // and the evaluation turns that back into this error.
                    let _ = self.secret_error.set(error);
                    None
                }
            };
        }
        if let Some(header) = name
            .strip_prefix("@req")
            .and_then(|n| n.strip_prefix(HEADERS_PREFIX))
        {
            let req = self.scope.req?;
            return Some(CowVal::owned(
                Headers::new(&req.head.headers).values(header),
            ));
        }
        if let Some(header) = name
            .strip_prefix("@res")
            .and_then(|n| n.strip_prefix(HEADERS_PREFIX))
        {
            let res = self.scope.res?;
            return Some(CowVal::owned(
                Headers::new(&res.head.headers).values(header),
            ));
        }
        match name {
            "@secrets" => Some(CowVal::owned(Secrets {
                source: self.scope.secrets,
                read: &self.secrets_read,
            })),
            "@re" => Some(CowVal::owned(RegexTable(self.regexes))),
            _ => None,
        }
    }

    fn request<'b>(&'b self, field: &str) -> Found<'b> {
        let req = self.scope.req?;
        let headers = &req.head.headers;
        match field {
            "" => self.node("req"),
            "method" => text(req.head.method.as_str()),
            "version" => text(version(req.head.version)),
            "host" => text(req.authority()),
            "id" => text(req.id),
            "headers" => Some(CowVal::owned(Headers::new(headers))),
            "cookies" => Some(CowVal::owned(cookies::parse(headers))),
            "url" => owned_text(req.url()),
            "url.scheme" => text(req.scheme),
            "url.authority" => text(req.authority()),
            "url.host" => text(req.hostname()),
            "url.port" => int(req.port()),
            "url.user_password" => text(req.user_password()),
            "url.path" => Some(CowVal::owned(CelString::from(req.path()))),
            "url.raw_path" => text(req.raw_path()),
            "url.query" => text(req.query()),
            "url.query_params" | "query_params" => {
                Some(CowVal::owned(QueryParams::parse(req.query())))
            }
            "url.raw" => owned_text(req.url()),
            "url.uri" => text(req.uri()),
            "user_agent" => text(header(headers, http::header::USER_AGENT).unwrap_or("")),
            _ => match field.strip_prefix("user_agent.") {
                Some(part) => self.user_agent_field(headers, part),
                None => message_field(headers, field),
            },
        }
    }

    fn user_agent_field<'b>(&'b self, headers: &http::HeaderMap, field: &str) -> Found<'b> {
        let ua = self.user_agent.get_or_init(|| {
            UserAgent::parse(header(headers, http::header::USER_AGENT).unwrap_or(""))
        });
        let flag = |b: bool| Some(CowVal::owned(CelBool::from(b)));
        match field {
            "name" => text(&ua.name),
            "version" => text(&ua.version),
            "os" => text(&ua.os),
            "os_version" => text(&ua.os_version),
            "device" => text(&ua.device),
            "url" => text(&ua.url),
            "is_mobile" => flag(ua.is_mobile),
            "is_tablet" => flag(ua.is_tablet),
            "is_desktop" => flag(ua.is_desktop),
            "is_bot" => flag(ua.is_bot),
            _ => None,
        }
    }

    fn response<'b>(&'b self, field: &str) -> Found<'b> {
        let res = self.scope.res?;
        let headers = &res.head.headers;
        match field {
            "" => self.node("res"),
            "status_code" => int(i64::from(res.head.status.as_u16())),
            "headers" => Some(CowVal::owned(Headers::new(headers))),
            "cookies" => Some(CowVal::owned(cookies::parse_set_cookies(headers))),
            _ => message_field(headers, field),
        }
    }

    fn connection<'b>(&'b self, field: &str) -> Found<'b> {
        let conn = self.scope.conn;
        let tls = conn.tls.as_ref();
        match field {
            "" => self.node("conn"),
            "client_ip" => owned_text(conn.client_ip.to_string()),
            "client_port" => int(i64::from(conn.client_port)),
            "server_ip" => owned_text(conn.server_ip.to_string()),
            "server_port" => int(i64::from(conn.server_port)),
            "tls" => self.node("conn.tls"),
            "tls.version" => text(tls.map_or("", |t| t.version.as_str())),
            "tls.cipher_suite" => text(tls.map_or("", |t| t.cipher_suite.as_str())),
            "tls.sni" => text(tls.map_or("", |t| t.sni.as_str())),
            "tls.negotiated_alpn" => text(tls.map_or("", |t| t.negotiated_alpn.as_str())),
            "tls.session_resumed" => Some(CowVal::owned(CelBool::from(false))),
            "ts" => self.node("conn.ts"),
            "ts.start" => timestamp(conn.started),
            _ => self.ip_intel_field(field),
        }
    }

    /// `conn.geo.*`, `conn.client_ip.<field>`, `conn.server_ip.<field>`.
    fn ip_intel_field<'b>(&'b self, path: &str) -> Found<'b> {
        let (server, field) = ip_intel::parse(path)?;
        // Only a field's value looks the address up, never an intermediate node.
        let facts = || self.ip_facts(server);
        let flag = |b: bool| Some(CowVal::owned(CelBool::from(b)));
        match field {
            Field::Node(_) => INTEL_NODES
                .iter()
                .find(|node| node.strip_prefix("conn.") == Some(path))
                .and_then(|node| self.node(node)),
            Field::Place { registered, name } => {
                let facts = facts();
                let place = if registered {
                    &facts.registered
                } else {
                    &facts.location
                };
                match ip_intel::place_value(place, name)? {
                    PlaceValue::Text(value) => text(value),
                    PlaceValue::Number(value) => owned_text(value.unwrap_or_default()),
                    PlaceValue::Flag(value) => flag(value),
                }
            }
            Field::AsNumber => int(facts().as_number),
            Field::AsOrganization => text(&facts().as_organization),
            Field::Categories => Some(CowVal::owned(StrList::new(
                (facts().categories.iter())
                    .map(|c| CelString::from(c.as_str()))
                    .collect(),
            ))),
            Field::IsOnBlocklist => flag(facts().is_on_blocklist()),
            Field::IsTorNode => flag(facts().is_tor_node()),
        }
    }

    /// The facts about the client's (or the server's) address, looked up once per connection.
    fn ip_facts(&self, server: bool) -> &'a IpFacts {
        let conn = self.scope.conn;
        let Some(source) = self.ip_intel else {
            return ip_intel::no_facts();
        };
        let ip = if server {
            conn.server_ip
        } else {
            conn.client_ip
        };
        conn.ip_intel.get(server, || source.lookup(ip))
    }
}

/// The intermediate IP-intelligence names, answered as nodes.
const INTEL_NODES: &[&str] = &[
    "conn.geo",
    "conn.client_ip.geo",
    "conn.client_ip.geo.location",
    "conn.client_ip.geo.registered_location",
    "conn.client_ip.as",
    "conn.server_ip.geo",
    "conn.server_ip.geo.location",
    "conn.server_ip.geo.registered_location",
    "conn.server_ip.as",
];

/// `content_type`, `content_type.raw`, `content_type.parameters` of a header map; absent
/// (so `has()` is false) without a `Content-Type` header.
/// The fields requests and responses share (`location`, `content_encoding`, `content_length`,
/// `content_type*`), read from `headers`.
fn message_field<'b>(headers: &'b http::HeaderMap, field: &str) -> Found<'b> {
    match field {
        "location" => text(header(headers, http::header::LOCATION).unwrap_or("")),
        "content_encoding" => Some(CowVal::owned(
            Headers::new(headers).values("content-encoding"),
        )),
        "content_length" => content_length(headers).and_then(int),
        _ => content_type_field(headers, field),
    }
}

fn content_type_field<'b>(headers: &'b http::HeaderMap, field: &str) -> Found<'b> {
    let sub = field.strip_prefix("content_type")?;
    let ct = content_type(headers)?;
    match sub {
        "" => owned_text(ct.media_type),
        ".raw" => text(ct.raw),
        ".parameters" => string_map(&ct.parameters),
        _ => None,
    }
}

impl Resolver<'_> {
    /// The evaluation error for `error`, naming the secret a failed `secrets.get` wanted.
    pub(crate) fn eval_error(&self, error: &ExecutionError) -> EvalError {
        if let ExecutionError::UndeclaredReference(name) = error {
            if let Some(message) = self.missing_path(name) {
                return EvalError::new(message);
            }
            if let (Some(failure), true) =
                (self.secret_error.get(), name.starts_with(SECRET_PREFIX))
            {
                return EvalError::new(format!("secrets.get(): {failure}"));
            }
        }
        EvalError::from_execution(error, self.secrets_read.load(Ordering::Relaxed))
    }
}

impl Resolver<'_> {
    /// Why the collapsed path `name` (e.g. `req.content_length`, `vars.x`) has no value.
    fn missing_path(&self, name: &str) -> Option<String> {
        let (root, _) = name.split_once('.')?;
        if !matches!(root, "req" | "res" | "conn" | "time" | "vars" | "actions") {
            return None;
        }
        Some(match (root, self.lookup(root).is_some()) {
            ("res", false) => "'res' is only available in on_http_response".to_owned(),
            (_, false) => format!("'{root}' is not available in this phase"),
            (_, true) => format!("'{name}' is not set"),
        })
    }
}

impl VariableResolver for Resolver<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        self.lookup(variable)
    }
}

static NODE_TYPE: Type = Type::new_unspecified_type("keygate.object");

/// An intermediate name such as `req` or `conn.tls`: selecting a field looks up the longer
/// name, so `has(req.content_length)` and `req['method']` work.
struct Node<'r> {
    resolver: &'r Resolver<'r>,
    prefix: &'static str,
}

impl<'r> Node<'r> {
    fn field(&self, idx: &dyn Val) -> Result<CowVal<'r, 'r>, ExecutionError> {
        let field = idx
            .downcast_ref::<CelString>()
            .map(CelString::inner)
            .ok_or_else(|| ExecutionError::UnexpectedType {
                got: idx.get_type().name().to_owned(),
                want: "string".to_owned(),
            })?;
        self.resolver
            .lookup(&format!("{}.{field}", self.prefix))
            .ok_or_else(|| ExecutionError::no_such_key(field))
    }
}

impl Indexer for Node<'_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.field(idx)
    }
    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.field(idx).map(CowVal::into_owned)
    }
}

impl Container for Node<'_> {
    fn contains(&self, value: &dyn Val) -> Result<bool, ExecutionError> {
        Ok(self.field(value).is_ok())
    }
}

impl fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix)
    }
}

indexed_val! {
    Node<'_>, NODE_TYPE;
    fn as_container(&self) -> Option<&dyn Container> {
        Some(self)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(Node {
            resolver: self.resolver,
            prefix: self.prefix,
        })
    }
}

/// Which name table a [`Named`] map reads.
#[derive(Clone, Copy, Debug)]
enum Source {
    Vars,
    Actions,
}

/// `vars` and `actions.ngrok` as maps: `'x' in vars`, `has(vars.x)`, `vars['x']`.
struct Named<'r> {
    resolver: &'r Resolver<'r>,
    source: Source,
}

impl<'r> Named<'r> {
    fn value(&self, name: &str) -> Option<&'r dyn Val> {
        let scope = self.resolver.scope;
        match self.source {
            Source::Vars => scope.vars.val(name),
            Source::Actions => scope.actions.val(name),
        }
    }
}

impl Indexer for Named<'_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let name = idx
            .downcast_ref::<CelString>()
            .map(CelString::inner)
            .ok_or_else(|| ExecutionError::UnexpectedType {
                got: idx.get_type().name().to_owned(),
                want: "string".to_owned(),
            })?;
        self.value(name)
            .map(CowVal::Borrowed)
            .ok_or_else(|| ExecutionError::no_such_key(name))
    }
    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

impl Container for Named<'_> {
    fn contains(&self, value: &dyn Val) -> Result<bool, ExecutionError> {
        Ok(value
            .downcast_ref::<CelString>()
            .is_some_and(|name| self.value(name.inner()).is_some()))
    }
}

impl fmt::Debug for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.source)
    }
}

static NAMED_TYPE: Type = Type::new_unspecified_type("keygate.variables");

indexed_val! {
    Named<'_>, NAMED_TYPE;
    fn as_container(&self) -> Option<&dyn Container> {
        Some(self)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(Named {
            resolver: self.resolver,
            source: self.source,
        })
    }
}
