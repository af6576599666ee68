//! What an expression reads while it is evaluated: the connection, the request and response
//! heads (borrowed, never copied), `vars.*`, action results, secrets and extra variables.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use cel::common::value::Val;

use crate::ip_intel::IpIntelCache;
use crate::secrets::SecretSource;
use crate::Value;

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
    /// IP intelligence about the two addresses, looked up on first read.
    pub ip_intel: IpIntelCache,
}

impl ConnInfo {
    /// A plain-TCP connection from `client` to `server`, starting now. IPv4-mapped IPv6 addresses
    /// (how a dual-stack listener sees IPv4 peers) become plain IPv4.
    pub fn new(client: SocketAddr, server: SocketAddr) -> Self {
        Self {
            client_ip: client.ip().to_canonical(),
            client_port: client.port(),
            server_ip: server.ip().to_canonical(),
            server_port: server.port(),
            tls: None,
            started: SystemTime::now(),
            ip_intel: IpIntelCache::default(),
        }
    }
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

/// A named value kept as a [`Value`] (for the engine) and, once an expression reads it, as a
/// ready CEL value (converted on first read, so a value nobody reads costs no conversion).
struct Slot {
    value: Value,
    val: OnceLock<Option<Box<dyn Val>>>,
}

impl Slot {
    fn new(value: Value) -> Self {
        Self {
            value,
            val: OnceLock::new(),
        }
    }

    fn val(&self) -> Option<&dyn Val> {
        self.val
            .get_or_init(|| Box::<dyn Val>::try_from(self.value.clone()).ok())
            .as_deref()
    }
}

/// A top-level variable besides the standard ones (`access_key`, a strategy's `ai`): its value,
/// converted for the interpreter on first read. Clones share the conversion, so a value made
/// once (per access key, say) is converted once, not per request.
#[derive(Clone)]
pub struct Variable(Arc<Slot>);

impl Variable {
    pub fn new(value: Value) -> Self {
        Self(Arc::new(Slot::new(value)))
    }

    /// The value as given.
    pub fn value(&self) -> &Value {
        &self.0.value
    }

    pub(crate) fn val(&self) -> Option<&dyn Val> {
        self.0.val()
    }
}

impl fmt::Debug for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Variable").field(&self.0.value).finish()
    }
}

impl Clone for Slot {
    fn clone(&self) -> Self {
        Self::new(self.value.clone())
    }
}

/// `vars.*`: values set by `set-vars`, in the order they were set.
///
/// `Debug` lists names only: values may be derived from secrets.
#[derive(Default, Clone)]
pub struct Vars {
    values: HashMap<String, Slot>,
}

impl Vars {
    /// Sets (or replaces) variable `name`.
    pub fn set(&mut self, name: &str, value: Value) {
        self.values.insert(name.to_owned(), Slot::new(value));
    }
    /// The value of variable `name`, if set.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name).map(|slot| &slot.value)
    }
    pub(crate) fn val(&self, name: &str) -> Option<&dyn Val> {
        self.values.get(name).and_then(Slot::val)
    }
    /// The names of the variables set (in no particular order).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }
}

impl fmt::Debug for Vars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.names().collect();
        names.sort_unstable();
        f.debug_struct("Vars").field("names", &names).finish()
    }
}

/// `actions.ngrok.<name>.*`: the last result of each action type that ran.
///
/// `Debug` lists action names only.
#[derive(Default, Clone)]
pub struct ActionResults {
    values: HashMap<&'static str, Slot>,
}

impl ActionResults {
    /// Records the result of action namespace `name` (e.g. `rate_limit`), replacing any earlier one.
    pub fn set(&mut self, name: &'static str, value: Value) {
        self.values.insert(name, Slot::new(value));
    }
    /// The last result of action namespace `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name).map(|slot| &slot.value)
    }
    pub(crate) fn val(&self, name: &str) -> Option<&dyn Val> {
        self.values.get(name).and_then(Slot::val)
    }
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().copied()
    }
}

impl fmt::Debug for ActionResults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.names().collect();
        names.sort_unstable();
        f.debug_struct("ActionResults")
            .field("names", &names)
            .finish()
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
    pub extra: &'a [(&'a str, Variable)],
}
