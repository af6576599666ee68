//! Model discovery: providers whose models come from their own server (`GET {base_url}/models`,
//! `providers[].model_discovery`, on by default for a custom provider that declares no models).
//!
//! Each such provider gets a background task, started when the policy loads (never when it is
//! only checked: `deps.offline`), that lists the models at once and then every `interval`, each
//! request bounded by `timeout`. A good answer replaces the provider's list and, when it changed,
//! the registry requests read ([`ArcSwap`]: no lock on the request path); a failure keeps the
//! last good list and logs a warning, at most one per [`WARN_EVERY`] and provider. The tasks
//! stop when the action is dropped (policy replaced): they are aborted and hold only a [`Weak`]
//! reference between two lists.
//!
//! Loading never waits for the network. A request that finds no model while some provider's
//! first list is still on its way waits for it (at most its `timeout`) and is resolved again;
//! `GET /v1/models` waits the same way. A reloaded policy starts from the lists the process last
//! fetched for the same provider id and URL ([`LAST_GOOD`]), so a reload never forgets models,
//! not even while the server is down.

use std::collections::HashMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Guard};
use http::{header, HeaderName, HeaderValue, Request};
use http_body_util::{BodyExt, Limited};
use keygate_ai::discovery::list_changes;
use keygate_ai::{
    parse_model_list, set_credential, ApiFormat, Candidate, ClientRequest, DiscoveredModels,
    Registry, Surface, DEFAULT_ANTHROPIC_VERSION,
};
use keygate_cel::{ActionResults, ConnInfo, Scope, SecretSource, Template, Vars};
use keygate_http::HttpClient;
use tracing::{debug, info, warn};

use super::config::{parse_duration, ProviderConfig};
use super::pipeline::Stop;
use super::results::Trace;
use super::AiGateway;
use crate::body::empty;
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::exchange::Exchange;

/// Default time between two lists of one provider.
pub(super) const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Default bound of one list request (connect, head and body).
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Shortest `interval` accepted.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// A list body larger than this is refused.
const MAX_LIST_BYTES: usize = 4 << 20;
/// While a provider's lists keep failing, at most one warning per this long (others are debug).
const WARN_EVERY: Duration = Duration::from_secs(300);

/// Model ids by (provider id, list URL).
type Lists = HashMap<(String, String), Vec<String>>;

/// The last good list of every (provider id, list URL) this process fetched, for the next
/// policy load (process-wide, like the strategy metrics).
static LAST_GOOD: LazyLock<Mutex<Lists>> = LazyLock::new(Mutex::default);

/// The action's registry and the tasks keeping its discovered models current.
pub(super) struct Discovery {
    shared: Arc<Shared>,
    /// `policy check`: nothing is fetched.
    offline: bool,
    /// One refresh task per source, started once; aborted when the action is dropped.
    tasks: OnceLock<Vec<AbortOnDrop>>,
}

/// What the tasks and the requests share.
struct Shared {
    /// The registry built from the policy alone; every snapshot is merged into it.
    base: Registry,
    /// What requests read: `base` with the current lists merged in.
    current: ArcSwap<Registry>,
    sources: Vec<Source>,
    /// The lists `current` was built from (the tasks only).
    lists: Mutex<DiscoveredModels>,
    /// Sources whose first list has not been tried to the end yet.
    pending: AtomicUsize,
    /// Woken when `pending` reaches 0.
    settled: tokio::sync::Notify,
    /// How long a request waits for the first lists: the longest source timeout.
    wait: Duration,
}

