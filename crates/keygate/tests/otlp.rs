//! OpenTelemetry trace export (`--otlp-endpoint`) through the real binary: an OTLP/HTTP receiver
//! in the test gets the request's server span and one client span per provider attempt, with the
//! GenAI attributes, the client's trace id and the parent links; the provider (`keygate-mock`)
//! receives a `traceparent` naming the attempt's span. A collector that never answers, or that is
//! not there, does not slow requests, and is reported by one warning.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, send, Gateway, Req, TempDir};
use http_body_util::BodyExt;
use keygate_mock::{MockConfig, MockServer, RecordedRequest};
use serde_json::{json, Value};

/// Provider keys (canaries: never in a span). The mock answers 429 to the first.
const KEY_429: &str = "sk-otlp-canary-fail429-6a1f0e5d4c";
const KEY_GOOD: &str = "sk-otlp-canary-good-99c3b2a1f0";
/// The client's credential and prompt: never in a span either.
const CLIENT_TOKEN: &str = "client-otlp-canary-token-31c4";
const PROMPT: &str = "otlp canary prompt: the quick brown fox";

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn policy(keys: &[&str]) -> String {
    let keys: String = keys
        .iter()
        .map(|k| format!("                - value: {k}\n"))
        .collect();
    format!(
        "on_http_request:\n  - actions:\n      - type: ai-gateway\n        config:\n          providers:\n            - id: openai\n              api_keys:\n{keys}"
    )
}

