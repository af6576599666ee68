//! Load-time checks of a parsed expression (before the rewrites): unknown functions, macros,
//! root variables and fields of the typed request views, wrong argument counts where known, and
//! (for rule conditions) a result that is statically not a bool. Each error points at the name
//! and suggests the closest known one.
//!
//! Dynamic places stay dynamic: map keys, `vars.*`, anything below `actions.ngrok.<action>`,
//! the header / query / parameter maps, and whatever a comprehension variable holds.

use cel::common::ast::{operators, CallExpr, Expr, IdedExpr, LiteralValue, SourceInfo};

use crate::ip_intel::{self, Field};
use crate::{CompileError, FUNCTIONS, VARIABLES};

/// The roots a policy expression may read (besides comprehension variables).
pub(crate) const ROOTS: &[&str] = &[
    "req",
    "res",
    "conn",
    "time",
    "vars",
    "actions",
    "secrets", // Scope
    // `Scope.extra`: the authenticated access key (keygate-policy `access_keys::VARIABLE`),
    // `ai` (+ the internal `_kg_cur`) of the ai-gateway model selection strategies, and
    // `attempts` / `last_attempt` of the http-request `retry_condition`.
    "access_key",
    "ai",
    "_kg_cur",
    "attempts",
    "last_attempt",
];

/// Type identifiers CEL resolves as values (`type(x) == string`).
const TYPE_NAMES: &[&str] = &[
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "list",
    "map",
    "null_type",
    "type",
    "dyn",
    "optional",
];

/// The result names of the actions (`actions.ngrok.<name>`).
pub const ACTION_RESULTS: &[&str] = &[
    "add_headers",
    "ai_gateway",
    "basic_auth",
    "circuit_breaker",
    "close_connection",
    "compress",
    "custom_response",
    "deny",
    "forward_internal",
    "http_request",
    "jwt_validation",
    "log",
    "oauth",
    "oidc",
    "rate_limit",
    "redirect",
    "remove_headers",
    "request_body_find_replace",
    "response_body_find_replace",
    "restrict_ips",
    "set_vars",
    "sse_find_replace",
    "url_rewrite",
    "verify_webhook",
];

/// Functions the environment registers that `FUNCTIONS` does not list (optional values).
const EXTRA_FUNCTIONS: &[&str] = &[
    "optional.of",
    "optional.none",
    "optional.ofNonZeroValue",
    "hasValue",
    "orValue",
    "value",
    "or",
    "existsOne",
];

/// Maps whose keys are data: any field below them is a key lookup.
const DYNAMIC_MAPS: &[&str] = &[
    "req.headers",
    "req.cookies",
    "res.headers",
    "res.cookies",
    "req.query_params",
    "req.url.query_params",
    "req.content_type.parameters",
    "res.content_type.parameters",
];

