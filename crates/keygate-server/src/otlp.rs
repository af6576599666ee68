//! OpenTelemetry trace export (`--otlp-endpoint`): each finished request's spans go into a
//! bounded queue, and a thread of its own (`kg-otlp`) posts them to the collector in batches,
//! over OTLP/HTTP with the JSON encoding, through the gateway's `HttpClient`.
//!
//! Nothing here is on a request's path: a worker only moves the request's spans into the queue
//! when its response has ended (`settle`), under a lock held for a push. The exporter wakes when
//! the first spans arrive, waits up to [`FLUSH_INTERVAL`] or until [`BATCH_SPANS`] are queued, and
//! sends what it finds: under load one wake-up per batch, not per request. A full queue drops the
//! new spans, a failed export drops its batch (both counted in
//! `keygate_otlp_spans_dropped_total`); a collector that is down or never answers costs one
//! export at a time, bounded by [`EXPORT_TIMEOUT`], and one warning a minute at most.

mod spans;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, USER_AGENT};
use http::{Method, Request, Uri};
use http_body_util::BodyExt;
use keygate_http::{full, HttpClient};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

pub use spans::Traced;
use spans::{write_export, RequestSpans};

use crate::access_log::AccessRecord;

/// Spans per export request (OpenTelemetry's default batch size).
pub const BATCH_SPANS: usize = 512;
/// Spans waiting for export at most; beyond, new ones are dropped.
pub const QUEUE_SPANS: usize = 4096;
/// Longest wait between the first queued span and its export.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Longest one export may take (connect, send, answer), as OpenTelemetry's default.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// At most one warning per this interval, whatever goes wrong.
const WARN_INTERVAL: Duration = Duration::from_secs(60);
/// What shutdown waits for the last export.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);
/// Most of a collector's answer read (to reuse the connection).
const MAX_ANSWER: usize = 64 * 1024;

/// Where dropped spans are counted: `keygate_otlp_spans_dropped_total{reason}`.
#[derive(Clone, Default)]
pub struct Dropped {
    /// The queue was full.
    pub queue_full: Counter,
    /// The collector could not be reached, did not answer in time or refused the batch.
    pub export_failed: Counter,
}

/// The running exporter.
pub struct Otlp {
    shared: Arc<Shared>,
    stopped: Mutex<Option<mpsc::Receiver<()>>>,
}

/// What the workers and the exporter thread share.
struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the exporter: when the queue stops being empty, when it reaches a batch, at shutdown.
    wake: Notify,
    closing: AtomicBool,
    capacity: usize,
    dropped: Dropped,
}

#[derive(Default)]
struct Queue {
    requests: Vec<RequestSpans>,
    spans: usize,
}

impl Otlp {
    /// Starts the exporter thread, posting to `endpoint` (see [`traces_url`]) through `http`.
    pub fn start(endpoint: Uri, http: HttpClient, dropped: Dropped) -> std::io::Result<Otlp> {
        Self::start_with(endpoint, http, dropped, QUEUE_SPANS)
    }

    fn start_with(
        endpoint: Uri,
        http: HttpClient,
        dropped: Dropped,
        capacity: usize,
    ) -> std::io::Result<Otlp> {
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            wake: Notify::new(),
            closing: AtomicBool::new(false),
            capacity,
            dropped,
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (done, stopped) = mpsc::sync_channel(1);
        let exporter = Exporter {
            shown: shown_url(&endpoint),
            endpoint,
            http,
            warnings: Warnings::default(),
            queue_full_warned: 0,
            bytes_per_span: 1024,
            shared: shared.clone(),
        };
        info!(endpoint = %exporter.shown, "exporting traces over OTLP/HTTP");
        std::thread::Builder::new()
            .name("kg-otlp".into())
            .spawn(move || {
                runtime.block_on(exporter.run());
                let _ = done.send(());
            })?;
        Ok(Otlp {
            shared,
            stopped: Mutex::new(Some(stopped)),
        })
    }

    /// Queues the spans of a finished request (nothing for one its client did not sample).
    pub fn record(&self, traced: Traced, record: &mut AccessRecord) {
        if traced.context.sampled {
            self.shared.push(RequestSpans::new(traced, record));
        }
    }