/// An OTLP/HTTP receiver: records each `POST /v1/traces` JSON body and answers 200 `{}`.
struct Collector {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    async fn start() -> Collector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let record = bodies.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let record = record.clone();
                            async move {
                                let (head, body) = request.into_parts();
                                let body = body.collect().await.unwrap().to_bytes();
                                let good = head.method == "POST"
                                    && head.uri.path() == "/v1/traces"
                                    && head.headers["content-type"] == "application/json";
                                if good {
                                    let value = serde_json::from_slice(&body)
                                        .unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"));
                                    record.lock().unwrap().push(value);
                                }
                                let response = hyper::Response::builder()
                                    .status(if good { 200 } else { 400 })
                                    .header("content-type", "application/json")
                                    .body(http_body_util::Full::new(bytes::Bytes::from("{}")))
                                    .unwrap();
                                Ok::<_, Infallible>(response)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Collector { addr, bodies, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    fn spans(&self) -> Vec<Value> {
        let mut spans = Vec::new();
        for body in self.bodies.lock().unwrap().iter() {
            for resource in body["resourceSpans"].as_array().unwrap() {
                assert_eq!(
                    resource["resource"]["attributes"][0],
                    json!({"key": "service.name", "value": {"stringValue": "keygate"}})
                );
                for scope in resource["scopeSpans"].as_array().unwrap() {
                    spans.extend(scope["spans"].as_array().unwrap().iter().cloned());
                }
            }
        }
        spans
    }

    /// The spans of trace `trace_id` once `count` have arrived (10 s at most).
    async fn trace(&self, trace_id: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let spans: Vec<Value> = self
                .spans()
                .into_iter()
                .filter(|s| s["traceId"] == trace_id)
                .collect();
            if spans.len() >= count {
                assert_eq!(spans.len(), count, "{spans:#?}");
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} spans of {trace_id} after 10 s: {:#?}",
                spans.len(),
                self.spans()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A collector that accepts connections and never answers.
async fn blackhole() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (addr, task)
}

fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

fn string(span: &Value, key: &str) -> String {
    attribute(span, key)
        .and_then(|v| v["stringValue"].as_str())
        .unwrap_or_else(|| panic!("no string {key} in {span:#}"))
        .to_owned()
}

fn int(span: &Value, key: &str) -> i64 {
    attribute(span, key)
        .and_then(|v| v["intValue"].as_str())
        .unwrap_or_else(|| panic!("no int {key} in {span:#}"))
        .parse()
        .unwrap()
}

fn chat(stream: bool) -> String {
    json!({"model": "gpt-4o", "stream": stream,
        "messages": [{"role": "user", "content": PROMPT}]})
    .to_string()
}

async fn post(gw: &Gateway, body: String, traceparent: Option<&str>) -> common::Reply {
    let mut req = Req::post("/v1/chat/completions", body).bearer(CLIENT_TOKEN);
    if let Some(value) = traceparent {
        req = req.header("traceparent", value);
    }
    let reply = send(gw.addr, req).await.expect("request");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply
}

/// The `traceparent` values a provider request carried.
fn traceparents(request: &RecordedRequest) -> Vec<String> {
    request
        .headers
        .iter()
        .filter(|(name, _)| name == "traceparent")
        .map(|(_, value)| value.clone())
        .collect()
}

fn server_span(spans: &[Value]) -> &Value {
    let servers: Vec<&Value> = spans.iter().filter(|s| s["kind"] == 2).collect();
    assert_eq!(servers.len(), 1, "{spans:#?}");
    servers[0]
}

/// The client spans in start order.
fn attempt_spans(spans: &[Value]) -> Vec<&Value> {
    let mut attempts: Vec<&Value> = spans.iter().filter(|s| s["kind"] == 3).collect();
    attempts.sort_by_key(|s| {
        s["startTimeUnixNano"]
            .as_str()
            .unwrap()
            .parse::<u128>()
            .unwrap()
    });
    attempts
}

#[tokio::test]
async fn spans_carry_the_client_trace_the_genai_attributes_and_the_attempt_links() {
    let mock = MockServer::start(MockConfig::default().with_chunks(3))
        .await
        .unwrap();
    let collector = Collector::start().await;
    let data = TempDir::new("otlp-data");
    let extra = ["--otlp-endpoint".to_owned(), collector.url()];
    let gw = Gateway::start_on_mock(
        &policy(&[KEY_429, KEY_GOOD]),
        &mock.openai_base_url(),
        data.path(),
        &extra,
    );

    // The client's trace, a failed attempt then a good one.
    let client = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    post(&gw, chat(false), Some(&client)).await;
    let spans = collector.trace(CLIENT_TRACE, 3).await;
    let server = server_span(&spans);
    assert_eq!(server["parentSpanId"], CLIENT_SPAN);
    assert_eq!(server["name"], "POST /v1/chat/completions");
    assert_eq!(int(server, "http.response.status_code"), 200);
    assert_eq!(string(server, "http.request.method"), "POST");
    assert_eq!(string(server, "gen_ai.operation.name"), "chat");
    assert_eq!(string(server, "gen_ai.provider.name"), "openai");
    assert_eq!(string(server, "gen_ai.system"), "openai");
    assert_eq!(string(server, "gen_ai.request.model"), "gpt-4o");
    assert_eq!(string(server, "gen_ai.response.model"), "gpt-4o");
    assert!(int(server, "gen_ai.usage.input_tokens") > 0);
    assert!(int(server, "gen_ai.usage.output_tokens") > 0);
    assert_eq!(int(server, "keygate.ai.attempts"), 2);
    assert!(attribute(server, "gen_ai.server.time_to_first_token").is_some());
    let server_id = server["spanId"].as_str().unwrap();
    assert_eq!(server_id.len(), 16);
    assert_ne!(server_id, CLIENT_SPAN);
    let attempts = attempt_spans(&spans);
    let (failed, answered) = (attempts[0], attempts[1]);
    for attempt in [failed, answered] {
        assert_eq!(attempt["parentSpanId"], server_id);
        assert_eq!(attempt["name"], "chat gpt-4o");
        assert_eq!(string(attempt, "gen_ai.provider.name"), "openai");
        assert_eq!(string(attempt, "gen_ai.request.model"), "gpt-4o");
        let url = string(attempt, "url.full");
        assert!(
            url.ends_with("/v1/chat/completions") && !url.contains('?'),
            "{url}"
        );
    }
    assert_ne!(failed["spanId"], answered["spanId"]);
    assert_eq!(int(failed, "http.response.status_code"), 429);
    assert_eq!(failed["status"]["code"], 2);
    assert_eq!(string(failed, "error.type"), "429");
    assert_eq!(int(answered, "http.response.status_code"), 200);
    assert!(answered.get("status").is_none_or(|s| s["code"] != 2));
    assert_eq!(string(answered, "gen_ai.response.model"), "gpt-4o");
    assert!(int(answered, "gen_ai.usage.output_tokens") > 0);
    assert!(attribute(answered, "gen_ai.server.time_to_first_token").is_some());
    // Each provider request carried one traceparent: the client's trace, the attempt's span.
    let received = mock.requests();
    assert_eq!(received.len(), 2);
    for (request, attempt) in received.iter().zip([failed, answered]) {
        let expected = format!(
            "00-{CLIENT_TRACE}-{}-01",
            attempt["spanId"].as_str().unwrap()
        );
        assert_eq!(traceparents(request), [expected]);
    }

    // No traceparent: a new trace, without a parent; streamed.
    mock.clear_requests();
    post(&gw, chat(true), None).await;
    let received = mock.requests();
    let sent = traceparents(&received[received.len() - 1]);
    assert_eq!(sent.len(), 1);
    let trace_id = sent[0][3..35].to_owned();
    assert_ne!(trace_id, CLIENT_TRACE);
    let spans = collector.trace(&trace_id, 3).await;
    let server = server_span(&spans);
    assert!(
        server.get("parentSpanId").is_none_or(|p| p == ""),
        "{server:#}"
    );
    assert!(int(server, "gen_ai.usage.output_tokens") > 0);
    let answered = attempt_spans(&spans)[1];
    assert_eq!(
        sent[0],
        format!("00-{trace_id}-{}-01", answered["spanId"].as_str().unwrap())
    );

    // An invalid traceparent starts a new trace too (and is not passed on).
    mock.clear_requests();
    let invalid = format!("00-{}-{CLIENT_SPAN}-01", CLIENT_TRACE.to_uppercase());
    post(&gw, chat(false), Some(&invalid)).await;
    for request in mock.requests() {
        let sent = traceparents(&request);
        assert_eq!(sent.len(), 1);
        assert!(!sent[0].to_lowercase().contains(CLIENT_TRACE), "{sent:?}");
    }

    // Nothing secret, and no prompt, in any span.
    let exported = serde_json::to_string(&*collector.bodies.lock().unwrap()).unwrap();
    for canary in [KEY_429, KEY_GOOD, CLIENT_TOKEN, PROMPT, "sk-otlp"] {
        assert!(!exported.contains(canary), "{canary} exported");
    }
}

#[tokio::test]
async fn without_export_the_clients_traceparent_passes_untouched_and_none_is_added() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let data = TempDir::new("otlp-off");
    let gw = Gateway::start_on_mock(
        &policy(&[KEY_GOOD]),
        &mock.openai_base_url(),
        data.path(),
        &[],
    );
    let client = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    post(&gw, chat(false), Some(&client)).await;
    post(&gw, chat(false), None).await;
    let received = mock.requests();
    assert_eq!(traceparents(&received[0]), [client]);
    assert!(traceparents(&received[1]).is_empty());
}

/// `keygate_otlp_spans_dropped_total{reason}` from the admin listener.
async fn dropped(gw: &Gateway, reason: &str) -> u64 {
    let text = send(gw.admin, Req::get("/metrics")).await.unwrap().text();
    let series = format!("keygate_otlp_spans_dropped_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// The exporter's warnings in the gateway's output.
fn otlp_warnings(gw: &Gateway) -> Vec<String> {
    gw.output()
        .lines()
        .filter(|l| l.contains("\"WARN\"") && l.contains("OTLP"))
        .map(str::to_owned)
        .collect()
}

/// Sends `count` chat requests over `concurrency` connections at a time; returns the slowest.
async fn load(gw: &Gateway, count: usize, concurrency: usize) -> Duration {
    let addr = gw.addr;
    let tasks: Vec<_> = (0..concurrency)
        .map(|worker| {
            tokio::spawn(async move {
                let mut slowest = Duration::ZERO;
                for _ in (worker..count).step_by(concurrency) {
                    let started = Instant::now();
                    let req = Req::post("/v1/chat/completions", chat(false));
                    let reply = send(addr, req).await.expect("request");
                    assert_eq!(reply.status, 200, "{}", reply.text());
                    slowest = slowest.max(started.elapsed());
                }
                slowest
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for task in tasks {
        slowest = slowest.max(task.await.unwrap());
    }
    slowest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_or_is_gone_costs_requests_nothing() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();

    // Accepts, never answers: the first export hangs (up to its 10 s timeout) while requests go
    // on, fill the queue (4,096 spans, two per request) and overflow it. If a request ever waited
    // on the exporter it would take seconds; each takes milliseconds.
    let (hole, hole_task) = blackhole().await;
    let data = TempDir::new("otlp-hole");
    let extra = ["--otlp-endpoint".to_owned(), format!("http://{hole}")];
    let gw = Gateway::start_on_mock(
        &policy(&[KEY_GOOD]),
        &mock.openai_base_url(),
        data.path(),
        &extra,
    );
    let slowest = load(&gw, 3_000, 8).await;
    assert!(
        slowest < Duration::from_secs(3),
        "slowest request {slowest:?}"
    );
    assert!(dropped(&gw, "queue_full").await > 0);
    assert!(otlp_warnings(&gw).len() <= 1, "{:#?}", otlp_warnings(&gw));
    drop(gw);
    hole_task.abort();

    // Nothing listening: every export fails at once; one warning, however many fail.
    let data = TempDir::new("otlp-gone");
    let extra = [
        "--otlp-endpoint".to_owned(),
        format!("http://127.0.0.1:{}/v1/traces", free_port()),
    ];
    let gw = Gateway::start_on_mock(
        &policy(&[KEY_GOOD]),
        &mock.openai_base_url(),
        data.path(),
        &extra,
    );
    let started = Instant::now();
    // Requests over ~3.5 s: three or four export rounds fail.
    while started.elapsed() < Duration::from_millis(3_500) {
        let slowest = load(&gw, 4, 2).await;
        assert!(
            slowest < Duration::from_secs(3),
            "slowest request {slowest:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        gw.wait_for_output("OTLP trace export failed", Duration::from_secs(5)),
        "no warning:\n{}",
        gw.output()
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let warnings = otlp_warnings(&gw);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(dropped(&gw, "export_failed").await >= 4);
    assert_eq!(dropped(&gw, "queue_full").await, 0);
}

#[tokio::test]
async fn a_proxied_request_hands_its_span_to_the_upstream() {
    let upstream = common::EchoUpstream::start().await;
    let collector = Collector::start().await;
    let gw = Gateway::start(
        "on_http_request: []\n",
        &[
            "--upstream",
            &upstream.url(),
            "--otlp-endpoint",
            &format!("{}/v1/traces", collector.url()),
        ],
    );
    let client = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let reply = send(
        gw.addr,
        Req::get("/items/42?token=secret").header("traceparent", client),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    let spans = collector.trace(CLIENT_TRACE, 1).await;
    let server = server_span(&spans);
    assert_eq!(server["name"], "GET");
    assert_eq!(server["parentSpanId"], CLIENT_SPAN);
    assert_eq!(string(server, "url.path"), "/items/42");
    let sent = &upstream.requests()[0].headers["traceparent"];
    let expected = format!(
        "00-{CLIENT_TRACE}-{}-01",
        server["spanId"].as_str().unwrap()
    );
    assert_eq!(*sent, [expected]);
    assert!(!serde_json::to_string(&spans).unwrap().contains("secret"));
}