/// One discovering provider.
struct Source {
    provider: String,
    /// The list URL, and the same without its query for the log (a query may hold a secret).
    url: String,
    shown_url: String,
    /// `providers[i].api_keys[0]`, rendered without a request for each list.
    key: Option<Template>,
    /// How the key is sent: `Authorization: Bearer` (OpenAI format), else `x-api-key`.
    format: ApiFormat,
    interval: Duration,
    timeout: Duration,
    http: HttpClient,
    secrets: Arc<dyn SecretSource>,
    /// Counted in `pending` until its first list was tried (not when seeded from [`LAST_GOOD`]).
    awaited: bool,
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Discovery {
    /// Picks the discovering providers of `registry` (checking their `model_discovery`), seeds
    /// their lists from the process's last good ones and starts the tasks when a runtime runs.
    pub(super) fn build(
        cx: &BuildContext<'_>,
        providers: &[ProviderConfig],
        registry: Registry,
        keys: &[Vec<Template>],
        provider_http: &[Option<HttpClient>],
    ) -> Result<Discovery, Diagnostic> {
        let offline = cx.deps.offline;
        let mut sources = Vec::new();
        for (provider, models) in registry.provider_models() {
            let Some(index) = provider.config_index else {
                continue;
            };
            let Some(config) = providers.get(index) else {
                continue;
            };
            let settings = config.model_discovery.as_ref();
            let field = |name: &str| format!("providers[{index}].model_discovery{name}");
            let duration = |name: &str, value: Option<&String>, default: Duration| match value {
                Some(text) => parse_duration(text).map_err(|m| cx.error(&field(name), m)),
                None => Ok(default),
            };
            let interval = duration(
                ".interval",
                settings.and_then(|s| s.interval.as_ref()),
                DEFAULT_INTERVAL,
            )?;
            if interval < MIN_INTERVAL {
                return Err(cx.error(
                    &field(".interval"),
                    "model_discovery.interval must be at least 1s",
                ));
            }
            let timeout = duration(
                ".timeout",
                settings.and_then(|s| s.timeout.as_ref()),
                DEFAULT_TIMEOUT,
            )?;
            let enabled = match settings {
                Some(settings) => settings.enabled.unwrap_or(true),
                // A custom provider that has no model otherwise (none declared, none inherited).
                None => !provider.builtin && models.is_empty(),
            };
            if !enabled || provider.disabled {
                continue;
            }
            if provider.is_mock() {
                if settings.is_some() {
                    return Err(cx.error(
                        &field(""),
                        "model_discovery needs an http:// or https:// base_url",
                    ));
                }
                continue;
            }
            let url = provider.models_url();
            let format = if provider
                .surfaces
                .iter()
                .any(|s| s.format == ApiFormat::OpenAi)
            {
                ApiFormat::OpenAi
            } else {
                ApiFormat::Anthropic
            };
            sources.push(Source {
                provider: provider.id.clone(),
                shown_url: url.split('?').next().unwrap_or_default().to_owned(),
                url,
                key: keys.get(index).and_then(|k| k.first()).cloned(),
                format,
                interval,
                timeout,
                http: provider_http
                    .get(index)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| cx.deps.http.clone()),
                secrets: cx.deps.secrets.clone(),
                awaited: false,
            });
        }
        if sources.is_empty() && registry.available(None).is_empty() {
            // ngrok's docs show such configurations (e.g. `only_allow_configured_providers`
            // alone): they load, and every request is refused with a 4xx naming the reason.
            cx.warn(
                "",
                "no provider or model is usable with this configuration: every request will be refused (422)",
            );
        }
        let mut lists = DiscoveredModels::default();
        if !offline {
            let last_good = lock(&LAST_GOOD);
            for source in &mut sources {
                match last_good.get(&(source.provider.clone(), source.url.clone())) {
                    Some(ids) => {
                        lists.set(&source.provider, ids.clone());
                    }
                    None => source.awaited = true,
                }
            }
        }
        let pending = sources.iter().filter(|s| s.awaited).count();
        let wait = sources.iter().map(|s| s.timeout).max().unwrap_or_default();
        let discovery = Discovery {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(registry.with_discovered(&lists)),
                base: registry,
                sources,
                lists: Mutex::new(lists),
                pending: AtomicUsize::new(pending),
                settled: tokio::sync::Notify::new(),
                wait,
            }),
            offline,
            tasks: OnceLock::new(),
        };
        discovery.start();
        Ok(discovery)
    }

    /// The registry as of now (lock-free).
    pub(super) fn registry(&self) -> Guard<Arc<Registry>> {
        self.shared.current.load()
    }

    /// Starts the refresh tasks if a Tokio runtime is running and they are not started yet
    /// (the policy may be built outside one). Cheap after the first call.
    pub(super) fn start(&self) {
        if self.offline || self.shared.sources.is_empty() || self.tasks.get().is_some() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.tasks.get_or_init(|| {
            (0..self.shared.sources.len())
                .map(|index| {
                    let task = runtime.spawn(refresh_loop(Arc::downgrade(&self.shared), index));
                    AbortOnDrop(task.abort_handle())
                })
                .collect()
        });
    }

    /// Whether some provider's first list is still on its way.
    pub(super) fn unsettled(&self) -> bool {
        !self.offline && self.shared.pending.load(Ordering::Acquire) > 0
    }

    /// Waits until every provider's first list was tried (at most the longest timeout).
    pub(super) async fn settle(&self) {
        if !self.unsettled() {
            return;
        }
        self.start();
        let notified = self.shared.settled.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.unsettled() {
            // The first lists are bounded by their timeouts; the margin covers the scheduling.
            let bound = self.shared.wait + Duration::from_millis(100);
            let _ = tokio::time::timeout(bound, notified).await;
        }
    }
}

