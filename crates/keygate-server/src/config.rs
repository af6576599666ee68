//! Settings for `keygate serve`, already parsed by the CLI.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::Uri;
use ipnet::IpNet;

use crate::admin::AdminToken;

/// Access/event log format on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Json,
    Pretty,
}

/// Everything `serve` needs besides the services it is wired with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub policy: PathBuf,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// PEM certificate chain and key; both or neither.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub upstream: Option<Uri>,
    pub trust_forwarded_for: Vec<IpNet>,
    pub max_body_bytes: u64,
    pub log_format: LogFormat,
    /// After SIGTERM, how long in-flight requests may take before connections are closed.
    pub shutdown_grace: Duration,
    /// After SIGTERM, how long `/readyz` says `draining` while new connections are still
    /// served, so a load balancer stops sending before the listener closes.
    pub drain_delay: Duration,
    /// Most client connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Most requests in progress at once (from head to the end of the response body); more
    /// are answered 503 without running the policy.
    pub max_requests: usize,
    /// Per-core runtimes serving client connections.
    pub workers: usize,
    /// Where traces are exported (OTLP/HTTP JSON; `--otlp-endpoint`), `None`: no tracing.
    pub otlp_endpoint: Option<Uri>,
    /// `/metrics` also counts requests and tokens per access key (`--metrics-per-key`).
    pub metrics_per_key: bool,
    /// The dashboard at `/ui` on the admin listener (`--no-ui` turns it off).
    pub ui: bool,
    /// What `/ui/api/*` and `/v1/usage*` require as `Authorization: Bearer`; `None`: nothing.
    pub admin_token: Option<AdminToken>,
    /// `/v1/usage*` answer without the admin token, as before there was one
    /// (`--open-usage-api`).
    pub open_usage_api: bool,
    /// Endpoints `forward-internal` can target (`--internal-endpoint`), names unique.
    pub internal_endpoints: Vec<InternalEndpointConfig>,
}

/// One `--internal-endpoint`: the name `forward-internal` URLs give as host (`api.internal`,
/// `svc.internal:1234`), its policy file (watched and reloaded like the main one) and its
/// upstream (without one, requests no action answered get 404).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalEndpointConfig {
    pub name: String,
    pub policy: PathBuf,
    pub upstream: Option<Uri>,
}
