//! The running gateway: the current policy (swapped atomically on reload) and the services every
//! request uses; [`run`] starts the listeners and serves until a shutdown signal.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use keygate_cel::{Compiler, IpIntel, Provides, SecretSource};
use keygate_http::HttpClient;
use keygate_policy::{AccessKeys, Deps, IpPolicies, Policy, PolicyError};
use keygate_ratelimit::{BudgetStore, Decision, Observed, RateLimiter};
use keygate_usage::Ledger;
use tracing::{info, warn};

use crate::access_log::AccessLog;
use crate::admin::KeyAdmin;
use crate::admission::Admission;
use crate::config::ServerConfig;
use crate::internal::InternalEndpoints;
use crate::metrics::{Metrics, ResultLabels};
use crate::otlp::Otlp;
use crate::reload_log::ReloadLog;
use crate::workers::Workers;
use crate::{admin, listener, reload, tls};

/// Services the CLI wires in.
pub struct Services {
    pub secrets: Arc<dyn SecretSource>,
    pub rate_limiter: Arc<dyn RateLimiter>,
    /// Access keys' token and spend budgets (memory, or Redis with `--redis`).
    pub budgets: Arc<dyn BudgetStore>,
    pub provider_urls: std::collections::HashMap<String, String>,
    /// Every upstream request goes through it (`--upstream`, providers, JWKS).
    pub http: HttpClient,
    /// The data dir's access keys, for policies whose `ai-gateway` sets `access_keys`.
    pub access_keys: Arc<dyn AccessKeys>,
    /// The data dir's IP policies, for `restrict-ips` `ip_policies`.
    pub ip_policies: Arc<dyn IpPolicies>,
    /// Where each AI request's usage goes (`None`: `--no-usage-ledger`).
    pub ledger: Option<Arc<Ledger>>,
    /// Access-key management for the dashboard (`None`: its keys page says so).
    pub key_admin: Option<Arc<dyn KeyAdmin>>,
    /// Seals login session cookies; derived from the master key.
    pub session_key: keygate_policy::SessionKey,
    /// Answers the IP-intelligence variables (`--ip-intel-db`, `--ip-categories`); a policy
    /// reading a kind of fact it lacks does not load.
    pub ip_intel: Arc<dyn IpIntel>,
}

/// Shared state of a running gateway.
pub struct Gateway {
    pub config: ServerConfig,
    pub policy: ArcSwap<Policy>,
    pub compiler: Compiler,
    pub deps: Deps,
    pub http: HttpClient,
    pub metrics: Metrics,
    pub access_log: AccessLog,
    pub ledger: Option<Arc<Ledger>>,
    /// The trace exporter (`--otlp-endpoint`).
    pub otlp: Option<Otlp>,
    /// Access-key management for the dashboard.
    pub key_admin: Option<Arc<dyn KeyAdmin>>,
    /// The serving policy's text and the last reloads, for the dashboard.
    pub reloads: ReloadLog,
    /// `--internal-endpoint`s, for `forward-internal`.
    pub internal: Arc<InternalEndpoints>,
    /// The connection and request caps, and whether the gateway is draining.
    pub admission: Admission,
}

impl Gateway {
    /// Reloads the policy file (call off the request path): swaps it in when valid, keeps the
    /// old one otherwise.
    pub fn reload(&self) {
        // A secret stored just before the policy that reads it must be visible to the new policy.
        self.deps.secrets.refresh();
        if let Some(Err(err)) = self.compiler.ip_intel().map(|intel| intel.refresh()) {
            warn!(error = %err, "IP intelligence files not reloaded; the previous data stays in use");
        }
        match load_policy(&self.config.policy, &self.compiler, &self.deps) {
            Ok((policy, text)) => {
                log_warnings(&self.config.policy, &policy);
                self.reloads.loaded(text, policy.warnings.len());
                self.policy.store(Arc::new(policy));
                self.metrics
                    .policy_reloads
                    .get_or_create(&ResultLabels { result: "ok" })
                    .inc();
                info!(policy = %self.config.policy.display(), "policy reloaded");
            }
            Err(err) => {
                self.reloads.failed(err.to_string());
                self.metrics
                    .policy_reloads
                    .get_or_create(&ResultLabels { result: "error" })
                    .inc();
                warn!(error = %err, "policy reload rejected; the previous policy keeps serving");
            }
        }
    }