impl AiGateway {
    /// The registry requests resolve against: the policy's, with the discovered models.
    pub(super) fn registry(&self) -> Guard<Arc<Registry>> {
        self.discovery.registry()
    }

    /// [`AiGateway::candidates`], tried once more after the first model lists arrived when it
    /// found nothing before them (a request right after the gateway started).
    pub(super) async fn discovered_candidates(
        &self,
        ex: &Exchange,
        request: &ClientRequest,
        surface: Surface,
        trace: &mut Trace,
    ) -> Result<Vec<Candidate>, Stop> {
        self.discovery.start();
        match self.candidates(ex, request, surface, trace) {
            Err(Stop::Gateway(_)) if self.discovery.unsettled() => {
                self.discovery.settle().await;
                trace.rejected.clear();
                trace.selection.clear();
                self.candidates(ex, request, surface, trace)
            }
            found => found,
        }
    }
}

impl Shared {
    /// Records a good list: the process's last good one, and when it changed, a new registry.
    fn store(&self, index: usize, ids: Vec<String>) {
        let source = &self.sources[index];
        lock(&LAST_GOOD).insert((source.provider.clone(), source.url.clone()), ids.clone());
        let mut lists = lock(&self.lists);
        let old = lists.get(&source.provider).map(<[String]>::to_vec);
        if !lists.set(&source.provider, ids) {
            return;
        }
        self.current
            .store(Arc::new(self.base.with_discovered(&lists)));
        let new = lists.get(&source.provider).unwrap_or_default();
        let (added, removed) = list_changes(old.as_deref().unwrap_or_default(), new);
        info!(
            provider = %source.provider,
            url = %source.shown_url,
            models = new.len(),
            added = %name_list(&added),
            removed = %name_list(&removed),
            "discovered models changed"
        );
    }

    /// One source tried its first list.
    fn first_tried(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.settled.notify_waiters();
        }
    }
}

/// Lists `shared.sources[index]` now and then every interval, until the action is gone.
async fn refresh_loop(shared: Weak<Shared>, index: usize) {
    let mut health = Health::default();
    let mut first = true;
    loop {
        let interval = {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let source = &shared.sources[index];
            match source.fetch().await {
                Ok(ids) => {
                    health.succeeded(source, ids.len());
                    shared.store(index, ids);
                }
                Err(err) => health.failed(source, &err),
            }
            if std::mem::take(&mut first) && source.awaited {
                shared.first_tried();
            }
            source.interval
        };
        tokio::time::sleep(interval).await;
    }
}