/// Known argument counts: `(name, global call, method call)`; `None` = not callable that way
/// or not checked.
type Arity = (&'static str, Option<(usize, usize)>, Option<(usize, usize)>);
const ARITIES: &[Arity] = &[
    ("has", Some((1, 1)), None),
    ("all", None, Some((2, 2))),
    ("exists", None, Some((2, 2))),
    ("exists_one", None, Some((2, 2))),
    ("filter", None, Some((2, 2))),
    ("map", None, Some((2, 3))),
    ("getReqHeader", Some((1, 1)), None),
    ("hasReqHeader", Some((1, 1)), None),
    ("getReqCookie", Some((1, 1)), None),
    ("hasReqCookie", Some((1, 1)), None),
    ("getQueryParam", Some((1, 1)), None),
    ("hasQueryParam", Some((1, 1)), None),
    ("getResHeader", Some((1, 1)), None),
    ("hasResHeader", Some((1, 1)), None),
    ("getResCookie", Some((1, 1)), None),
    ("hasResCookie", Some((1, 1)), None),
    ("inCidrRange", Some((2, 2)), Some((1, 1))),
    ("inCidrRanges", Some((2, 2)), Some((1, 1))),
    ("isPrivateIp", Some((1, 1)), Some((0, 0))),
    ("secrets.get", Some((2, 2)), None),
    ("base64.encode", Some((1, 1)), None),
    ("base64.decode", Some((1, 1)), None),
    ("basic_auth.encode", Some((2, 2)), None),
    ("json.encode", Some((1, 1)), None),
    ("json.decode", Some((1, 1)), None),
    ("url.escape", Some((1, 1)), None),
    ("url.unescape", Some((1, 1)), None),
    ("url.parse", Some((1, 1)), None),
    ("rand.double", Some((0, 0)), None),
    ("rand.int", Some((0, 2)), None), // and not 1, see `Checker::call`
    ("startsWith", None, Some((1, 1))),
    ("endsWith", None, Some((1, 1))),
    ("contains", None, Some((1, 1))),
    ("matches", Some((2, 2)), Some((1, 1))),
    ("size", Some((1, 1)), Some((0, 0))),
    ("timestamp", Some((1, 1)), None),
    ("duration", Some((1, 1)), None),
    ("int", Some((1, 1)), None),
    ("uint", Some((1, 1)), None),
    ("double", Some((1, 1)), None),
    ("string", Some((1, 1)), None),
    ("bytes", Some((1, 1)), None),
    ("bool", Some((1, 1)), None),
    ("lowerAscii", None, Some((0, 0))),
    ("upperAscii", None, Some((0, 0))),
    ("lower", None, Some((0, 0))),
    ("upper", None, Some((0, 0))),
    ("trim", None, Some((0, 0))),
    ("isJson", None, Some((0, 0))),
    ("isURL", None, Some((0, 0))),
    ("encodeBase64", None, Some((0, 0))),
    ("decodeBase64", None, Some((0, 0))),
    ("encodeJson", None, Some((0, 0))),
    ("decodeJson", None, Some((0, 0))),
];

/// What the checker knows about a value's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Null,
    List,
    Map,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Bool => "bool",
            Kind::Int => "int",
            Kind::Uint => "uint",
            Kind::Double => "double",
            Kind::String => "string",
            Kind::Bytes => "bytes",
            Kind::Null => "null",
            Kind::List => "list",
            Kind::Map => "map",
        }
    }
}

struct Checker<'s> {
    info: &'s SourceInfo,
    source: &'s str,
    /// Comprehension variables in scope.
    bound: Vec<String>,
}

/// Checks a parsed expression; `condition` also requires a result that may be a bool.
pub(crate) fn check(
    expr: &IdedExpr,
    info: &SourceInfo,
    source: &str,
    condition: bool,
) -> Result<(), CompileError> {
    let mut checker = Checker {
        info,
        source,
        bound: Vec::new(),
    };
    checker.walk(expr, 0)?;
    if condition {
        if let Some(kind) = checker.kind(expr).filter(|k| *k != Kind::Bool) {
            return Err(CompileError {
                message: format!(
                    "a rule expression must evaluate to a bool, but this is always a {}",
                    kind.name()
                ),
                offset: Some(0),
            });
        }
    }
    Ok(())
}

/// Edit distance (optimal string alignment: a swap of two neighbours counts as one edit).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d: Vec<Vec<usize>> = (0..=a.len())
        .map(|i| (0..=b.len()).map(|j| if i == 0 { j } else { i }).collect())
        .collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The closest candidate within a typo's distance of `name`.