    /// Exports what is queued and stops the thread, waiting a few seconds at most.
    pub fn shutdown(&self) {
        self.shared.closing.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        let stopped = self
            .stopped
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(stopped) = stopped {
            let _ = stopped.recv_timeout(SHUTDOWN_TIMEOUT + Duration::from_secs(1));
        }
    }
}

impl Shared {
    fn push(&self, request: RequestSpans) {
        let spans = request.count();
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let before = queue.spans;
        if before + spans > self.capacity {
            drop(queue);
            self.dropped.queue_full.inc_by(spans as u64);
            return;
        }
        queue.spans += spans;
        queue.requests.push(request);
        drop(queue);
        if before == 0 || (before < BATCH_SPANS && before + spans >= BATCH_SPANS) {
            self.wake.notify_one();
        }
    }

    /// Everything queued; the queue keeps an allocation of the same size for the next round.
    fn take(&self) -> Vec<RequestSpans> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let capacity = queue.requests.len();
        queue.spans = 0;
        std::mem::replace(&mut queue.requests, Vec::with_capacity(capacity))
    }

    fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Returns once a batch is queued or shutdown began. (A wake-up given between a check and
    /// the wait is kept by `Notify` as a permit, so none is missed.)
    async fn until_batch(&self) {
        loop {
            let queued = self
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .spans;
            if self.closing() || queued >= BATCH_SPANS {
                return;
            }
            self.wake.notified().await;
        }
    }
}

/// The exporter thread's state.
struct Exporter {
    endpoint: Uri,
    /// The endpoint as logs show it: no user info, no query.
    shown: String,
    http: HttpClient,
    warnings: Warnings,
    /// `queue_full` when its last warning was given.
    queue_full_warned: u64,
    /// A little more than a span took in the last batch.
    bytes_per_span: usize,
    shared: Arc<Shared>,
}

impl Exporter {
    async fn run(mut self) {
        loop {
            self.shared.wake.notified().await;
            if !self.shared.closing() {
                let _ = tokio::time::timeout(FLUSH_INTERVAL, self.shared.until_batch()).await;
            }
            let closing = self.shared.closing();
            let requests = self.shared.take();
            let timeout = if closing {
                SHUTDOWN_TIMEOUT
            } else {
                EXPORT_TIMEOUT
            };
            self.export(requests, timeout).await;
            self.note_queue_full();
            if closing {
                return;
            }
        }
    }

    /// Posts `requests` in batches of at most [`BATCH_SPANS`] spans; after a failure the rest
    /// is dropped too (the collector would most likely fail them the same way).
    async fn export(&mut self, requests: Vec<RequestSpans>, timeout: Duration) {
        let mut rest = requests.as_slice();
        while !rest.is_empty() {
            let mut spans = 0;
            let mut end = 0;
            while end < rest.len() && (end == 0 || spans + rest[end].count() <= BATCH_SPANS) {
                spans += rest[end].count();
                end += 1;
            }
            let (batch, after) = rest.split_at(end);
            rest = after;
            // Sized from the last batch, so the buffer is not grown (and copied) while written.
            let mut body = Vec::with_capacity(spans * self.bytes_per_span + 1024);
            write_export(&mut body, batch);
            self.bytes_per_span = body.len() / spans + 64;
            match tokio::time::timeout(timeout, self.post(body.into())).await {
                Ok(Ok(())) => {
                    if self.warnings.failing {
                        self.warnings.failing = false;
                        info!(endpoint = %self.shown, "OTLP trace export recovered");
                    }
                }
                result => {
                    let error = match result {
                        Ok(Err(error)) => error,
                        _ => format!("no answer within {} s", timeout.as_secs()),
                    };
                    let lost = spans + rest.iter().map(RequestSpans::count).sum::<usize>();
                    self.failed(&error, lost as u64);
                    return;
                }
            }
        }
    }

