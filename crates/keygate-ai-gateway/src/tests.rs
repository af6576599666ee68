//! The call loop against a scripted [`Upstream`]: failover order, refusals, timeouts and the
//! first-chunk rule, without sockets.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, Response};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use keygate_ai::{Candidate, Catalog, ClientRequest, GatewaySpec, Registry, Surface};
use keygate_http::{Body, BoxError};

use crate::{
    AttemptEnd, Call, CallError, Credential, KeySource, Rendered, Runtime, Sent, Served, SpanId,
    Trace, TraceContext, TraceId, Transport, Upstream, UpstreamBody, UpstreamRequest, Upstreams,
};

/// How the scripted upstream answers one (model, key) attempt.
#[derive(Clone)]
enum Step {
    /// `status` after `head_delay`; the body's first chunk after `body_delay`, then the rest.
    Answer {
        status: u16,
        chunks: Vec<&'static str>,
        head_delay: Duration,
        body_delay: Duration,
        /// The body fails after its chunks.
        then_fail: bool,
    },
    /// No response at all.
    Unreachable,
}

fn answer(status: u16, chunks: Vec<&'static str>) -> Step {
    Step::Answer {
        status,
        chunks,
        head_delay: Duration::ZERO,
        body_delay: Duration::ZERO,
        then_fail: false,
    }
}

fn slow_head(delay: Duration) -> Step {
    Step::Answer {
        status: 200,
        chunks: vec!["late"],
        head_delay: delay,
        body_delay: Duration::ZERO,
        then_fail: false,
    }
}

/// Answers by `model/key` (`model/-` without a key) from its script, 200 `ok` otherwise, and
/// records what it was asked, in order.
#[derive(Default)]
struct Scripted {
    script: HashMap<String, Step>,
    seen: Mutex<Vec<String>>,
    /// The `traceparent` of each attempt, in order.
    traceparents: Mutex<Vec<Option<String>>>,
}

