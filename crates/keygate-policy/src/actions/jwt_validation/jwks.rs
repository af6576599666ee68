//! JWKS key cache: fetched at load, refreshed in the background (honouring `Cache-Control:
//! max-age`), refetched on an unknown `kid` within a per-URL [`RefetchBudget`], and served stale while a JWKS URL is down. Readers take a lock-free snapshot ([`ArcSwap`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{header, Request, Uri};
use http_body_util::{BodyExt, Limited};
use jsonwebtoken::Algorithm;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::keys::{parse_jwks, VerifyKey};
use crate::body::empty;
use keygate_http::HttpClient;

/// Refresh interval when the JWKS response has no usable `max-age`.
const DEFAULT_REFRESH: Duration = Duration::from_secs(15 * 60);
/// `max-age` is clamped to this range.
const MIN_REFRESH: Duration = Duration::from_secs(60);
const MAX_REFRESH: Duration = Duration::from_secs(60 * 60);
/// After a failed background fetch, the next try comes this much later.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(60);
/// Requests with an unknown `kid` may trigger this many fetches of one URL in a row...
const KID_MISS_BURST: u32 = 3;
/// ...and earn one more every this long: a forged-kid flood costs at most 3 fetches a minute per
/// URL, while a rotation that comes right after a miss still gets its fetch.
const KID_MISS_REFILL: Duration = Duration::from_secs(20);
/// One fetch (connect, headers, body) must finish within this.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// A JWKS document larger than this is refused.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Why a JWKS could not be fetched. Messages name the URL, never a key.
#[derive(Debug, thiserror::Error)]
pub(super) enum FetchError {
    #[error("request to {url} failed: {detail}")]
    Request { url: Uri, detail: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: Uri, status: u16 },
    #[error("{url} did not answer within {}s", FETCH_TIMEOUT.as_secs())]
    Timeout { url: Uri },
    #[error("{url}: {detail}")]
    Document { url: Uri, detail: String },
}

/// The keys of every configured JWKS URL.
pub(in crate::actions) struct Jwks {
    sources: Vec<Arc<Source>>,
    http: HttpClient,
    /// Background refresh tasks, started once; aborted when the policy is dropped.
    refreshers: OnceLock<Vec<AbortOnDrop>>,
}

/// One JWKS URL and its cached keys.
struct Source {
    url: Uri,
    keys: ArcSwap<KeySet>,
    /// Serialises fetches of this URL (single flight).
    fetching: tokio::sync::Mutex<()>,
    /// Fetches that requests with unknown kids may still trigger.
    on_demand: Mutex<RefetchBudget>,
}

/// A token bucket of [`KID_MISS_BURST`] refetches, refilled one per [`KID_MISS_REFILL`].
#[derive(Debug)]
struct RefetchBudget {
    tokens: u32,
    /// Where the next token's refill period started.
    since: Instant,
}

impl RefetchBudget {
    fn full(now: Instant) -> Self {
        Self {
            tokens: KID_MISS_BURST,
            since: now,
        }
    }