pub(crate) fn suggest<'c>(
    name: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let limit = match name.chars().count() {
        0..=5 => 1,
        6..=8 => 2,
        _ => 3,
    };
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| {
            let d = if c.eq_ignore_ascii_case(name) {
                0
            } else {
                distance(&name.to_ascii_lowercase(), &c.to_ascii_lowercase())
            };
            (d, c)
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn did_you_mean(message: String, suggestion: Option<&str>) -> String {
    match suggestion {
        Some(s) => format!("{message}; did you mean '{s}'?"),
        None => message,
    }
}

/// The dotted path an identifier-and-selections expression spells, root first.
fn path_segments(expr: &Expr) -> Option<Vec<&str>> {
    match expr {
        Expr::Ident(name) => Some(vec![name.as_str()]),
        Expr::Select(select) => {
            let mut path = path_segments(&select.operand.expr)?;
            path.push(select.field.as_str());
            Some(path)
        }
        _ => None,
    }
}

/// The names directly below `prefix` in [`VARIABLES`].
fn children(prefix: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = VARIABLES
        .iter()
        .filter_map(|v| v.strip_prefix(prefix)?.strip_prefix('.'))
        .map(|rest| rest.split('.').next().unwrap_or(rest))
        .filter(|c| !c.starts_with('<'))
        .collect();
    out.dedup();
    out
}

/// The type of an IP-intelligence variable (`conn.geo.city`, `conn.client_ip.is_tor_node`).
fn ip_intel_kind(path: &str) -> Option<Kind> {
    let (_, field) = ip_intel::parse(path.strip_prefix("conn.")?)?;
    match field {
        Field::Node(_) => None,
        Field::Place { name: "is_eu", .. } | Field::IsOnBlocklist | Field::IsTorNode => {
            Some(Kind::Bool)
        }
        Field::Place { .. } | Field::AsOrganization => Some(Kind::String),
        Field::AsNumber => Some(Kind::Int),
        Field::Categories => Some(Kind::List),
    }
}

fn known_path(path: &str) -> bool {
    VARIABLES.contains(&path) || !children(path).is_empty()
}

fn is_operator(name: &str) -> bool {
    name.starts_with('_') || name.starts_with('@') || name == "!_" || name == "-_"
}

/// Namespaces of the `ns.f(..)` functions.
fn namespaces() -> impl Iterator<Item = &'static str> {
    FUNCTIONS
        .iter()
        .chain(EXTRA_FUNCTIONS)
        .filter_map(|f| f.split_once('.').map(|(ns, _)| ns))
}

fn global_names() -> impl Iterator<Item = &'static str> {
    FUNCTIONS
        .iter()
        .chain(EXTRA_FUNCTIONS)
        .copied()
        .filter(|f| !f.contains('.'))
}

