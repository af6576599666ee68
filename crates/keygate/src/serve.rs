//! `keygate serve`: parse flags (each also an env var, `KEYGATE_` + its name), open the secret,
//! access-key and rate-limit stores and the usage ledger, and run the gateway.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::ValueEnum;
use keygate_http::{ClientCert, HttpClient, HttpConfig, TlsFiles};
use keygate_keys::{KeyCache, KeyStore};
use keygate_policy::SessionKey;
use keygate_ratelimit::{
    BudgetStore, FailureMode, MemoryBudgets, MemoryLimiter, RateLimiter, RedisBudgets, RedisConfig,
    RedisLimiter,
};
use keygate_secrets::{CachedIpPolicies, CachedSecrets, MasterKeySource, Migrations, Store};
use keygate_server::{InternalEndpointConfig, LogFormat, ServerConfig, Services};
use keygate_usage::{Ledger, LedgerConfig};

mod dashboard;

/// How often a running gateway checks the secret store for changes.
const SECRET_POLL: Duration = Duration::from_millis(500);
/// HKDF context of the key that seals `oauth` / `openid-connect` session cookies.
const SESSION_KEY_CONTEXT: &str = "keygate login session cookies v1";

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Traffic Policy file, YAML or JSON.
    #[arg(long, env = "KEYGATE_POLICY")]
    policy: PathBuf,
    /// Address for client traffic.
    #[arg(long, env = "KEYGATE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// PEM certificate chain; with --tls-key, --listen serves HTTPS.
    #[arg(long, env = "KEYGATE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "KEYGATE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Where requests go when no on_http_request action answered them.
    #[arg(long, env = "KEYGATE_UPSTREAM", value_parser = parse_upstream)]
    upstream: Option<http::Uri>,
    /// An internal endpoint forward-internal can target, with its own policy file (reloaded like
    /// --policy) and optional upstream (repeatable; the variable holds one).
    #[arg(
        long = "internal-endpoint",
        env = "KEYGATE_INTERNAL_ENDPOINT",
        value_name = "NAME.internal[:PORT]=POLICY[,upstream=URL]",
        value_parser = parse_internal_endpoint
    )]
    internal_endpoints: Vec<InternalEndpointConfig>,
    /// Holds master.key, and keygate.db (vaults, secrets, keys) and usage.db unless --database.
    #[arg(long, env = "KEYGATE_DATA_DIR", default_value = "./keygate-data")]
    data_dir: PathBuf,
    #[arg(long, env = "KEYGATE_DATABASE", value_name = "URL", value_parser = crate::database::parse, help = crate::database::HELP)]
    database: Option<keygate_store::Location>,
    /// Apply no schema migration at start: refuse a store that `keygate migrate` has not brought to
    /// this version (for deployments that migrate in a release step).
    #[arg(long, env = "KEYGATE_NO_MIGRATE")]
    no_migrate: bool,
    /// Master key file (default DATA_DIR/master.key); KEYGATE_MASTER_KEY may carry the key itself.
    #[arg(long, env = "KEYGATE_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
    /// Redis URL for rate limits shared across instances.
    #[arg(long, env = "KEYGATE_REDIS")]
    redis: Option<String>,
    /// What rate-limit does while Redis is unreachable.
    #[arg(long, env = "KEYGATE_RATE_LIMIT_FAILURE", value_enum, default_value_t = Failure::Open)]
    rate_limit_failure: Failure,
    /// Admin address: /metrics, /healthz, /readyz, /v1/usage and the dashboard at /ui (the last
    /// two need the admin token).
    #[arg(long, env = "KEYGATE_ADMIN_LISTEN", default_value = "127.0.0.1:9090")]
    admin_listen: SocketAddr,
    /// Do not serve the usage dashboard at /ui on the admin listener.
    #[arg(long, env = "KEYGATE_NO_UI")]
    no_ui: bool,
    /// The admin token the dashboard and /v1/usage require [default: DATA_DIR/admin-token,
    /// created with a random token on first start].
    #[arg(
        long,
        env = "KEYGATE_ADMIN_TOKEN_FILE",
        conflicts_with = "admin_token_secret"
    )]
    admin_token_file: Option<PathBuf>,
    /// Take the admin token from this vault secret (VAULT/NAME) instead of a file.
    #[arg(long, env = "KEYGATE_ADMIN_TOKEN_SECRET", value_name = "VAULT/NAME")]
    admin_token_secret: Option<String>,
    /// Answer /v1/usage and /v1/usage/events without the admin token (as before it existed).
    #[arg(long, env = "KEYGATE_OPEN_USAGE_API")]
    open_usage_api: bool,
    /// Override a built-in provider's base URL: ID=URL (repeatable).
    #[arg(long = "provider-url", env = "KEYGATE_PROVIDER_URL", value_delimiter = ',', value_parser = parse_provider_url)]
    provider_urls: Vec<(String, String)>,
    /// Proxies whose X-Forwarded-For is trusted (CIDRs, comma-separated).
    #[arg(long, env = "KEYGATE_TRUST_FORWARDED_FOR", value_delimiter = ',')]
    trust_forwarded_for: Vec<ipnet::IpNet>,
    /// Larger request bodies get 413.
    #[arg(long, env = "KEYGATE_MAX_BODY_BYTES", default_value_t = 10_485_760)]
    max_body_bytes: u64,
    /// Access and event log format on stdout.
    #[arg(long, env = "KEYGATE_LOG_FORMAT", value_enum, default_value_t = Format::Json)]
    log_format: Format,
    /// Seconds to let in-flight requests finish after SIGTERM.
    #[arg(long, env = "KEYGATE_SHUTDOWN_GRACE", default_value_t = 30)]
    shutdown_grace: u64,
    /// Seconds after SIGTERM during which /readyz answers 503 "draining" while new connections
    /// are still served (set it to the load balancer's health-check interval).
    #[arg(long, env = "KEYGATE_DRAIN_DELAY", default_value_t = 0)]
    drain_delay: u64,
    /// Most client connections served at once; one more is answered 503 and closed.
    #[arg(long, env = "KEYGATE_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// Most requests in progress at once (each holds its place until its response body has
    /// been sent); one more is answered 503 at once.
    #[arg(long, env = "KEYGATE_MAX_REQUESTS", default_value_t = 4_096)]
    max_requests: usize,
    /// PEM CA certificates trusted for https:// upstreams besides the system and webpki roots
    /// (repeatable).
    #[arg(
        long = "upstream-ca-file",
        env = "KEYGATE_UPSTREAM_CA_FILE",
        value_delimiter = ','
    )]
    upstream_ca_files: Vec<PathBuf>,
    /// Longest time to open an upstream connection: TCP, TLS and HTTP/2 setup (e.g. 10s, 500ms).
    #[arg(long, env = "KEYGATE_UPSTREAM_CONNECT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    upstream_connect_timeout: Duration,
    /// PEM client certificate chain for upstreams that require one (mTLS).
    #[arg(
        long,
        env = "KEYGATE_UPSTREAM_CLIENT_CERT",
        requires = "upstream_client_key"
    )]
    upstream_client_cert: Option<PathBuf>,
    /// PEM private key for --upstream-client-cert.
    #[arg(
        long,
        env = "KEYGATE_UPSTREAM_CLIENT_KEY",
        requires = "upstream_client_cert"
    )]
    upstream_client_key: Option<PathBuf>,
    /// Threads serving client connections, one runtime each (1-1024; default: one per CPU).
    #[arg(long, env = "KEYGATE_WORKERS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,
    /// Delete usage-ledger rows older than this (e.g. 90d, 12w; 0 keeps them forever) [default: 90d].
    #[arg(long, env = "KEYGATE_USAGE_RETENTION", value_parser = keygate_usage::parse_duration)]
    usage_retention: Option<Duration>,
    /// Do not record AI requests in DATA_DIR/usage.db (`keygate usage`, /v1/usage).
    #[arg(long, env = "KEYGATE_NO_USAGE_LEDGER")]
    no_usage_ledger: bool,
    /// Export traces to this OpenTelemetry collector over OTLP/HTTP (JSON): spans are posted to
    /// URL/v1/traces, or to URL itself when it ends in /v1/traces (docs/tracing.md).
    #[arg(long, env = "KEYGATE_OTLP_ENDPOINT", value_parser = parse_upstream)]
    otlp_endpoint: Option<http::Uri>,
    /// Also count requests and tokens per access key on /metrics, labelled by key id: one series
    /// per key, so only for a bounded number of keys.
    #[arg(long, env = "KEYGATE_METRICS_PER_KEY")]
    metrics_per_key: bool,
    #[command(flatten)]
    ip_intel: crate::ip_intel::IpIntelArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum Failure {
    Open,
    Closed,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Pretty,
}