    /// Takes one refetch at `now`, if the budget has one.
    fn take(&mut self, now: Instant) -> bool {
        let periods =
            now.saturating_duration_since(self.since).as_nanos() / KID_MISS_REFILL.as_nanos();
        let earned = u32::try_from(periods).unwrap_or(u32::MAX);
        if self.tokens.saturating_add(earned) >= KID_MISS_BURST {
            // Full: a token taken now starts its refill period now.
            self.tokens = KID_MISS_BURST;
            self.since = now;
        } else {
            self.tokens += earned;
            self.since += KID_MISS_REFILL * earned;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// A snapshot of one URL's keys.
#[derive(Default)]
struct KeySet {
    keys: Vec<Arc<VerifyKey>>,
    /// Successful fetches so far (0: never loaded).
    generation: u64,
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The keys a token may be checked against, or why there are none at all.
pub(in crate::actions) enum Candidates {
    Keys(Vec<Arc<VerifyKey>>),
    /// No configured JWKS URL has ever been loaded.
    Unavailable,
}

impl Jwks {
    /// A cache over `urls` (nothing fetched yet).
    pub fn new(urls: Vec<Uri>, http: HttpClient) -> Self {
        let sources = urls
            .into_iter()
            .map(|url| {
                Arc::new(Source {
                    url,
                    keys: ArcSwap::from_pointee(KeySet::default()),
                    fetching: tokio::sync::Mutex::new(()),
                    on_demand: Mutex::new(RefetchBudget::full(Instant::now())),
                })
            })
            .collect();
        Self {
            sources,
            http,
            refreshers: OnceLock::new(),
        }
    }

    /// Starts the background refreshers (first fetch immediately) if a Tokio runtime is running
    /// and they are not started yet. Cheap after the first call.
    pub fn start(&self) {
        if self.refreshers.get().is_some() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.refreshers.get_or_init(|| {
            self.sources
                .iter()
                .map(|source| {
                    let task = runtime.spawn(refresh_loop(Arc::clone(source), self.http.clone()));
                    AbortOnDrop(task.abort_handle())
                })
                .collect()
        });
    }

    /// Keys fitting `alg` (and `kid`, when the token names one), across URLs in order. When the
    /// kid is unknown (or, without a kid, no key fits), URLs are refetched, each within its
    /// [`RefetchBudget`].
    pub async fn candidates(&self, kid: Option<&str>, alg: Algorithm) -> Candidates {
        let found = self.collect(kid, alg);
        // A kid we know (with keys of another type) is not worth a fetch.
        if !found.is_empty() || kid.is_some_and(|kid| self.knows(kid)) {
            return Candidates::Keys(found);
        }
        for source in &self.sources {
            source.fetch_on_demand(&self.http).await;
        }
        let found = self.collect(kid, alg);
        if found.is_empty() && self.sources.iter().all(|s| s.keys.load().generation == 0) {
            return Candidates::Unavailable;
        }
        Candidates::Keys(found)
    }

    fn knows(&self, kid: &str) -> bool {
        self.sources.iter().any(|source| {
            source
                .keys
                .load()
                .keys
                .iter()
                .any(|key| key.kid.as_deref() == Some(kid))
        })
    }

    fn collect(&self, kid: Option<&str>, alg: Algorithm) -> Vec<Arc<VerifyKey>> {
        let mut found = Vec::new();
        for source in &self.sources {
            let set = source.keys.load();
            found.extend(
                set.keys
                    .iter()
                    .filter(|key| {
                        key.fits(alg) && kid.is_none_or(|kid| key.kid.as_deref() == Some(kid))
                    })
                    .cloned(),
            );
        }
        found
    }
}

impl Source {
    /// Fetches now unless another fetch just finished or the rate limit for requests says no.
    async fn fetch_on_demand(&self, http: &HttpClient) {
        let seen = self.keys.load().generation;
        let _guard = self.fetching.lock().await;
        if self.keys.load().generation != seen {
            // Someone else fetched while we waited: use their result.
            return;
        }
        let allowed = self
            .on_demand
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take(Instant::now());
        if !allowed {
            return;
        }
        if let Err(err) = self.fetch_and_store(http).await {
            warn!(error = %err, "JWKS refetch failed; keeping the cached keys");
        }
    }

    /// Fetches and swaps in new keys. Returns the server's `max-age`, if any.
    async fn fetch_and_store(&self, http: &HttpClient) -> Result<Option<Duration>, FetchError> {
        let (keys, max_age) = fetch(http, &self.url).await?;
        debug!(url = %self.url, keys = keys.len(), "JWKS fetched");
        let generation = self.keys.load().generation + 1;
        self.keys.store(Arc::new(KeySet {
            keys: keys.into_iter().map(Arc::new).collect(),
            generation,
        }));
        Ok(max_age)
    }
}

/// Fetches `source` now, then again whenever its cache lifetime ends, until aborted.
async fn refresh_loop(source: Arc<Source>, http: HttpClient) {
    loop {
        let outcome = {
            let _guard = source.fetching.lock().await;
            source.fetch_and_store(&http).await
        };
        let wait = match outcome {
            Ok(max_age) => refresh_interval(max_age),
            Err(err) => {
                warn!(error = %err, "JWKS fetch failed; serving the cached keys and retrying");
                RETRY_AFTER_FAILURE
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// How long fetched keys are fresh: `max-age` clamped, else the default.
fn refresh_interval(max_age: Option<Duration>) -> Duration {
    max_age.map_or(DEFAULT_REFRESH, |age| age.clamp(MIN_REFRESH, MAX_REFRESH))
}

/// The future of [`fetch`], boxed so callers' futures stay provably `Send`.
type FetchFuture<'a> = Pin<
    Box<dyn Future<Output = Result<(Vec<VerifyKey>, Option<Duration>), FetchError>> + Send + 'a>,
>;

/// GETs a JWKS document and reads its keys and `Cache-Control: max-age`.
fn fetch<'a>(http: &'a HttpClient, url: &'a Uri) -> FetchFuture<'a> {
    Box::pin(fetch_inner(http, url))
}

async fn fetch_inner(
    http: &HttpClient,
    url: &Uri,
) -> Result<(Vec<VerifyKey>, Option<Duration>), FetchError> {
    let request = Request::get(url.clone())
        .header(header::ACCEPT, "application/json, application/jwk-set+json")
        .header(
            header::USER_AGENT,
            concat!("keygate/", env!("CARGO_PKG_VERSION")),
        )
        .body(empty())
        .map_err(|err| FetchError::Request {
            url: url.clone(),
            detail: err.to_string(),
        })?;
    let exchange = async {
        let response = http
            .send(request)
            .await
            .map_err(|err| FetchError::Request {
                url: url.clone(),
                detail: err.to_string(),
            })?;
        if !response.status().is_success() {
            return Err(FetchError::Status {
                url: url.clone(),
                status: response.status().as_u16(),
            });
        }
        let max_age = response
            .headers()
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|err| FetchError::Document {
                url: url.clone(),
                detail: format!("reading the body failed: {err}"),
            })?
            .to_bytes();
        Ok((body, max_age))
    };
    let (body, max_age) = tokio::time::timeout(FETCH_TIMEOUT, exchange)
        .await
        .map_err(|_| FetchError::Timeout { url: url.clone() })??;
    let keys = parse_jwks(&body).map_err(|detail| FetchError::Document {
        url: url.clone(),
        detail,
    })?;
    Ok((keys, max_age))
}

/// The `max-age` directive of a `Cache-Control` value (`no-cache`/`no-store` read as 0).
fn max_age(cache_control: &str) -> Option<Duration> {
    let mut age = None;
    for directive in cache_control.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(Duration::ZERO);
        }
        if let Some(value) = lower.strip_prefix("max-age=") {
            age = value
                .trim_matches('"')
                .parse()
                .ok()
                .map(Duration::from_secs);
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age() {
        assert_eq!(
            max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age("Max-Age=\"120\""), Some(Duration::from_secs(120)));
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }

    #[test]
    fn refresh_interval_is_clamped() {
        assert_eq!(refresh_interval(None), DEFAULT_REFRESH);
        assert_eq!(refresh_interval(Some(Duration::from_secs(5))), MIN_REFRESH);
        assert_eq!(
            refresh_interval(Some(Duration::from_secs(600))),
            Duration::from_secs(600)
        );
        assert_eq!(
            refresh_interval(Some(Duration::from_secs(86_400))),
            MAX_REFRESH
        );
    }

    /// A JWKS server on loopback that counts requests; its document and availability can change.
    pub(in crate::actions::jwt_validation) struct TestJwks {
        pub url: Uri,
        pub hits: Arc<std::sync::atomic::AtomicUsize>,
        pub document: Arc<Mutex<String>>,
        pub up: Arc<std::sync::atomic::AtomicBool>,
    }

    impl TestJwks {
        pub async fn start(document: String) -> Self {
            use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url: Uri = format!("http://{}/jwks.json", listener.local_addr().unwrap())
                .parse()
                .unwrap();
            let hits = Arc::new(AtomicUsize::new(0));
            let document = Arc::new(Mutex::new(document));
            let up = Arc::new(AtomicBool::new(true));
            let (h, d, u) = (hits.clone(), document.clone(), up.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    stream.set_nodelay(true).unwrap();
                    let (h, d, u) = (h.clone(), d.clone(), u.clone());
                    let service = hyper::service::service_fn(move |_req| {
                        h.fetch_add(1, Ordering::SeqCst);
                        let (status, body) = if u.load(Ordering::SeqCst) {
                            (200, d.lock().unwrap().clone())
                        } else {
                            (503, String::new())
                        };
                        let response = http::Response::builder()
                            .status(status)
                            .header("cache-control", "max-age=300")
                            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                            .unwrap();
                        async move { Ok::<_, std::convert::Infallible>(response) }
                    });
                    tokio::spawn(
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                    );
                }
            });
            Self {
                url,
                hits,
                document,
                up,
            }
        }

        pub fn hits(&self) -> usize {
            self.hits.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    fn document(jwks: &[&str]) -> String {
        format!("{{\"keys\": [{}]}}", jwks.join(","))
    }

    fn kids(candidates: Candidates) -> Vec<String> {
        match candidates {
            Candidates::Keys(keys) => keys.iter().filter_map(|k| k.kid.clone()).collect(),
            Candidates::Unavailable => vec!["<unavailable>".into()],
        }
    }

    const RSA_2_JWK: &str = include_str!("../../../../keygate/tests/fixtures/jwt/rsa-2.jwk.json");

    async fn wait_for_hits(server: &TestJwks, n: usize) {
        for _ in 0..200 {
            if server.hits() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "the JWKS server saw {} requests, expected {n}",
            server.hits()
        );
    }

    #[tokio::test]
    async fn fetched_at_start_rotated_kid_refetched_forged_kids_bounded() {
        use super::super::keys::tests::{EC_JWK, RSA_JWK};
        let server = TestJwks::start(document(&[RSA_JWK, EC_JWK])).await;
        let jwks = Jwks::new(vec![server.url.clone()], HttpClient::default());
        jwks.start();
        wait_for_hits(&server, 1).await;
        // Give the swap a moment to land after the response was served.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            kids(jwks.candidates(Some("rsa-1"), Algorithm::RS256).await),
            vec!["rsa-1"]
        );
        assert_eq!(
            kids(jwks.candidates(None, Algorithm::ES256).await),
            vec!["ec-1"]
        );
        assert!(
            kids(jwks.candidates(Some("ec-1"), Algorithm::RS256).await).is_empty(),
            "kid fits, alg does not"
        );
        let after_load = server.hits();
        assert_eq!(after_load, 1, "known kids are served from the cache");

        // A token naming a kid nobody published costs one refetch...
        assert!(kids(jwks.candidates(Some("typo"), Algorithm::RS256).await).is_empty());
        assert_eq!(server.hits(), 2);
        // ...and a rotation right after it is still honoured: the IdP now publishes rsa-2 and
        // the first token naming it triggers another refetch.
        *server.document.lock().unwrap() = document(&[RSA_2_JWK]);
        assert_eq!(
            kids(jwks.candidates(Some("rsa-2"), Algorithm::RS256).await),
            vec!["rsa-2"]
        );
        assert_eq!(server.hits(), 3);

        // A flood of forged kids (sequential and concurrent) spends the last refetch of the
        // burst and then fetches nothing more.
        for i in 0..50 {
            assert!(kids(
                jwks.candidates(Some(&format!("forged-{i}")), Algorithm::RS256)
                    .await
            )
            .is_empty());
        }
        let jwks = Arc::new(jwks);
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let jwks = jwks.clone();
                tokio::spawn(async move {
                    kids(
                        jwks.candidates(Some(&format!("x{i}")), Algorithm::RS256)
                            .await,
                    )
                })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap().is_empty());
        }
        assert_eq!(server.hits(), 1 + KID_MISS_BURST as usize);
    }

    #[test]
    fn refetch_budget_allows_a_burst_then_one_per_refill_period() {
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let mut budget = RefetchBudget::full(t0);
        assert!((0..KID_MISS_BURST).all(|_| budget.take(t0)), "the burst");
        assert!(!budget.take(t0));
        assert!(!budget.take(at(19)), "nothing earned before 20 s");
        assert!(budget.take(at(20)));
        assert!(!budget.take(at(39)), "the next token is due at 40 s");
        assert!(budget.take(at(40)));
        // Long idle: the bucket refills to the burst, never beyond.
        let later = at(40 + 20 * 10);
        assert!((0..KID_MISS_BURST).all(|_| budget.take(later)));
        assert!(!budget.take(later));
        // A partial refill keeps the remainder of the period: tokens due at +20 s and +40 s.
        assert!(budget.take(later + Duration::from_secs(25)));
        assert!(!budget.take(later + Duration::from_secs(39)));
        assert!(budget.take(later + Duration::from_secs(40)));
    }

    #[tokio::test]
    async fn stale_keys_are_served_while_the_jwks_is_down() {
        use super::super::keys::tests::RSA_JWK;
        let server = TestJwks::start(document(&[RSA_JWK])).await;
        let jwks = Jwks::new(vec![server.url.clone()], HttpClient::default());
        // No refresher: the first lookup loads on demand.
        assert_eq!(
            kids(jwks.candidates(Some("rsa-1"), Algorithm::RS256).await),
            vec!["rsa-1"]
        );
        server.up.store(false, std::sync::atomic::Ordering::SeqCst);
        let source = &jwks.sources[0];
        *source.on_demand.lock().unwrap() = RefetchBudget::full(Instant::now());
        assert!(kids(jwks.candidates(Some("rsa-9"), Algorithm::RS256).await).is_empty());
        assert_eq!(server.hits(), 2, "the refetch was tried and failed");
        assert_eq!(
            kids(jwks.candidates(Some("rsa-1"), Algorithm::RS256).await),
            vec!["rsa-1"]
        );
    }

    #[tokio::test]
    async fn never_loaded_is_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url: Uri = format!("http://{}/jwks.json", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        drop(listener);
        let jwks = Jwks::new(vec![url], HttpClient::default());
        assert_eq!(
            kids(jwks.candidates(Some("rsa-1"), Algorithm::RS256).await),
            vec!["<unavailable>"]
        );
    }
}