impl Checker<'_> {
    fn offset(&self, id: u64) -> Option<usize> {
        self.info
            .offset_for(id)
            .and_then(|(start, _)| usize::try_from(start).ok())
    }

    /// Where `name` is written at or after the node's recorded start (the parser records a
    /// selection or a call at its `.`/operand).
    fn name_offset(&self, id: u64, name: &str) -> Option<usize> {
        let start = self.offset(id)?;
        // A method call is recorded at its `(`, after the name.
        let before = self.source.get(..start).map(str::trim_end);
        if let Some(before) = before.filter(|b| b.ends_with(name)) {
            return Some(before.len() - name.len());
        }
        // A selection `.name` first, so that a name also spelt inside the operand is skipped.
        let rest = self.source.get(start..)?;
        let found = (rest.find(&format!(".{name}")).map(|i| i + 1))
            .or_else(|| rest.find(name))
            .map(|i| start + i);
        found.or(Some(start))
    }

    fn error(&self, id: u64, name: &str, message: String) -> CompileError {
        CompileError {
            message,
            offset: self.name_offset(id, name),
        }
    }

    fn is_bound(&self, name: &str) -> bool {
        self.bound.iter().any(|b| b == name)
    }

    fn walk(&mut self, expr: &IdedExpr, depth: usize) -> Result<(), CompileError> {
        if depth > crate::MAX_DEPTH {
            return Ok(()); // the rewrite reports the depth
        }
        match &expr.expr {
            Expr::Ident(name) => self.ident(expr.id, name),
            Expr::Select(select) => {
                self.walk(&select.operand, depth + 1)?;
                self.select(expr)
            }
            Expr::Call(call) => {
                if let Some(target) = &call.target {
                    // `base64.encode(..)`: the namespace is no variable.
                    let namespace = matches!(&target.expr, Expr::Ident(ns)
                        if !self.is_bound(ns) && namespaces().any(|n| n == ns));
                    if !namespace {
                        self.walk(target, depth + 1)?;
                    }
                }
                // The name before the arguments: a misspelt macro leaves its variable unbound.
                self.call(expr.id, call)?;
                call.args
                    .iter()
                    .try_for_each(|arg| self.walk(arg, depth + 1))
            }
            Expr::Comprehension(c) => {
                self.walk(&c.iter_range, depth + 1)?;
                self.walk(&c.accu_init, depth + 1)?;
                let before = self.bound.len();
                self.bound.push(c.iter_var.clone());
                if let Some(v) = &c.iter_var2 {
                    self.bound.push(v.clone());
                }
                self.bound.push(c.accu_var.clone());
                let result = (|| {
                    self.walk(&c.loop_cond, depth + 1)?;
                    self.walk(&c.loop_step, depth + 1)?;
                    self.walk(&c.result, depth + 1)
                })();
                self.bound.truncate(before);
                result
            }
            Expr::List(list) => list
                .elements
                .iter()
                .try_for_each(|e| self.walk(e, depth + 1)),
            Expr::Map(map) => map.entries.iter().try_for_each(|entry| match &entry.expr {
                cel::common::ast::EntryExpr::MapEntry(e) => {
                    self.walk(&e.key, depth + 1)?;
                    self.walk(&e.value, depth + 1)
                }
                cel::common::ast::EntryExpr::StructField(f) => self.walk(&f.value, depth + 1),
            }),
            Expr::Struct(_) | Expr::Literal(_) | Expr::Unspecified => Ok(()),
        }
    }

    fn ident(&self, id: u64, name: &str) -> Result<(), CompileError> {
        if self.is_bound(name)
            || ROOTS.contains(&name)
            || TYPE_NAMES.contains(&name)
            || name.starts_with('@')
        {
            return Ok(());
        }
        let candidates = ROOTS[..7].iter().chain(TYPE_NAMES).copied();
        Err(self.error(
            id,
            name,
            did_you_mean(
                format!("unknown variable '{name}'"),
                suggest(name, candidates),
            ),
        ))
    }

    fn select(&self, expr: &IdedExpr) -> Result<(), CompileError> {
        let Some(path) = path_segments(&expr.expr) else {
            return Ok(());
        };
        let (root, field) = (path[0], path[path.len() - 1]);
        if self.is_bound(root) {
            return Ok(());
        }
        let parent = path[..path.len() - 1].join(".");
        let unknown = |candidates: Vec<&str>, what: &str| {
            let message = format!("unknown field '{field}' of '{parent}'{what}");
            Err(self.error(
                expr.id,
                field,
                did_you_mean(message, suggest(field, candidates)),
            ))
        };
        match root {
            "req" | "res" | "conn" | "time" => {
                if DYNAMIC_MAPS
                    .iter()
                    .any(|m| parent == *m || parent.starts_with(&format!("{m}.")))
                {
                    return Ok(());
                }
                let full = path.join(".");
                if known_path(&full) {
                    return Ok(());
                }
                let siblings = children(&parent);
                if siblings.is_empty() {
                    let message = format!("'{parent}' has no field '{field}'");
                    return Err(self.error(expr.id, field, message));
                }
                unknown(siblings, "")
            }
            "actions" => match path.len() {
                2 if field != "ngrok" => unknown(vec!["ngrok"], ""),
                3 if !ACTION_RESULTS.contains(&field) => {
                    unknown(ACTION_RESULTS.to_vec(), " (no action has these results)")
                }
                _ => Ok(()),
            },
            "secrets" => Err(self.error(
                expr.id,
                field,
                "'secrets' is read with secrets.get(vault, name)".to_owned(),
            )),
            _ => Ok(()),
        }
    }

    fn call(&self, id: u64, call: &CallExpr) -> Result<(), CompileError> {
        let name = call.func_name.as_str();
        if is_operator(name) {
            return self.ordering(id, call);
        }
        let namespace = match call.target.as_deref() {
            Some(IdedExpr {
                expr: Expr::Ident(ns),
                ..
            }) if !self.is_bound(ns) && namespaces().any(|n| n == ns) => Some(ns.as_str()),
            _ => None,
        };
        let (full, method) = match (namespace, &call.target) {
            (Some(ns), _) => (format!("{ns}.{name}"), false),
            (None, target) => (name.to_owned(), target.is_some()),
        };
        if let Some(ns) = namespace {
            if !FUNCTIONS.contains(&full.as_str()) && !EXTRA_FUNCTIONS.contains(&full.as_str()) {
                let in_namespace: Vec<&str> = FUNCTIONS
                    .iter()
                    .chain(EXTRA_FUNCTIONS)
                    .copied()
                    .filter(|f| f.starts_with(&format!("{ns}.")))
                    .collect();
                let suggestion = suggest(&full, in_namespace);
                return Err(self.error(
                    id,
                    name,
                    did_you_mean(format!("unknown function '{full}'"), suggestion),
                ));
            }
        } else if !global_names().any(|f| f == name) {
            let what = if method { "method" } else { "function" };
            return Err(self.error(
                id,
                name,
                did_you_mean(
                    format!("unknown {what} '{name}'"),
                    suggest(name, global_names()),
                ),
            ));
        }
        let Some((_, global, member)) = ARITIES.iter().find(|(n, _, _)| *n == full) else {
            return Ok(());
        };
        let expected = if method { member } else { global };
        let got = call.args.len();
        // The one function whose counts are not a range: no bounds, or both.
        if full == "rand.int" && got == 1 {
            return Err(self.error(
                id,
                name,
                "rand.int() takes no arguments or 2 (min, max), got 1".to_owned(),
            ));
        }
        match expected {
            Some((lo, hi)) if got < *lo || got > *hi => {
                let want = if lo == hi {
                    format!("{lo}")
                } else {
                    format!("{lo} to {hi}")
                };
                let plural = if *hi == 1 { "" } else { "s" };
                let shape = if method { "method " } else { "" };
                Err(self.error(
                    id,
                    name,
                    format!("{shape}{full}() takes {want} argument{plural}, got {got}"),
                ))
            }
            None if method => Err(self.error(
                id,
                name,
                format!("{full}() is a function, not a method: write {full}(x, ...)"),
            )),
            _ => Ok(()),
        }
    }

    /// The statically known type of `expr`, if any.
    fn kind(&self, expr: &IdedExpr) -> Option<Kind> {
        match &expr.expr {
            Expr::Literal(literal) => Some(match literal {
                LiteralValue::Boolean(_) => Kind::Bool,
                LiteralValue::Int(_) => Kind::Int,
                LiteralValue::UInt(_) => Kind::Uint,
                LiteralValue::Double(_) => Kind::Double,
                LiteralValue::String(_) => Kind::String,
                LiteralValue::Bytes(_) => Kind::Bytes,
                LiteralValue::Null => Kind::Null,
            }),
            Expr::List(_) => Some(Kind::List),
            Expr::Map(_) => Some(Kind::Map),
            Expr::Ident(_) | Expr::Select(_) => {
                let path = path_segments(&expr.expr)?;
                if self.is_bound(path[0]) {
                    return None;
                }
                match path.join(".").as_str() {
                    "req.method" | "req.version" | "req.host" | "req.id" | "req.url"
                    | "req.url.scheme" | "req.url.authority" | "req.url.host" | "req.url.path"
                    | "req.url.raw_path" | "req.url.query" | "req.url.raw" | "req.url.uri"
                    | "req.user_agent" | "req.location" | "conn.client_ip" | "conn.server_ip"
                    | "time.now" => Some(Kind::String),
                    path if path.starts_with("req.user_agent.") && !path.contains(".is_") => {
                        Some(Kind::String)
                    }
                    "req.url.user_password" => Some(Kind::String),
                    "req.url.port" | "req.content_length" | "res.status_code"
                    | "conn.client_port" | "conn.server_port" => Some(Kind::Int),
                    "req.headers" | "res.headers" | "req.query_params" | "req.cookies"
                    | "res.cookies" => Some(Kind::Map),
                    "conn.tls.session_resumed" => Some(Kind::Bool),
                    path if path.starts_with("req.user_agent.is_") => Some(Kind::Bool),
                    path => ip_intel_kind(path),
                }
            }
            Expr::Call(call) => self.call_kind(call),
            _ => None,
        }
    }

    /// `a < b` (`<=`, `>`, `>=`) between values CEL cannot order against each other (kinds that
    /// differ, lists, maps), e.g. `res.status_code < '200'`: every evaluation of it would fail.
    fn ordering(&self, id: u64, call: &CallExpr) -> Result<(), CompileError> {
        let op = match call.func_name.as_str() {
            operators::LESS => "<",
            operators::LESS_EQUALS => "<=",
            operators::GREATER => ">",
            operators::GREATER_EQUALS => ">=",
            _ => return Ok(()),
        };
        let [left, right] = call.args.as_slice() else {
            return Ok(());
        };
        let (Some(a), Some(b)) = (self.kind(left), self.kind(right)) else {
            return Ok(());
        };
        let numeric = |k: Kind| matches!(k, Kind::Int | Kind::Uint | Kind::Double);
        let unordered = |k: Kind| matches!(k, Kind::List | Kind::Map | Kind::Null);
        if !unordered(a) && (a == b || (numeric(a) && numeric(b))) {
            return Ok(());
        }
        Err(CompileError {
            message: format!(
                "cannot order {} {op} {}: compare values of one type (e.g. an int with an int)",
                a.name(),
                b.name()
            ),
            offset: self.offset(id),
        })
    }

    fn call_kind(&self, call: &CallExpr) -> Option<Kind> {
        let name = call.func_name.as_str();
        match name {
            operators::LOGICAL_AND
            | operators::LOGICAL_OR
            | operators::LOGICAL_NOT
            | operators::EQUALS
            | operators::NOT_EQUALS
            | operators::LESS
            | operators::LESS_EQUALS
            | operators::GREATER
            | operators::GREATER_EQUALS
            | operators::IN
            | "startsWith"
            | "endsWith"
            | "contains"
            | "matches"
            | "hasReqHeader"
            | "hasQueryParam"
            | "hasResHeader"
            | "inCidrRange"
            | "inCidrRanges"
            | "isPrivateIp"
            | "isJson"
            | "isURL" => Some(Kind::Bool),
            operators::ADD
            | operators::SUBSTRACT
            | operators::MULTIPLY
            | operators::DIVIDE
            | operators::MODULO => {
                let kinds: Vec<Option<Kind>> = call.args.iter().map(|a| self.kind(a)).collect();
                match kinds.as_slice() {
                    [Some(a), Some(b)] if a == b && *a != Kind::Bool => Some(*a),
                    [Some(a), None] | [None, Some(a)]
                        if name == operators::ADD && *a == Kind::String =>
                    {
                        Some(Kind::String)
                    }
                    _ => None,
                }
            }
            operators::NEGATE => call.args.first().and_then(|a| self.kind(a)),
            operators::CONDITIONAL => match call.args.as_slice() {
                [_, a, b] => self.kind(a).filter(|k| Some(*k) == self.kind(b)),
                _ => None,
            },
            "size" | "int" | "indexOf" | "lastIndexOf" => Some(Kind::Int),
            "string" | "lower" | "upper" | "lowerAscii" | "upperAscii" | "trim" | "replace"
            | "substring" | "charAt" | "format" | "join" | "encodeBase64" | "encodeJson"
            | "escapeUrl" | "unescapeUrl" => Some(Kind::String),
            "split" | "getReqHeader" | "getQueryParam" | "getResHeader" => Some(Kind::List),
            _ => None,
        }
    }
}
