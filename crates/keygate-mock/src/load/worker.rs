//! One load connection: sends the plan's request on schedule and times each response.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::pacer::Pacer;
use super::LoadPlan;

/// What one or more connections measured.
#[derive(Debug, Default)]
pub(crate) struct Samples {
    /// Latency of each successful (2xx) response.
    pub(crate) latencies: Vec<Duration>,
    /// Time to first SSE `data:` chunk of each successful streamed response.
    pub(crate) ttfts: Vec<Duration>,
    /// Responses with a status other than 2xx.
    pub(crate) non_2xx: u64,
    /// Connect failures, broken connections and timeouts.
    pub(crate) errors: u64,
}

impl Samples {
    pub(crate) fn merge(&mut self, other: Samples) {
        self.latencies.extend(other.latencies);
        self.ttfts.extend(other.ttfts);
        self.non_2xx += other.non_2xx;
        self.errors += other.errors;
    }
}

/// The outcome of a request that got a response.
struct Outcome {
    success: bool,
    ttft: Option<Duration>,
}

/// Runs connection `index` until the plan's end, returning what it measured.
pub(crate) async fn run(plan: Arc<LoadPlan>, index: usize, start: Instant) -> Samples {
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.duration;
    let connections = plan.connections.max(1);
    // Connection i sends requests i, i + C, i + 2C, ... of a global schedule at `rate`.
    let interval = plan
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(connections as f64 / r));
    let mut next = start
        + plan.rate.filter(|r| *r > 0.0).map_or(Duration::ZERO, |r| {
            Duration::from_secs_f64(index as f64 / r)
        });
    let mut samples = Samples::default();
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let mut prev_done = start;
    let mut pacer: Option<Pacer> = None;
    loop {
        let origin = match interval {
            Some(step) => {
                if next >= end {
                    break;
                }
                pacer.get_or_insert_with(Pacer::new).sleep_until(next).await;
                // Busy connection: count from the due time (coordinated omission).
                let origin = if prev_done <= next {
                    Instant::now()
                } else {
                    next
                };
                next += step;
                origin
            }
            None => {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                now
            }
        };
        let counted = origin >= measure_from;
        let result = tokio::time::timeout(plan.timeout, send(&mut sender, &plan, origin)).await;
        let done = Instant::now();
        prev_done = done;
        match result {
            Ok(Some(outcome)) => {
                if !counted {
                    continue;
                }
                if outcome.success {
                    samples.latencies.push(done - origin);
                    samples.ttfts.extend(outcome.ttft);
                } else {
                    samples.non_2xx += 1;
                }
            }
            Ok(None) | Err(_) => {
                sender = None;
                if counted {
                    samples.errors += 1;
                } else if interval.is_none() {
                    // Back off so a refused connection does not spin during warm-up.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
    samples
}

async fn connect(plan: &LoadPlan) -> Option<SendRequest<Full<Bytes>>> {
    let target = &plan.request.target;
    let stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .ok()?;
    stream.set_nodelay(true).ok()?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(connection);
    Some(sender)
}

/// Sends one request and reads the whole response; `None` when the connection failed.
async fn send(
    slot: &mut Option<SendRequest<Full<Bytes>>>,
    plan: &LoadPlan,
    origin: Instant,
) -> Option<Outcome> {
    // A server may close a keep-alive connection after a response (`connection: close`, nginx's
    // `keepalive_requests`): that is not a failed request, so reconnect before sending.
    let reusable = match slot.as_mut() {
        Some(sender) => sender.ready().await.is_ok(),
        None => false,
    };
    if !reusable {
        *slot = connect(plan).await;
    }
    let sender = slot.as_mut()?;
    sender.ready().await.ok()?;
    let spec = &plan.request;
    let mut builder = Request::builder()
        .method(spec.method.clone())
        .uri(spec.target.path_and_query.as_str())
        .header(header::HOST, spec.target.authority.as_str());
    for (name, value) in &spec.headers {
        builder = builder.header(name, value);
    }
    if !spec.body.is_empty() {
        builder = builder.header(header::CONTENT_LENGTH, HeaderValue::from(spec.body.len()));
    }
    let request = builder.body(Full::new(spec.body.clone())).ok()?;
    let response = sender.send_request(request).await.ok()?;
    let success = response.status().is_success();
    let mut body = response.into_body();
    let mut ttft = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.ok()?;
        if plan.stream && ttft.is_none() {
            if let Some(data) = frame.data_ref() {
                if contains(data, b"data:") {
                    ttft = Some(origin.elapsed());
                }
            }
        }
    }
    Some(Outcome { success, ttft })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