    /// Reloads internal endpoint `name`'s policy file as [`Gateway::reload`] does the main one.
    pub fn reload_internal(&self, name: &str) {
        self.deps.secrets.refresh();
        let result = self.internal.reload(name, &self.compiler, &self.deps);
        let labels = ResultLabels {
            result: if result.is_ok() { "ok" } else { "error" },
        };
        self.metrics.policy_reloads.get_or_create(&labels).inc();
        match result {
            Ok(()) => info!(endpoint = name, "internal endpoint policy reloaded"),
            Err(err) => {
                warn!(endpoint = name, error = %err, "internal endpoint policy reload rejected; its previous policy keeps serving")
            }
        }
    }
}

/// The compiled policy and its text.
pub(crate) fn load_policy(
    path: &Path,
    compiler: &Compiler,
    deps: &Deps,
) -> Result<(Policy, String), PolicyError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|err| PolicyError {
        file: name.clone(),
        diagnostics: vec![keygate_policy::Diagnostic::error(
            keygate_policy::document::Position { line: 1, col: 1 },
            "",
            format!("cannot read the policy file: {err}"),
        )],
    })?;
    Policy::compile(&name, &text, compiler, deps).map(|policy| (policy, text))
}

pub(crate) fn log_warnings(path: &Path, policy: &Policy) {
    let name = path.display().to_string();
    for warning in &policy.warnings {
        warn!("{}", warning.in_file(&name));
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Policy(PolicyError),
    #[error("{0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the access-log writer: {0}")]
    AccessLog(std::io::Error),
    #[error("cannot start the worker threads: {0}")]
    Workers(std::io::Error),
    #[error("cannot start the OTLP trace exporter: {0}")]
    Otlp(std::io::Error),
}

impl StartError {
    /// Usage/validation problems exit 2, runtime ones 1, as for every command.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Policy(_) | StartError::Tls(_) => 2,
            StartError::Listen { .. }
            | StartError::AccessLog(_)
            | StartError::Workers(_)
            | StartError::Otlp(_) => 1,
        }
    }
}