    async fn post(&self, body: Bytes) -> Result<(), String> {
        let mut request = Request::new(full(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.endpoint.clone();
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("keygate/", env!("CARGO_PKG_VERSION"))),
        );
        let response = self.http.send(request).await.map_err(|e| e.with_causes())?;
        let status = response.status();
        // Read the (small) answer so the connection is reused.
        let mut body = response.into_body();
        let mut read = 0;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, Bytes::len);
            if read > MAX_ANSWER {
                break;
            }
        }
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the collector answered {status}"))
        }
    }

    fn failed(&mut self, error: &str, lost: u64) {
        self.warnings.failing = true;
        self.shared.dropped.export_failed.inc_by(lost);
        if self.warnings.allow() {
            warn!(
                endpoint = %self.shown,
                error,
                spans_dropped = lost,
                "OTLP trace export failed; its spans are dropped (at most one OTLP warning a minute; \
                 keygate_otlp_spans_dropped_total counts them all)"
            );
        } else {
            debug!(endpoint = %self.shown, error, spans_dropped = lost, "OTLP trace export failed");
        }
    }

    /// Warns when the queue dropped spans since the last such warning (rate-limited).
    fn note_queue_full(&mut self) {
        let dropped = self.shared.dropped.queue_full.get();
        if dropped > self.queue_full_warned && self.warnings.allow() {
            warn!(
                endpoint = %self.shown,
                spans_dropped = dropped - self.queue_full_warned,
                "OTLP span queue full; new spans were dropped (the collector is slower than the traffic)"
            );
            self.queue_full_warned = dropped;
        }
    }
}

/// The rate limit of the exporter's warnings.
#[derive(Default)]
struct Warnings {
    last: Option<Instant>,
    /// The last export failed.
    failing: bool,
}