/// A source's failure streak, so that a server that stays down is not a warning per interval.
#[derive(Default)]
struct Health {
    /// Failures in a row.
    failures: u64,
    /// A warning was logged during the current streak.
    warned: bool,
    last_warning: Option<Instant>,
}

impl Health {
    fn failed(&mut self, source: &Source, err: &str) {
        self.failures += 1;
        let due = self
            .last_warning
            .is_none_or(|at| at.elapsed() >= WARN_EVERY);
        if due {
            self.last_warning = Some(Instant::now());
            self.warned = true;
            warn!(
                provider = %source.provider,
                url = %source.shown_url,
                error = %err,
                failures = self.failures,
                retry_in_s = source.interval.as_secs_f64(),
                "model discovery failed; keeping the last good model list and retrying"
            );
        } else {
            debug!(
                provider = %source.provider,
                url = %source.shown_url,
                error = %err,
                failures = self.failures,
                "model discovery failed again"
            );
        }
    }

    fn succeeded(&mut self, source: &Source, models: usize) {
        if self.warned {
            info!(
                provider = %source.provider,
                url = %source.shown_url,
                models,
                "model discovery recovered"
            );
        }
        self.failures = 0;
        self.warned = false;
    }
}

/// The future of [`Source::fetch`], boxed so the task's future stays provably `Send`.
type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<String>, String>> + Send + 'a>>;

impl Source {
    /// GETs and reads the list; the error says what went wrong, never with the key.
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(self.fetch_inner())
    }

    async fn fetch_inner(&self) -> Result<Vec<String>, String> {
        let mut request = Request::get(self.url.as_str())
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("keygate/", env!("CARGO_PKG_VERSION")),
            )
            .body(empty())
            .map_err(|err| format!("invalid URL: {err}"))?;
        if let Some(key) = self.key() {
            set_credential(request.headers_mut(), self.format, &key)
                .map_err(|_| "the API key is not a valid header value".to_owned())?;
        }
        if self.format == ApiFormat::Anthropic {
            request.headers_mut().insert(
                HeaderName::from_static("anthropic-version"),
                HeaderValue::from_static(DEFAULT_ANTHROPIC_VERSION),
            );
        }
        let exchange = async {
            let response = self
                .http
                .send(request)
                .await
                .map_err(|err| format!("request failed: {err}"))?;
            let status = response.status();
            if !status.is_success() {
                return Err(format!("answered HTTP {}", status.as_u16()));
            }
            let body = Limited::new(response.into_body(), MAX_LIST_BYTES)
                .collect()
                .await
                .map_err(|err| format!("reading the list failed: {err}"))?
                .to_bytes();
            parse_model_list(&body).map_err(|err| err.to_string())
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))?
    }

    /// The first configured key, rendered without a request: `None` without one, when it is
    /// empty, or when the template cannot be rendered so (it reads the request).
    fn key(&self) -> Option<String> {
        let template = self.key.as_ref()?;
        let rendered = match template.as_literal() {
            Some(text) => Ok(text.to_owned()),
            None => {
                let nowhere = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
                let conn = ConnInfo::new(nowhere, nowhere);
                let (vars, actions) = (Vars::default(), ActionResults::default());
                let scope = Scope {
                    conn: &conn,
                    req: None,
                    res: None,
                    vars: &vars,
                    actions: &actions,
                    secrets: &*self.secrets,
                    extra: &[],
                };
                template.eval_string(&scope)
            }
        };
        match rendered {
            Ok(key) if !key.is_empty() => Some(key),
            Ok(_) => None,
            Err(err) => {
                debug!(
                    provider = %self.provider,
                    error = %err.message,
                    "the provider's first API key needs a request; listing models without a key"
                );
                None
            }
        }
    }
}

/// `a, b, c` (at most 20 names, then how many more).
fn name_list(names: &[&str]) -> String {
    const SHOWN: usize = 20;
    let mut text = names
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests;