fn parse_upstream(value: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = value.parse().map_err(|err| format!("invalid URL: {err}"))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.authority().is_some() => Ok(uri),
        _ => Err("expected an http:// or https:// URL with a host".into()),
    }
}

fn parse_internal_endpoint(value: &str) -> Result<InternalEndpointConfig, String> {
    let usage = "expected NAME.internal[:PORT]=POLICY[,upstream=URL], e.g. api.internal=api.yml";
    let (name, rest) = value.split_once('=').ok_or(usage)?;
    let name = name.trim().to_ascii_lowercase();
    let (host, port) = match name.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (name.as_str(), None),
    };
    let label = host.strip_suffix(".internal").unwrap_or_default();
    let valid_label = !label.is_empty()
        && label.split('.').all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !valid_label || port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return Err(format!("invalid internal endpoint name '{name}': {usage}"));
    }
    let (policy, upstream) = match rest.rsplit_once(",upstream=") {
        Some((policy, url)) => (policy, Some(parse_upstream(url)?)),
        None => (rest, None),
    };
    if policy.is_empty() {
        return Err(format!(
            "no policy file for internal endpoint '{name}': {usage}"
        ));
    }
    Ok(InternalEndpointConfig {
        name,
        policy: PathBuf::from(policy),
        upstream,
    })
}