impl Warnings {
    /// Whether a warning may be given now (and, if so, notes it).
    fn allow(&mut self) -> bool {
        let now = Instant::now();
        if self.last.is_some_and(|last| now - last < WARN_INTERVAL) {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// The URL spans are posted to: `endpoint` itself when its path ends in `/v1/traces`, else
/// `/v1/traces` appended to its path (as `OTEL_EXPORTER_OTLP_ENDPOINT` is read).
pub fn traces_url(endpoint: &Uri) -> Uri {
    let path = endpoint.path().trim_end_matches('/');
    if path.ends_with("/v1/traces") {
        return endpoint.clone();
    }
    let mut path_and_query = format!("{path}/v1/traces");
    if let Some(query) = endpoint.query() {
        path_and_query.push('?');
        path_and_query.push_str(query);
    }
    let mut parts = endpoint.clone().into_parts();
    match path_and_query.parse() {
        Ok(path_and_query) => parts.path_and_query = Some(path_and_query),
        Err(_) => return endpoint.clone(),
    }
    Uri::from_parts(parts).unwrap_or_else(|_| endpoint.clone())
}

/// `scheme://host:port/path`: no user info, no query (either may hold a credential).
fn shown_url(uri: &Uri) -> String {
    let authority = uri.authority().map_or("", |a| a.as_str());
    let host = authority.rsplit('@').next().unwrap_or_default();
    format!(
        "{}://{host}{}",
        uri.scheme_str().unwrap_or("http"),
        uri.path()
    )
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::SystemTime;

    use keygate_ai_gateway::TraceContext;
    use keygate_policy::RequestLog;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn the_traces_path_is_added_once() {
        for (given, used) in [
            ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
            ("http://127.0.0.1:4318/", "http://127.0.0.1:4318/v1/traces"),
            (
                "https://otel.example/otlp",
                "https://otel.example/otlp/v1/traces",
            ),
            ("http://c:4318/v1/traces", "http://c:4318/v1/traces"),
            (
                "http://c:4318/x/v1/traces?k=v",
                "http://c:4318/x/v1/traces?k=v",
            ),
            ("http://c:4318/x?k=v", "http://c:4318/x/v1/traces?k=v"),
        ] {
            assert_eq!(traces_url(&given.parse().unwrap()).to_string(), used);
        }
        let secret: Uri = "https://user:pw@otel.example/v1/traces?token=t"
            .parse()
            .unwrap();
        assert_eq!(shown_url(&secret), "https://otel.example/v1/traces");
    }

    fn record() -> AccessRecord {
        AccessRecord {
            time: SystemTime::now(),
            request_id: "req-1".into(),
            client_ip: "127.0.0.1".parse().unwrap(),
            method: http::Method::GET,
            path: "/".into(),
            status: 200,
            duration: Duration::from_millis(1),
            log: RequestLog::default(),
            trace: None,
        }
    }

    fn traced(sampled: bool) -> Traced {
        let mut context = TraceContext::for_request(&http::HeaderMap::new());
        context.sampled = sampled;
        Traced {
            context,
            arrival: Instant::now(),
        }
    }

    /// A collector on loopback: answers 200 (counting the spans it received) or, when
    /// `blackhole`, accepts and never answers.
    async fn collector(blackhole: bool) -> (SocketAddr, Arc<Mutex<Vec<serde_json::Value>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                if blackhole {
                    held.push(stream);
                    continue;
                }
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut data = Vec::new();
                    let mut buf = [0u8; 65536];
                    loop {
                        let n = stream.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        data.extend_from_slice(&buf[..n]);
                        let Some(head_end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&data[..head_end]).to_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        if data.len() < head_end + 4 + length {
                            continue;
                        }
                        let body = &data[head_end + 4..head_end + 4 + length];
                        seen.lock()
                            .unwrap()
                            .push(serde_json::from_slice(body).unwrap());
                        data.drain(..head_end + 4 + length);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                        stream.write_all(answer).await.unwrap();
                    }
                });
            }
        });
        (addr, bodies)
    }

    fn spans_in(bodies: &[serde_json::Value]) -> usize {
        bodies
            .iter()
            .map(|b| {
                b["resourceSpans"][0]["scopeSpans"][0]["spans"]
                    .as_array()
                    .unwrap()
                    .len()
            })
            .sum()
    }

    #[tokio::test]
    async fn spans_reach_the_collector_in_batches_and_unsampled_ones_stay_home() {
        let (addr, bodies) = collector(false).await;
        let endpoint = traces_url(&format!("http://{addr}").parse().unwrap());
        let dropped = Dropped::default();
        let otlp = Otlp::start(endpoint, HttpClient::default(), dropped.clone()).unwrap();
        for _ in 0..600 {
            otlp.record(traced(true), &mut record());
        }
        otlp.record(traced(false), &mut record());
        // A batch is full: exported before the flush interval.
        let started = Instant::now();
        while spans_in(&bodies.lock().unwrap()) < BATCH_SPANS {
            assert!(started.elapsed() < FLUSH_INTERVAL, "no early batch");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The rest within the interval.
        while spans_in(&bodies.lock().unwrap()) < 600 {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "rest not exported"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let bodies = bodies.lock().unwrap().clone();
        assert!(bodies
            .iter()
            .all(|b| spans_in(std::slice::from_ref(b)) <= BATCH_SPANS));
        assert_eq!(spans_in(&bodies), 600);
        assert_eq!(dropped.queue_full.get() + dropped.export_failed.get(), 0);
        tokio::task::spawn_blocking(move || otlp.shutdown())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_full_queue_and_a_silent_collector_drop_spans_without_blocking() {
        let (addr, _) = collector(true).await;
        let endpoint = traces_url(&format!("http://{addr}").parse().unwrap());
        let dropped = Dropped::default();
        let otlp = Otlp::start_with(endpoint, HttpClient::default(), dropped.clone(), 8).unwrap();
        let started = Instant::now();
        for _ in 0..20 {
            otlp.record(traced(true), &mut record());
        }
        assert!(started.elapsed() < Duration::from_millis(100));
        assert_eq!(dropped.queue_full.get(), 12);
        // Shutdown waits for the stuck export a bounded time, then gives up.
        let started = Instant::now();
        tokio::task::spawn_blocking(move || otlp.shutdown())
            .await
            .unwrap();
        assert!(started.elapsed() < SHUTDOWN_TIMEOUT + Duration::from_secs(2));
    }

    #[test]
    fn warnings_are_rate_limited() {
        let mut warnings = Warnings::default();
        assert!(warnings.allow());
        assert!(!warnings.allow());
        warnings.last = Some(Instant::now() - WARN_INTERVAL);
        assert!(warnings.allow());
    }
}