/// Starts the gateway and serves until SIGTERM/SIGINT, then drains for the grace period.
pub async fn run(config: ServerConfig, services: Services) -> Result<(), StartError> {
    let http = services.http;
    let metrics = Metrics::new(config.metrics_per_key);
    let count_decision = metrics.rate_limit_observer();
    let rate_limiter: Arc<dyn RateLimiter> = Arc::new(Observed::new(
        services.rate_limiter,
        move |name: &str, decision: &Decision| count_decision(name, decision.limited),
    ));
    let internal = Arc::new(InternalEndpoints::new(
        &config.internal_endpoints,
        http.clone(),
    ));
    let deps = Deps {
        secrets: services.secrets,
        http: http.clone(),
        rate_limiter,
        budgets: services.budgets,
        provider_urls: Arc::new(services.provider_urls),
        offline: false,
        access_keys: Some(services.access_keys),
        ip_policies: Some(services.ip_policies),
        session_key: services.session_key,
        internal_endpoints: Some(internal.clone()),
    };
    let provides = services.ip_intel.provides();
    if provides != Provides::default() {
        info!(
            geo = provides.geo,
            asn = provides.asn,
            categories = provides.categories,
            "IP intelligence loaded"
        );
    }
    let compiler = Compiler::new().with_ip_intel(services.ip_intel);
    internal
        .load_all(&compiler, &deps)
        .map_err(StartError::Policy)?;
    let (policy, text) =
        load_policy(&config.policy, &compiler, &deps).map_err(StartError::Policy)?;
    log_warnings(&config.policy, &policy);
    let reloads = ReloadLog::new(text, policy.warnings.len());
    let tls = match &config.tls {
        Some((cert, key)) => Some(tls::TlsConfig::load(cert, key).map_err(StartError::Tls)?),
        None => None,
    };
    let client_listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
    let admin_listener = tokio::net::TcpListener::bind(config.admin_listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.admin_listen,
            source,
        })?;
    let access_log = AccessLog::start(config.log_format).map_err(StartError::AccessLog)?;
    let otlp = match &config.otlp_endpoint {
        Some(endpoint) => {
            let endpoint = crate::otlp::traces_url(endpoint);
            let dropped = metrics.otlp_spans_dropped();
            Some(Otlp::start(endpoint, http.clone(), dropped).map_err(StartError::Otlp)?)
        }
        None => None,
    };
    let workers = Workers::start(config.workers).map_err(StartError::Workers)?;
    let admission = Admission::new(config.max_connections, config.max_requests);
    let gateway = Arc::new(Gateway {
        access_log,
        config,
        policy: ArcSwap::from_pointee(policy),
        compiler,
        deps,
        http,
        metrics,
        ledger: services.ledger,
        otlp,
        key_admin: services.key_admin,
        reloads,
        admission,
        internal,
    });
    info!(
        listen = %gateway.config.listen,
        admin = %gateway.config.admin_listen,
        tls = tls.is_some(),
        policy = %gateway.config.policy.display(),
        "keygate listening"
    );
    let _watchers = watch_policies(&gateway);
    if let Some(tls) = &tls {
        tls.watch();
    }
    let admin = tokio::spawn(admin::serve(admin_listener, gateway.clone()));
    listener::serve(
        client_listener,
        tls,
        gateway.clone(),
        &workers,
        drain(&gateway),
    )
    .await;
    admin.abort();
    let _ = tokio::task::spawn_blocking(move || workers.stop()).await;
    let access_log = gateway.access_log.clone();
    let _ = tokio::task::spawn_blocking(move || access_log.flush()).await;
    // The workers are stopped: every finished request's spans are queued.
    if gateway.otlp.is_some() {
        let gateway = gateway.clone();
        let _ =
            tokio::task::spawn_blocking(move || gateway.otlp.as_ref().map(Otlp::shutdown)).await;
    }
    // The workers are stopped, so every finished request has recorded its usage by now.
    if let Some(ledger) = gateway.ledger.clone() {
        let _ = tokio::task::spawn_blocking(move || ledger.flush()).await;
    }
    info!("keygate stopped");
    Ok(())
}

/// Watches the main policy file and every internal endpoint's; keep the watchers alive for as
/// long as reloads should happen.
fn watch_policies(gateway: &Arc<Gateway>) -> Vec<notify::RecommendedWatcher> {
    let main = gateway.clone();
    let mut watchers = vec![reload::watch(&gateway.config.policy, move || main.reload())];
    for config in gateway.internal.configs() {
        let upstream = config.upstream.is_some();
        info!(endpoint = %config.name, policy = %config.policy.display(), upstream, "internal endpoint");
        let (owner, name) = (gateway.clone(), config.name.clone());
        watchers.push(reload::watch(&config.policy, move || {
            owner.reload_internal(&name)
        }));
    }
    watchers.into_iter().flatten().collect()
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(err) => {
            warn!(error = %err, "cannot listen for SIGTERM; only Ctrl-C stops the gateway");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Resolves when the listener should stop accepting: SIGTERM (or Ctrl-C), then `--drain-delay`
/// during which `/readyz` already answers 503, so load balancers move away while every new
/// connection is still served.
async fn drain(gateway: &Gateway) {
    shutdown_signal().await;
    gateway.admission.start_draining();
    let delay = gateway.config.drain_delay;
    info!(
        drain_delay_seconds = delay.as_secs_f64(),
        "shutdown requested; /readyz reports draining"
    );
    tokio::time::sleep(delay).await;
    info!("no longer accepting connections; draining in-flight requests");
}