/// The name declared twice among `endpoints`, if one is.
fn duplicate_endpoint(endpoints: &[InternalEndpointConfig]) -> Option<&str> {
    let mut seen = std::collections::HashSet::new();
    endpoints
        .iter()
        .map(|e| e.name.as_str())
        .find(|name| !seen.insert(*name))
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    keygate_policy::actions::parse_duration(value)
}

fn parse_provider_url(value: &str) -> Result<(String, String), String> {
    let (id, url) = value
        .split_once('=')
        .ok_or("expected ID=URL, e.g. openai=http://127.0.0.1:9999/v1")?;
    parse_upstream(url)?;
    Ok((id.trim().to_ascii_lowercase(), url.to_owned()))
}

pub fn run(args: ServeArgs) -> ExitCode {
    init_tracing(args.log_format);
    if let Some(name) = duplicate_endpoint(&args.internal_endpoints) {
        eprintln!("error: --internal-endpoint {name} is declared twice");
        return ExitCode::from(2);
    }
    // The stores block on their database (a PostgreSQL client drives a runtime of its own, which
    // cannot start inside another): they are opened before the async runtime starts.
    let stores = match Stores::open(&args) {
        Ok(stores) => stores,
        Err((message, code)) => {
            eprintln!("error: {message}");
            return ExitCode::from(code);
        }
    };
    // The control plane (accept, reload, admin, signals) runs here; client connections run on
    // the per-core worker runtimes that `keygate_server::run` starts.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(serve(args, stores))
}

/// What `serve` reads from the store: caches of secrets, access keys and IP policies, the dashboard's
/// key admin, the usage ledger, and the login session key.
struct Stores {
    secrets: Arc<CachedSecrets>,
    access_keys: Arc<KeyCache>,
    session_key: SessionKey,
    ip_policies: Arc<CachedIpPolicies>,
    key_admin: Option<Arc<dyn keygate_server::KeyAdmin>>,
    ledger: Option<Arc<Ledger>>,
}