impl Scripted {
    fn with(steps: &[(&str, Step)]) -> Arc<Scripted> {
        Arc::new(Scripted {
            script: steps
                .iter()
                .map(|(k, s)| (k.to_string(), s.clone()))
                .collect(),
            seen: Mutex::default(),
            traceparents: Mutex::default(),
        })
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Upstream for Arc<Scripted> {
    fn send<'a>(&'a self, attempt: UpstreamRequest<'a>) -> Sent<'a> {
        let key = attempt.credential.map_or("-", |c| c.value.as_str());
        let label = format!("{}/{key}", attempt.candidate.model.id);
        self.seen.lock().unwrap().push(label.clone());
        let traceparent = attempt.traceparent.as_ref();
        let traceparent = traceparent.map(|v| v.to_str().unwrap().to_owned());
        self.traceparents.lock().unwrap().push(traceparent);
        let step = self
            .script
            .get(&label)
            .cloned()
            .unwrap_or_else(|| answer(200, vec!["ok"]));
        let response = Box::pin(async move {
            let Step::Answer {
                status,
                chunks,
                head_delay,
                body_delay,
                then_fail,
            } = step
            else {
                return Err(Transport(format!("cannot connect to {label}")));
            };
            tokio::time::sleep(head_delay).await;
            let frames = chunks
                .into_iter()
                .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
                .chain(then_fail.then(|| Err(BoxError::from("connection reset"))));
            let delayed = futures_util::stream::once(tokio::time::sleep(body_delay))
                .filter_map(|()| async { None::<Result<Frame<Bytes>, BoxError>> });
            let body: Body = BodyExt::boxed(StreamBody::new(
                delayed.chain(futures_util::stream::iter(frames)),
            ));
            let mut response = Response::new(UpstreamBody::Boxed(body));
            *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
            response
                .headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            Ok(response)
        });
        Sent {
            url: format!("https://upstream.test/{}", attempt.candidate.model.id),
            credential_sent: attempt.credential.is_some(),
            response,
        }
    }
}

/// The same keys for every candidate.
struct Keys(Vec<&'static str>);

impl KeySource for Keys {
    type Error = Infallible;

    fn keys(&self, _: &Candidate) -> Result<Option<Vec<Option<Credential>>>, Infallible> {
        let keys = self.0.iter().map(|k| {
            Some(Credential {
                value: k.to_string(),
                server: true,
            })
        });
        Ok((!self.0.is_empty()).then(|| keys.collect()))
    }
}

const KEY_A: &str = "sk-aaaa-0123456789abcdefghij";
const KEY_B: &str = "sk-bbbb-0123456789abcdefghij";

fn candidates(models: &[&str]) -> Vec<Candidate> {
    let registry = Registry::new(&GatewaySpec::default(), Catalog::builtin()).unwrap();
    let names: Vec<String> = models.iter().map(|m| m.to_string()).collect();
    registry
        .resolve(&names, Surface::ChatCompletions)
        .unwrap()
        .candidates
}

fn runtime(upstream: &Arc<Scripted>, per_request: u64, total: u64) -> Runtime {
    Runtime {
        upstreams: Upstreams::new(upstream.clone()),
        per_request_timeout: Duration::from_millis(per_request),
        total_timeout: Duration::from_millis(total),
        stream_idle_timeout: Duration::from_secs(5),
        server_keys: true,
        keep_response_headers: true,
        metrics: None,
        health: None,
        redaction: None,
    }
}

/// Runs one chat call over `models` with `keys` and returns the result and the trace.
async fn run(
    runtime: &Runtime,
    models: &[&str],
    keys: &Keys,
) -> (Result<Served, CallError<Infallible>>, Trace) {
    let body = br#"{"model":"gpt-4o","messages":[]}"#;
    run_with(runtime, &candidates(models), body, keys).await
}

async fn run_with(
    runtime: &Runtime,
    candidates: &[Candidate],
    body: &'static [u8],
    keys: &Keys,
) -> (Result<Served, CallError<Infallible>>, Trace) {
    run_traced(runtime, candidates, body, keys, None).await
}

async fn run_traced(
    runtime: &Runtime,
    candidates: &[Candidate],
    body: &'static [u8],
    keys: &Keys,
    trace_context: Option<TraceContext>,
) -> (Result<Served, CallError<Infallible>>, Trace) {
    let request = ClientRequest::parse(Bytes::from_static(body)).unwrap();
    let rendered = Rendered::default();
    let headers = HeaderMap::new();
    let mut trace = Trace::new();
    let call = Call {
        request_id: "req-1",
        client_headers: &headers,
        client_query: None,
        request: &request,
        surface: Surface::ChatCompletions,
        candidates,
        rendered: &rendered,
        keys,
        allowance: None,
        trace: trace_context,
    };
    let result = runtime.run(call, &mut trace).await;
    (result, trace)
}

fn ends(trace: &Trace) -> Vec<AttemptEnd> {
    trace
        .tried
        .iter()
        .flat_map(|m| &m.requests)
        .map(|r| r.end.clone())
        .collect()
}

async fn body_text(response: Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn keys_are_tried_in_order_then_the_next_model_and_404_skips_the_other_keys() {
    let upstream = Scripted::with(&[
        (&format!("gpt-4o/{KEY_A}"), answer(429, vec!["slow down"])),
        (&format!("gpt-4o/{KEY_B}"), answer(503, vec![])),
        (
            &format!("gpt-4o-mini/{KEY_A}"),
            answer(404, vec!["no such model"]),
        ),
        (
            &format!("gpt-4.1/{KEY_A}"),
            answer(200, vec!["{\"usage\":", "{}}"]),
        ),
    ]);
    let keys = Keys(vec![KEY_A, KEY_B]);
    let runtime = runtime(&upstream, 1000, 5000);
    let (served, trace) = run(&runtime, &["gpt-4o", "gpt-4o-mini", "gpt-4.1"], &keys).await;
    assert_eq!(
        upstream.seen(),
        [
            format!("gpt-4o/{KEY_A}"),
            format!("gpt-4o/{KEY_B}"),
            format!("gpt-4o-mini/{KEY_A}"),
            format!("gpt-4.1/{KEY_A}"),
        ]
    );
    let Ok(Served::Provider {
        response,
        success,
        record,
    }) = served
    else {
        panic!("no success");
    };
    assert_eq!(success, (2, 0));
    assert_eq!((record.model.as_str(), record.attempts), ("gpt-4.1", 4));
    assert_eq!(
        response.headers()["x-keygate-model"].to_str().unwrap(),
        "gpt-4.1"
    );
    assert_eq!(body_text(response).await, "{\"usage\":{}}");
    assert_eq!(
        ends(&trace),
        [
            AttemptEnd::Status(429),
            AttemptEnd::Status(503),
            AttemptEnd::Status(404),
            AttemptEnd::Success
        ]
    );
    let first = &trace.tried[0].requests[0];
    assert_eq!(first.api_key.as_deref(), Some("sk-aaaa...ghij"));
    assert_eq!(first.body_on_error.as_deref(), Some("slow down"));
}

#[tokio::test]
async fn a_refusal_goes_back_at_once_with_its_body() {
    let upstream = Scripted::with(&[(
        &format!("gpt-4o/{KEY_A}"),
        answer(422, vec!["{\"error\":", "\"bad\"}"]),
    )]);
    let keys = Keys(vec![KEY_A, KEY_B]);
    let (served, trace) = run(
        &runtime(&upstream, 1000, 5000),
        &["gpt-4o", "gpt-4o-mini"],
        &keys,
    )
    .await;
    assert_eq!(upstream.seen(), [format!("gpt-4o/{KEY_A}")]);
    let Ok(Served::Refused { response, record }) = served else {
        panic!("not refused");
    };
    assert_eq!(response.status(), 422);
    assert!(response.headers().get("content-length").is_none());
    assert_eq!(body_text(response).await, "{\"error\":\"bad\"}");
    assert_eq!(record.attempts, 1);
    assert_eq!(ends(&trace), [AttemptEnd::Status(422)]);
}

#[tokio::test]
async fn a_slow_attempt_times_out_and_the_next_key_answers() {
    let upstream = Scripted::with(&[(
        &format!("gpt-4o/{KEY_A}"),
        slow_head(Duration::from_secs(2)),
    )]);
    let keys = Keys(vec![KEY_A, KEY_B]);
    let (served, trace) = run(&runtime(&upstream, 50, 5000), &["gpt-4o"], &keys).await;
    assert!(matches!(
        served,
        Ok(Served::Provider {
            success: (0, 1),
            ..
        })
    ));
    assert_eq!(ends(&trace), [AttemptEnd::Timeout, AttemptEnd::Success]);
    assert!(trace.tried[0].requests[0].total < Duration::from_secs(1));
}

#[tokio::test]
async fn the_total_budget_ends_the_loop_with_the_attempts_made() {
    let slow = slow_head(Duration::from_secs(2));
    let upstream = Scripted::with(&[
        (&format!("gpt-4o/{KEY_A}"), slow.clone()),
        (&format!("gpt-4o/{KEY_B}"), slow),
    ]);
    let keys = Keys(vec![KEY_A, KEY_B]);
    let started = std::time::Instant::now();
    let (served, trace) = run(
        &runtime(&upstream, 100, 150),
        &["gpt-4o", "gpt-4o-mini"],
        &keys,
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(1));
    let Err(CallError::TotalTimeout { seconds, attempts }) = served else {
        panic!("no total timeout");
    };
    assert_eq!(seconds, 0.15);
    assert_eq!(
        attempts,
        "[timeout] openai/gpt-4o (sk-aaaa...ghij): per-request timeout; \
         [timeout] openai/gpt-4o (sk-bbbb...ghij): per-request timeout"
    );
    assert_eq!(upstream.seen().len(), 2, "the next model is never tried");
    assert_eq!(trace.tried.len(), 1);
}

#[tokio::test]
async fn failover_happens_only_before_the_first_chunk() {
    // A head in time whose first chunk is late: the attempt times out, the next key answers.
    let late_body = Step::Answer {
        status: 200,
        chunks: vec!["late"],
        head_delay: Duration::ZERO,
        body_delay: Duration::from_secs(2),
        then_fail: false,
    };
    // A body that fails before its first chunk: a transport failure, failed over too.
    let broken_early = Step::Answer {
        status: 200,
        chunks: vec![],
        head_delay: Duration::ZERO,
        body_delay: Duration::ZERO,
        then_fail: true,
    };
    let upstream = Scripted::with(&[
        (&format!("gpt-4o/{KEY_A}"), late_body),
        (&format!("gpt-4o/{KEY_B}"), broken_early),
    ]);
    let keys = Keys(vec![KEY_A, KEY_B]);
    let (served, trace) = run(
        &runtime(&upstream, 50, 5000),
        &["gpt-4o", "gpt-4o-mini"],
        &keys,
    )
    .await;
    assert!(matches!(
        served,
        Ok(Served::Provider {
            success: (1, 0),
            ..
        })
    ));
    assert_eq!(
        ends(&trace),
        [
            AttemptEnd::Timeout,
            AttemptEnd::Transport("response body failed: connection reset".into()),
            AttemptEnd::Success
        ]
    );

    // A body that fails after its first chunk: served; the client's copy ends with the error.
    let broken_late = Step::Answer {
        status: 200,
        chunks: vec!["{\"partial\":"],
        head_delay: Duration::ZERO,
        body_delay: Duration::ZERO,
        then_fail: true,
    };
    let upstream = Scripted::with(&[(&format!("gpt-4o/{KEY_A}"), broken_late)]);
    let (served, _) = run(
        &runtime(&upstream, 50, 5000),
        &["gpt-4o", "gpt-4o-mini"],
        &keys,
    )
    .await;
    let Ok(Served::Provider {
        response, record, ..
    }) = served
    else {
        panic!("no success");
    };
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "{\"partial\":");
    assert!(body.frame().await.unwrap().is_err());
    assert_eq!(upstream.seen(), [format!("gpt-4o/{KEY_A}")]);
    assert!(!record.usage.complete.load(Ordering::Relaxed));
    assert!(record.usage.broken.get().is_some());
}

#[tokio::test]
async fn exhaustion_says_why() {
    let upstream = Scripted::with(&[
        (&format!("gpt-4o/{KEY_A}"), Step::Unreachable),
        (&format!("gpt-4o-mini/{KEY_A}"), Step::Unreachable),
    ]);
    let keys = Keys(vec![KEY_A]);
    let (served, _) = run(
        &runtime(&upstream, 1000, 5000),
        &["gpt-4o", "gpt-4o-mini"],
        &keys,
    )
    .await;
    let Err(CallError::Unreachable { attempts }) = served else {
        panic!("not unreachable");
    };
    assert!(attempts
        .starts_with("[unreachable] openai/gpt-4o (sk-aaaa...ghij): cannot connect to gpt-4o/"));

    let upstream = Scripted::with(&[
        (&format!("gpt-4o/{KEY_A}"), Step::Unreachable),
        (&format!("gpt-4o-mini/{KEY_A}"), answer(500, vec![])),
    ]);
    let (served, _) = run(
        &runtime(&upstream, 1000, 5000),
        &["gpt-4o", "gpt-4o-mini"],
        &keys,
    )
    .await;
    assert!(matches!(served, Err(CallError::AllFailed { .. })));

    let (served, trace) = run(
        &runtime(&upstream, 1000, 5000),
        &["gpt-4o", "gpt-4o-mini"],
        &Keys(vec![]),
    )
    .await;
    assert_eq!(
        served.err(),
        Some(CallError::NoApiKey {
            providers: vec!["openai".into()]
        })
    );
    assert_eq!(ends(&trace), [AttemptEnd::NoKey, AttemptEnd::NoKey]);
    assert_eq!(trace.attempts(), 0);
}

#[tokio::test]
async fn the_mock_provider_answers_in_process() {
    let registry = Registry::new(&GatewaySpec::default(), Catalog::builtin()).unwrap();
    let mock = registry
        .available(Some(Surface::ChatCompletions))
        .into_iter()
        .find(|c| c.provider.is_mock())
        .expect("the catalog has the mock provider");
    let upstream = Scripted::with(&[]);
    let body = br#"{"model":"mock-echo","messages":[{"role":"user","content":"hello there"}]}"#;
    let runtime = runtime(&upstream, 1000, 5000);
    let (served, trace) = run_with(&runtime, &[mock], body, &Keys(vec![KEY_A])).await;
    let Ok(Served::Provider { response, .. }) = served else {
        panic!("the mock failed");
    };
    assert!(
        upstream.seen().is_empty(),
        "the mock never reaches an upstream"
    );
    let made = &trace.tried[0].requests[0];
    assert_eq!(made.url, "mock://local/v1/chat/completions");
    assert_eq!(made.api_key, None, "the mock sends no key");
    assert!(body_text(response).await.contains("hello there"));
}

/// A runtime with slow-provider demotion on `tracker` (its clock is manual).
fn with_health(
    upstream: &Arc<Scripted>,
    tracker: &'static crate::HealthTracker,
    cooldown: Duration,
) -> Runtime {
    Runtime {
        health: Some(crate::Health { tracker, cooldown }),
        ..runtime(upstream, 50, 5000)
    }
}

/// `provider/model` of each candidate tried, in order.
fn tried(trace: &Trace) -> Vec<String> {
    trace
        .tried
        .iter()
        .map(|m| format!("{}/{}", m.provider, m.model))
        .collect()
}

#[tokio::test]
async fn a_provider_that_does_not_answer_is_tried_last_until_a_probe_finds_it_back() {
    let tracker: &'static crate::HealthTracker =
        Box::leak(Box::new(crate::HealthTracker::manual()));
    let cooldown = Duration::from_secs(30);
    let models = ["gpt-4o", "claude-haiku-4-5"];
    let openai_hangs = format!("gpt-4o/{KEY_A}");
    let claude = format!("claude-haiku-4-5/{KEY_A}");
    let keys = Keys(vec![KEY_A]);
    let hung = Scripted::with(&[(&openai_hangs, slow_head(Duration::from_secs(5)))]);
    let runtime = with_health(&hung, tracker, cooldown);

    // The first request waits out the timeout, then fails over.
    let (served, trace) = run(&runtime, &models, &keys).await;
    assert!(matches!(
        served,
        Ok(Served::Provider {
            success: (1, 0),
            ..
        })
    ));
    assert_eq!(ends(&trace), [AttemptEnd::Timeout, AttemptEnd::Success]);
    assert_eq!(tracker.unhealthy(), 1);

    // The next ones go to the healthy provider first; the trace shows only what was tried.
    let (served, trace) = run(&runtime, &models, &keys).await;
    assert!(matches!(
        served,
        Ok(Served::Provider {
            success: (0, 0),
            ..
        })
    ));
    assert_eq!(tried(&trace), ["anthropic/claude-haiku-4-5"]);
    assert_eq!(
        hung.seen(),
        [openai_hangs.clone(), claude.clone(), claude.clone()]
    );

    // Demoted, not removed: when the healthy provider fails (a 5xx, which demotes nothing),
    // the demoted one is still tried, after it.
    let failing = Scripted::with(&[
        (&openai_hangs, slow_head(Duration::from_secs(5))),
        (&claude, answer(503, vec![])),
    ]);
    let (served, trace) = run(&with_health(&failing, tracker, cooldown), &models, &keys).await;
    assert!(matches!(served, Err(CallError::AllFailed { .. })));
    assert_eq!(
        tried(&trace),
        ["anthropic/claude-haiku-4-5", "openai/gpt-4o"]
    );
    assert_eq!(ends(&trace), [AttemptEnd::Status(503), AttemptEnd::Timeout]);
    assert_eq!(tracker.unhealthy(), 1, "a 503 is an answer");

    // Once the cooldown is over, one request probes it in its place; a concurrent one does not.
    tracker.advance(cooldown);
    let ((probe, probe_trace), (other, other_trace)) =
        tokio::join!(run(&runtime, &models, &keys), run(&runtime, &models, &keys));
    assert!(probe.is_ok() && other.is_ok());
    assert_eq!(
        ends(&probe_trace),
        [AttemptEnd::Timeout, AttemptEnd::Success]
    );
    assert_eq!(tried(&other_trace), ["anthropic/claude-haiku-4-5"]);
    // The probe failed: the cooldown restarts, doubled.
    tracker.advance(cooldown);
    let (_, trace) = run(&runtime, &models, &keys).await;
    assert_eq!(tried(&trace), ["anthropic/claude-haiku-4-5"]);

    // After a reload (another runtime, same tracker), the provider answers again: the probe
    // finds it back and the configured order returns.
    tracker.advance(cooldown);
    let back = Scripted::with(&[]);
    let reloaded = with_health(&back, tracker, cooldown);
    let (served, trace) = run(&reloaded, &models, &keys).await;
    assert!(matches!(
        served,
        Ok(Served::Provider {
            success: (0, 0),
            ..
        })
    ));
    assert_eq!(tried(&trace), ["openai/gpt-4o"]);
    assert_eq!(tracker.unhealthy(), 0);
    let (_, trace) = run(&reloaded, &models, &keys).await;
    assert_eq!(tried(&trace), ["openai/gpt-4o"]);
}

#[tokio::test]
async fn connect_failures_demote_and_cut_short_timeouts_do_not() {
    let tracker: &'static crate::HealthTracker =
        Box::leak(Box::new(crate::HealthTracker::manual()));
    let upstream = Scripted::with(&[(&format!("gpt-4o/{KEY_A}"), Step::Unreachable)]);
    let demoting = with_health(&upstream, tracker, Duration::from_secs(30));
    let keys = Keys(vec![KEY_A]);
    let models = ["gpt-4o", "claude-haiku-4-5"];
    run(&demoting, &models, &keys).await.0.unwrap();
    let (_, trace) = run(&demoting, &models, &keys).await;
    assert_eq!(tried(&trace), ["anthropic/claude-haiku-4-5"]);

    // A timeout cut short by total_timeout proves nothing about the provider.
    let slow = Scripted::with(&[(
        &format!("gpt-4o/{KEY_A}"),
        slow_head(Duration::from_secs(5)),
    )]);
    let fresh: &'static crate::HealthTracker = Box::leak(Box::new(crate::HealthTracker::manual()));
    let short = Runtime {
        health: Some(crate::Health {
            tracker: fresh,
            cooldown: Duration::from_secs(30),
        }),
        ..runtime(&slow, 1000, 50)
    };
    let (served, _) = run(&short, &["gpt-4o"], &keys).await;
    assert!(matches!(served, Err(CallError::TotalTimeout { .. })));
    assert_eq!(fresh.unhealthy(), 0);
}

#[tokio::test]
async fn a_probe_the_call_never_reached_is_released() {
    let tracker: &'static crate::HealthTracker =
        Box::leak(Box::new(crate::HealthTracker::manual()));
    let keys = Keys(vec![KEY_A]);
    let hung = Scripted::with(&[(&format!("gpt-4o/{KEY_A}"), Step::Unreachable)]);
    let runtime = with_health(&hung, tracker, Duration::from_secs(30));
    run(&runtime, &["gpt-4o", "claude-haiku-4-5"], &keys)
        .await
        .0
        .unwrap();
    tracker.advance(Duration::from_secs(30));
    // Its place is second: the first candidate answers, so these calls hold the probe without
    // using it, and give it back.
    for _ in 0..2 {
        let (_, trace) = run(&runtime, &["claude-haiku-4-5", "gpt-4o"], &keys).await;
        assert_eq!(tried(&trace), ["anthropic/claude-haiku-4-5"]);
    }
    let (_, trace) = run(&runtime, &["gpt-4o", "claude-haiku-4-5"], &keys).await;
    assert_eq!(
        tried(&trace),
        ["openai/gpt-4o", "anthropic/claude-haiku-4-5"],
        "the next call still probes it in its place"
    );
}

#[tokio::test]
async fn a_traced_call_gives_each_attempt_a_span_and_its_traceparent() {
    let upstream = Scripted::with(&[(&format!("gpt-4o/{KEY_A}"), answer(429, vec!["no"]))]);
    let keys = Keys(vec![KEY_A, KEY_B]);
    let runtime = runtime(&upstream, 1000, 5000);
    let context = TraceContext {
        trace_id: TraceId(0x4bf92f3577b34da6a3ce929d0e0e4736),
        span_id: SpanId(0x1111),
        parent: None,
        sampled: true,
    };
    let body = br#"{"model":"gpt-4o","messages":[]}"#;
    let (served, trace) = run_traced(
        &runtime,
        &candidates(&["gpt-4o"]),
        body,
        &keys,
        Some(context),
    )
    .await;
    assert!(matches!(served, Ok(Served::Provider { .. })));
    let spans: Vec<SpanId> = trace
        .tried
        .iter()
        .flat_map(|m| &m.requests)
        .map(|r| r.span_id.expect("a traced attempt has a span"))
        .collect();
    assert_eq!(spans.len(), 2);
    assert_ne!(spans[0], spans[1]);
    let sent: Vec<Option<String>> = upstream.traceparents.lock().unwrap().clone();
    let expected: Vec<Option<String>> = spans
        .iter()
        .map(|span| Some(context.traceparent(*span).to_str().unwrap().to_owned()))
        .collect();
    assert_eq!(sent, expected);
    let requests = &trace.tried[0].requests;
    assert!(requests[0].started <= requests[1].started);

    // Untraced: no span, no header.
    let upstream = Scripted::with(&[]);
    let runtime = self::runtime(&upstream, 1000, 5000);
    let (_, trace) = run(&runtime, &["gpt-4o"], &keys).await;
    assert_eq!(trace.tried[0].requests[0].span_id, None);
    assert_eq!(*upstream.traceparents.lock().unwrap(), [None]);
}
