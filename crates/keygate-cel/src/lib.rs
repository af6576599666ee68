//! CEL environment for Traffic Policy: lazy request/connection views, ngrok macro functions,
//! `${...}` templates.
//!
//! Everything is compiled once ([`Compiler::expression`], [`Compiler::template`]) when a policy
//! loads; the request path only evaluates, against a [`Scope`] that borrows the live request.
//!
//! INTERFACE CONTRACT (used by `keygate-policy`): the public items below keep these names and
//! signatures; their bodies are being filled in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

pub use cel::Value;
use secrecy::SecretString;

/// Where `secrets.get(vault, name)` reads from. The encrypted store implements it; tests use
/// [`MemorySecrets`].
pub trait SecretSource: Send + Sync {
    /// The current value of secret `name` in vault `vault`.
    fn get(&self, vault: &str, name: &str) -> Result<Arc<SecretString>, SecretError>;
}

/// Why a secret could not be read. Messages name the vault and secret, never a value.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("vault '{0}' not found")]
    VaultNotFound(String),
    #[error("secret '{name}' not found in vault '{vault}'")]
    SecretNotFound { vault: String, name: String },
    #[error("secret store unavailable: {0}")]
    Unavailable(String),
}

/// An in-memory [`SecretSource`], for tests and `policy check`.
#[derive(Default)]
pub struct MemorySecrets {
    vaults: HashMap<String, HashMap<String, Arc<SecretString>>>,
}

impl MemorySecrets {
    /// Adds (or replaces) a secret, creating its vault as needed.
    pub fn insert(&mut self, vault: &str, name: &str, value: &str) {
        self.vaults
            .entry(vault.to_owned())
            .or_default()
            .insert(name.to_owned(), Arc::new(SecretString::from(value.to_owned())));
    }
}

impl SecretSource for MemorySecrets {
    fn get(&self, vault: &str, name: &str) -> Result<Arc<SecretString>, SecretError> {
        let secrets = self
            .vaults
            .get(vault)
            .ok_or_else(|| SecretError::VaultNotFound(vault.to_owned()))?;
        secrets
            .get(name)
            .cloned()
            .ok_or_else(|| SecretError::SecretNotFound {
                vault: vault.to_owned(),
                name: name.to_owned(),
            })
    }
}

/// Facts about the client connection, fixed for its lifetime (`conn.*`).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Client address, IPv4-mapped IPv6 already normalised to IPv4.
    pub client_ip: IpAddr,
    pub client_port: u16,
    pub server_ip: IpAddr,
    pub server_port: u16,
    pub tls: Option<TlsInfo>,
    pub started: SystemTime,
}

/// TLS handshake facts (`conn.tls.*`).
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: String,
    pub cipher_suite: String,
    pub sni: String,
    /// `""` when no ALPN protocol was negotiated.
    pub negotiated_alpn: String,
}

/// The request as CEL sees it (`req.*`): borrowed, never copied into CEL values up front.
#[derive(Clone, Copy)]
pub struct RequestView<'a> {
    /// Method, URI (path and query; authority for HTTP/2), version and headers.
    pub head: &'a http::request::Parts,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The request id (`req.id`).
    pub id: &'a str,
}

/// The response as CEL sees it (`res.*`), only in `on_http_response`.
#[derive(Clone, Copy)]
pub struct ResponseView<'a> {
    pub head: &'a http::response::Parts,
}

/// `vars.*`: values set by `set-vars`, in the order they were set.
#[derive(Debug, Default, Clone)]
pub struct Vars {
    values: HashMap<String, Value>,
}

impl Vars {
    pub fn set(&mut self, name: &str, value: Value) {
        self.values.insert(name.to_owned(), value);
    }
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }
}

/// `actions.ngrok.<name>.*`: the last result of each action type that ran.
#[derive(Debug, Default, Clone)]
pub struct ActionResults {
    values: HashMap<&'static str, Value>,
}

impl ActionResults {
    /// Records the result of action namespace `name` (e.g. `rate_limit`), replacing any earlier one.
    pub fn set(&mut self, name: &'static str, value: Value) {
        self.values.insert(name, value);
    }
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }
}

/// Everything an expression can read while it is evaluated.
pub struct Scope<'a> {
    pub conn: &'a ConnInfo,
    pub req: Option<RequestView<'a>>,
    pub res: Option<ResponseView<'a>>,
    pub vars: &'a Vars,
    pub actions: &'a ActionResults,
    pub secrets: &'a dyn SecretSource,
    /// Additional top-level variables (e.g. `ai` for model-selection strategies).
    pub extra: &'a [(&'a str, Value)],
}

/// A CEL expression or template that failed to compile. `offset` is a byte offset into the source.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct CompileError {
    pub message: String,
    pub offset: Option<usize>,
}

/// A run-time evaluation failure. The message never contains a secret value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct EvalError {
    pub message: String,
}

/// Compiles expressions and templates against Keygate's CEL environment (built once, shared).
#[derive(Clone)]
pub struct Compiler {}

impl Compiler {
    pub fn new() -> Self {
        todo!()
    }
    /// Compiles one CEL expression.
    pub fn expression(&self, _source: &str) -> Result<Expression, CompileError> {
        todo!()
    }
    /// Compiles a config string that may contain `${...}` interpolations.
    pub fn template(&self, _source: &str) -> Result<Template, CompileError> {
        todo!()
    }
}

impl Default for Compiler {
    fn default() -> Self {
        Self::new()
    }
}

/// A compiled CEL expression.
#[derive(Clone)]
pub struct Expression {}

impl Expression {
    pub fn source(&self) -> &str {
        todo!()
    }
    pub fn eval(&self, _scope: &Scope<'_>) -> Result<Value, EvalError> {
        todo!()
    }
    /// Evaluates and requires a bool result.
    pub fn eval_bool(&self, _scope: &Scope<'_>) -> Result<bool, EvalError> {
        todo!()
    }
}

/// A compiled config string with `${...}` parts.
#[derive(Clone)]
pub struct Template {}

impl Template {
    /// The source text as written in the policy.
    pub fn source(&self) -> &str {
        todo!()
    }
    /// `Some(text)` when the template has no `${...}` at all.
    pub fn as_literal(&self) -> Option<&str> {
        todo!()
    }
    /// A value that is exactly one `${...}` keeps its type; anything else is a string.
    pub fn eval(&self, _scope: &Scope<'_>) -> Result<Value, EvalError> {
        todo!()
    }
    /// Renders as a string (maps and lists as JSON, timestamps as RFC 3339).
    pub fn eval_string(&self, _scope: &Scope<'_>) -> Result<String, EvalError> {
        todo!()
    }
}

/// Converts a CEL value to JSON (maps, lists, scalars; bytes as base64; timestamps as RFC 3339).
pub fn to_json(_value: &Value) -> serde_json::Value {
    todo!()
}

/// Converts JSON to a CEL value.
pub fn from_json(_value: &serde_json::Value) -> Value {
    todo!()
}