impl Stores {
    /// Opens them all; an error comes with the exit status (2: the store or its key, 1: the ledger).
    fn open(args: &ServeArgs) -> Result<Self, (String, u8)> {
        let (secrets, access_keys, session_key) = open_stores(args).map_err(|m| (m, 2))?;
        let ip_policies = open_ip_policies(args).map_err(|m| (m, 2))?;
        let key_admin = if args.no_ui {
            None
        } else {
            Some(dashboard::key_admin(args).map_err(|m| (m, 2))?)
        };
        let ledger = open_ledger(args).map_err(|err| (err.to_string(), 1))?;
        Ok(Self {
            secrets,
            access_keys,
            session_key,
            ip_policies,
            key_admin,
            ledger,
        })
    }
}

async fn serve(args: ServeArgs, stores: Stores) -> ExitCode {
    let Stores {
        secrets,
        access_keys,
        session_key,
        ip_policies,
        key_admin,
        ledger,
    } = stores;
    let ip_intel = match args.ip_intel.open() {
        Ok(files) => files,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let admin_token = dashboard::admin_token(&args, secrets.as_ref());
    let admin_token = match admin_token {
        Ok(token) => token,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let (rate_limiter, budgets) = match shared_state(&args).await {
        Ok(stores) => stores,
        Err(message) => {
            eprintln!("error: --redis: {message}");
            return ExitCode::from(2);
        }
    };
    let http = HttpClient::new(HttpConfig {
        connect_timeout: args.upstream_connect_timeout,
        tls: TlsFiles {
            ca_files: args.upstream_ca_files,
            client_cert: args.upstream_client_cert.zip(args.upstream_client_key).map(
                |(cert_file, key_file)| ClientCert {
                    cert_file,
                    key_file,
                },
            ),
        },
    });
    let http = match http {
        Ok(http) => http,
        Err(err) => {
            eprintln!("error: cannot use the upstream TLS file {err}");
            return ExitCode::from(2);
        }
    };
    let config = ServerConfig {
        policy: args.policy,
        listen: args.listen,
        admin_listen: args.admin_listen,
        tls: args.tls_cert.zip(args.tls_key),
        upstream: args.upstream,
        trust_forwarded_for: args.trust_forwarded_for,
        max_body_bytes: args.max_body_bytes,
        log_format: match args.log_format {
            Format::Json => LogFormat::Json,
            Format::Pretty => LogFormat::Pretty,
        },
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        drain_delay: Duration::from_secs(args.drain_delay),
        max_connections: args.max_connections.max(1),
        max_requests: args.max_requests.max(1),
        workers: args.workers.map_or_else(
            || std::thread::available_parallelism().map_or(1, usize::from),
            usize::from,
        ),
        metrics_per_key: args.metrics_per_key,
        ui: !args.no_ui,
        admin_token,
        open_usage_api: args.open_usage_api,
        otlp_endpoint: args.otlp_endpoint,
        internal_endpoints: args.internal_endpoints,
    };
    let services = Services {
        secrets,
        rate_limiter,
        budgets,
        provider_urls: args.provider_urls.into_iter().collect::<HashMap<_, _>>(),
        http,
        access_keys,
        ip_policies,
        ledger,
        key_admin,
        session_key,
        ip_intel,
    };
    match keygate_server::run(config, services).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

/// Rate-limit windows and access-key budgets: in process memory, or on `--redis` shared by every
/// gateway using it (only a malformed URL is an error; an unreachable server is retried).
async fn shared_state(
    args: &ServeArgs,
) -> Result<(Arc<dyn RateLimiter>, Arc<dyn BudgetStore>), String> {
    let Some(url) = &args.redis else {
        return Ok((
            Arc::new(MemoryLimiter::default()),
            Arc::new(MemoryBudgets::default()),
        ));
    };
    let failure_mode = match args.rate_limit_failure {
        Failure::Open => FailureMode::Open,
        Failure::Closed => FailureMode::Closed,
    };
    let config = RedisConfig {
        failure_mode,
        ..RedisConfig::default()
    };
    let limiter = RedisLimiter::connect(url, config)
        .await
        .map_err(|err| err.to_string())?;
    let budgets = RedisBudgets::connect(url, config.timeout)
        .await
        .map_err(|err| err.to_string())?;
    Ok((Arc::new(limiter), Arc::new(budgets)))
}

/// The data dir's secrets and access keys, each cached in memory and refreshed on change, and
/// the key login sessions are sealed with (derived from the master key).
fn open_stores(
    args: &ServeArgs,
) -> Result<(Arc<CachedSecrets>, Arc<KeyCache>, SessionKey), String> {
    let source =
        MasterKeySource::from_env(args.master_key_file.clone()).map_err(|err| err.to_string())?;
    let open = || args.open_store(Some(&source));
    let session_key = SessionKey::new(
        *open()?
            .derive_key(SESSION_KEY_CONTEXT)
            .map_err(|err| err.to_string())?,
    );
    let secrets = CachedSecrets::start(open()?, SECRET_POLL).map_err(|err| err.to_string())?;
    let keys = KeyStore::open(open()?).map_err(|err| err.to_string())?;
    let keys = KeyCache::start(
        keys,
        KeyCache::DEFAULT_POLL_INTERVAL,
        KeyCache::DEFAULT_LAST_USED_INTERVAL,
    )
    .map_err(|err| err.to_string())?;
    Ok((Arc::new(secrets), Arc::new(keys), session_key))
}

impl ServeArgs {
    /// The store `--database` names (else the data dir's), unlocked with `key` when given.
    pub(crate) fn open_store(&self, key: Option<&MasterKeySource>) -> Result<Store, String> {
        let location = crate::database::location(&self.data_dir, self.database.as_ref());
        let migrations = if self.no_migrate {
            Migrations::Require
        } else {
            Migrations::Apply
        };
        let mut store = Store::open_database_with(&self.data_dir, &location, migrations)
            .map_err(|err| err.to_string())?;
        if let Some(key) = key {
            store.unlock(key).map_err(|err| err.to_string())?;
        }
        Ok(store)
    }
}

/// The data dir's IP policies, cached in memory and refreshed on change (no master key needed).
fn open_ip_policies(args: &ServeArgs) -> Result<Arc<CachedIpPolicies>, String> {
    let store = args.open_store(None)?;
    CachedIpPolicies::start(store, SECRET_POLL)
        .map(Arc::new)
        .map_err(|err| err.to_string())
}

/// The usage ledger (DATA_DIR/usage.db, or the `--database` PostgreSQL database), unless
/// `--no-usage-ledger`.
fn open_ledger(args: &ServeArgs) -> Result<Option<Arc<Ledger>>, keygate_usage::Error> {
    if args.no_usage_ledger {
        return Ok(None);
    }
    let retention = match args.usage_retention {
        None => LedgerConfig::default().retention,
        Some(keep) if keep.is_zero() => None,
        Some(keep) => Some(keep),
    };
    let config = LedgerConfig {
        retention,
        apply_migrations: !args.no_migrate,
        ..LedgerConfig::default()
    };
    let location = match &args.database {
        Some(database) => keygate_usage::location(database, &args.data_dir),
        None => keygate_usage::default_location(&args.data_dir),
    };
    Ok(Some(Arc::new(Ledger::open(&location, config)?)))
}

fn init_tracing(format: Format) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    match format {
        Format::Json => builder.json().flatten_event(true).init(),
        Format::Pretty => builder.init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_endpoint_flags() {
        let e = parse_internal_endpoint("API.internal=/etc/kg/api.yml").unwrap();
        assert_eq!(
            (e.name.as_str(), e.policy.to_str(), e.upstream),
            ("api.internal", Some("/etc/kg/api.yml"), None)
        );
        let e = parse_internal_endpoint("svc.internal:1234=svc.yml,upstream=http://127.0.0.1:9000")
            .unwrap();
        assert_eq!(e.name, "svc.internal:1234");
        assert_eq!(e.policy, PathBuf::from("svc.yml"));
        assert_eq!(
            e.upstream.as_ref().unwrap().to_string(),
            "http://127.0.0.1:9000/"
        );
        for bad in [
            "api.internal",
            "api.example.com=p.yml",
            ".internal=p.yml",
            "a..internal=p.yml",
            "api.internal:99999=p.yml",
            "api.internal=",
            "api.internal=p.yml,upstream=ftp://x",
        ] {
            assert!(parse_internal_endpoint(bad).is_err(), "{bad}");
        }
        let twice = [e.clone(), e];
        assert_eq!(duplicate_endpoint(&twice), Some("svc.internal:1234"));
    }
}
