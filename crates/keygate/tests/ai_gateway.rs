//! End to end: the `ai-gateway` action through the real binary against the `keygate-mock`
//! provider (`--provider-url openai=...`, `anthropic=...`): chat, streaming, embeddings,
//! Anthropic messages, failover across keys and providers, timeouts, error codes, and canary
//! checks that neither provider keys nor the client's token leak.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{seed_secrets, send, Gateway, Options, Reply, Req, TempDir};
use keygate_mock::{MockConfig, MockServer, RecordedRequest};
use serde_json::{json, Value};

/// The client's gateway token (a canary: it must never reach a provider).
const TOKEN: &str = "kg-canary-client-token-7f3a9c0d1e2b";
/// Provider keys (canaries: never in a response or a log line). Words in them script the mock.
const OPENAI_GOOD: &str = "sk-canary-openai-good-41d8cd98f00b204e";
const OPENAI_429: &str = "sk-canary-openai-fail429-9800998ecf8427e";
const OPENAI_503: &str = "sk-canary-openai-fail503-0cc175b9c0f1b6a";
const OPENAI_DROP: &str = "sk-canary-openai-drop-before-92eb5ffee6ae";
const OPENAI_SLOW: &str = "sk-canary-openai-slow1500-e4da3b7fbbce23";
const ANTHROPIC_GOOD: &str = "sk-ant-canary-good-1679091c5a880faf6fb5";
const KEYS: [&str; 6] = [
    OPENAI_GOOD,
    OPENAI_429,
    OPENAI_503,
    OPENAI_DROP,
    OPENAI_SLOW,
    ANTHROPIC_GOOD,
];

use common::SEED_BEARER_RULE as AUTH_RULE;

fn seed(dir: &Path) {
    seed_secrets(
        dir,
        &[
            ("gateway-auth", "access-token", TOKEN),
            ("openai", "good", OPENAI_GOOD),
            ("openai", "limited", OPENAI_429),
            ("openai", "down", OPENAI_503),
            ("openai", "drop", OPENAI_DROP),
            ("openai", "slow", OPENAI_SLOW),
            ("anthropic", "good", ANTHROPIC_GOOD),
        ],
    );
}

/// A gateway in front of `mock` with the auth rule and `config` (indented YAML under `config:`).
fn gateway(mock: &MockServer, data: &TempDir, config: &str) -> Gateway {
    let config: String = config.lines().map(|l| format!("          {l}\n")).collect();
    let policy =
        format!("{AUTH_RULE}  - actions:\n      - type: ai-gateway\n        config:\n{config}");
    let args = vec![
        "--provider-url".to_owned(),
        format!("openai={}", mock.openai_base_url()),
        "--provider-url".to_owned(),
        format!("anthropic={}", mock.openai_base_url()),
    ];
    Gateway::start_with(
        &policy,
        Options {
            args,
            data_dir: Some(data.path()),
            ..Options::default()
        },
    )
}

async fn mock() -> MockServer {
    MockServer::start(MockConfig::default().with_chunks(3))
        .await
        .expect("mock starts")
}

async fn post(gw: &Gateway, path: &str, body: Value, headers: &[(&str, &str)]) -> Reply {
    let mut req = Req::post(path, body.to_string()).bearer(TOKEN);
    for (name, value) in headers {
        req = req.header(name, value.to_string());
    }
    let reply = send(gw.addr, req).await.expect("request");
    assert_no_canary(&format!("{:?} {}", reply.headers, reply.text()));
    reply
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Hello from the e2e test"}]})
}

fn code(reply: &Reply) -> String {
    let value = reply.json();
    value["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn assert_no_canary(text: &str) {
    for key in KEYS {
        assert!(!text.contains(key), "provider key leaked: {text}");
    }
}

/// No provider key in the gateway's output; the client token never reached the provider.
fn assert_clean(gw: &Gateway, mock: &MockServer) {
    assert_no_canary(&gw.output());
    for request in mock.requests() {
        let seen = format!("{:?} {} {:?}", request.headers, request.body, request.query);
        assert!(
            !seen.contains(TOKEN),
            "client token reached the provider: {seen}"
        );
    }
}

fn auth_of(request: &RecordedRequest) -> String {
    request
        .header("authorization")
        .or(request.header("x-api-key"))
        .unwrap_or_default()
        .to_owned()
}

/// How many access-log lines the gateway has written.
fn request_lines(gw: &Gateway) -> usize {
    gw.output()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "request")
        .count()
}

/// The access-log line for `path` once more than `before` lines were written.
fn next_access_line(gw: &Gateway, before: usize, path: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while request_lines(gw) == before {
        assert!(
            std::time::Instant::now() < deadline,
            "no new access-log line"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    access_line(gw, path)
}

/// The access-log line (JSON) for the last request to `path`.
fn access_line(gw: &Gateway, path: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let found = gw
            .output()
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["message"] == "request" && v["path"] == path);
        if let Some(line) = found {
            return line;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no access log line for {path}:\n{}",
            gw.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_streaming_embeddings_and_models_with_key_failover() {
    let mock = mock().await;
    let data = TempDir::new("ai-chat");
    seed(data.path());
    let gw = gateway(
        &mock,
        &data,
        "providers:\n  - id: openai\n    api_keys:\n      - value: ${secrets.get('openai', 'limited')}\n      - value: ${secrets.get('openai', 'good')}",
    );

    let reply = post(&gw, "/v1/chat/completions", chat("gpt-4o"), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("Hello from the e2e test"));
    let seen = mock.requests();
    assert_eq!(seen.len(), 2, "the 429 key is followed by the good key");
    assert_eq!(auth_of(&seen[0]), format!("Bearer {OPENAI_429}"));
    assert_eq!(auth_of(&seen[1]), format!("Bearer {OPENAI_GOOD}"));
    assert_eq!(seen[1].path, "/v1/chat/completions");
    assert_eq!(seen[1].body_json().unwrap()["model"], "gpt-4o");
    let line = access_line(&gw, "/v1/chat/completions");
    assert_eq!(line["ai"]["provider"], "openai");
    assert_eq!(line["ai"]["attempts"], 2);

    mock.clear_requests();
    let mut stream = chat("gpt-4o");
    stream["stream"] = json!(true);
    let reply = post(&gw, "/v1/chat/completions", stream, &[]).await;
    assert_eq!(reply.status, 200);
    assert!(reply
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/event-stream"));
    let text = reply.text();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert!(
        !text.contains("\"prompt_tokens\""),
        "the usage chunk Keygate asked for reached the client: {text}"
    );
    assert_eq!(
        mock.requests().last().unwrap().body_json().unwrap()["stream_options"]["include_usage"],
        true
    );
    std::thread::sleep(Duration::from_millis(200));
    let line = access_line(&gw, "/v1/chat/completions");
    assert!(line["ai"]["output_tokens"].as_u64().unwrap() > 0, "{line}");
    assert!(line["ai"]["input_tokens"].as_u64().unwrap() > 0, "{line}");

    let mut asked = chat("gpt-4o");
    asked["stream"] = json!(true);
    asked["stream_options"] = json!({"include_usage": true});
    let reply = post(&gw, "/v1/chat/completions", asked, &[]).await;
    assert!(
        reply.text().contains("\"prompt_tokens\""),
        "a client that asked for usage gets it"
    );

    let reply = post(
        &gw,
        "/v1/embeddings",
        json!({"model": "text-embedding-3-small", "input": ["a", "b"]}),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["data"].as_array().unwrap().len(), 2);

    let reply = send(gw.addr, Req::get("/v1/models").bearer(TOKEN))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == "gpt-4o"));

    // A client that goes away mid-stream ends the request at once (the upstream body is dropped
    // with it): the access-log line appears long before the 10 s stream would have ended.
    let mut slow = chat("gpt-4o");
    slow["stream"] = json!(true);
    let payload = slow.to_string();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\n\
         x-mock-chunks: 100\r\nx-mock-chunk-delay-ms: 100\r\ncontent-length: {}\r\n\r\n{payload}",
        payload.len()
    );
    let before = request_lines(&gw);
    let started = std::time::Instant::now();
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("data:") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "stream closed early");
            seen.extend_from_slice(&buf[..n]);
        }
        assert!(
            !String::from_utf8_lossy(&seen).contains("[DONE]"),
            "the stream should still be running"
        );
    }
    while request_lines(&gw) == before {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the request did not end when the client left"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let reply = post(&gw, "/v1/chat/completions", chat("mock-echo"), &[]).await;
    assert_eq!(reply.header("x-keygate-provider"), Some("mock"));
    assert!(reply.text().contains("Hello from the e2e test"));
    assert_clean(&gw, &mock);
}

/// A stream the provider breaks after its head went out ends for the client, and its access-log
/// line and `keygate_ai_requests_total{status="stream_error"}` say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_breaks_is_an_error_in_the_log_and_metrics() {
    let mock = mock().await;
    let data = TempDir::new("ai-broken-stream");
    seed(data.path());
    let gw = gateway(&mock, &data, "providers:\n  - id: openai\n    api_keys:\n      - value: ${secrets.get('openai', 'good')}\n  - id: anthropic\n    api_keys:\n      - value: ${secrets.get('anthropic', 'good')}");
    let cases = [
        (
            "/v1/chat/completions",
            "gpt-4o",
            "mid-stream",
            "upstream stream ended early: connection reset",
        ),
        (
            "/v1/chat/completions",
            "gpt-4o-mini",
            "fin-mid-stream",
            "upstream stream ended early: the connection closed before the end of the stream",
        ),
        (
            "/v1/chat/completions",
            "gpt-4.1",
            "end-mid-stream",
            "stream ended before its final event",
        ),
        (
            "/v1/messages",
            "claude-haiku-4-5",
            "mid-stream",
            "upstream stream ended early: connection reset",
        ),
    ];
    for (path, model, drop, error) in cases {
        let mut body = chat(model);
        body["stream"] = json!(true);
        body["max_tokens"] = json!(64);
        let req = Req::post(path, body.to_string())
            .bearer(TOKEN)
            .header("x-mock-drop", drop)
            .header("x-mock-chunks", "4");
        let before = request_lines(&gw);
        let reply = tokio::time::timeout(Duration::from_secs(5), send(gw.addr, req))
            .await
            .unwrap_or_else(|_| panic!("{drop}: the client's stream did not end"));
        if let Ok(reply) = &reply {
            assert_eq!(reply.status, 200, "{drop}");
            assert!(!reply.text().contains("[DONE]") && !reply.text().contains("message_stop"));
        }
        let line = next_access_line(&gw, before, path);
        let ai = &line["ai"];
        assert_eq!(
            (line["status"].as_u64(), ai["error"].as_str()),
            (Some(200), Some(error)),
            "{line}"
        );
        // OpenAI: the role chunk and two of four content chunks; Anthropic: `message_start`,
        // `content_block_start`, `ping` and two deltas.
        let events = if path == "/v1/messages" { 5 } else { 3 };
        assert_eq!(ai["events"], events, "{line}");
        if path == "/v1/messages" {
            assert!(
                ai["input_tokens"].as_u64().unwrap() > 0,
                "message_start's count: {line}"
            );
        }
    }
    // Complete streams, each ending with its surface's final event, carry no error.
    let user = json!([{"role": "user", "content": "Hello"}]);
    let complete = [
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": user}),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt-3.5-turbo", "prompt": "Hello"}),
        ),
        (
            "/v1/responses",
            json!({"model": "gpt-4o", "input": "Hello"}),
        ),
        (
            "/v1/messages",
            json!({"model": "claude-haiku-4-5", "max_tokens": 64, "messages": user}),
        ),
    ];
    for (path, mut body) in complete {
        body["stream"] = json!(true);
        let before = request_lines(&gw);
        let reply = post(&gw, path, body, &[]).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        let line = next_access_line(&gw, before, path);
        assert!(
            line["ai"].get("error").is_none() && line["ai"].get("events").is_none(),
            "{line}"
        );
    }

    let metrics = send(gw.admin, Req::get("/metrics")).await.unwrap().text();
    for (provider, model, status) in [
        ("openai", "gpt-4o", "stream_error"),
        ("openai", "gpt-4o-mini", "stream_error"),
        ("openai", "gpt-4.1", "stream_error"),
        ("anthropic", "claude-haiku-4-5", "stream_error"),
    ] {
        let expected = format!(
            "keygate_ai_requests_total{{provider=\"{provider}\",model=\"{model}\",status=\"{status}\"}} 1"
        );
        assert!(
            metrics.contains(&expected),
            "missing {expected} in\n{metrics}"
        );
    }
    for expected in [
        "keygate_ai_requests_total{provider=\"openai\",model=\"gpt-4o\",status=\"200\"} 2",
        "keygate_http_requests_total{status=\"200\"} 8",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected} in\n{metrics}"
        );
    }
    assert_clean(&gw, &mock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_messages_plain_and_streamed() {
    let mock = mock().await;
    let data = TempDir::new("ai-anthropic");
    seed(data.path());
    let gw = gateway(&mock, &data, "providers:\n  - id: anthropic\n    api_keys:\n      - value: ${secrets.get('anthropic', 'good')}");
    let body = json!({"model": "claude-sonnet-4", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi Claude"}]});
    let reply = post(&gw, "/v1/messages", body.clone(), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["type"], "message");
    let seen = mock.requests();
    let last = seen.last().unwrap();
    assert_eq!(last.path, "/v1/messages");
    assert_eq!(last.header("x-api-key"), Some(ANTHROPIC_GOOD));
    assert_eq!(
        last.header("authorization"),
        None,
        "the client's bearer token must not go upstream"
    );
    assert_eq!(last.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(last.body_json().unwrap()["model"], "claude-sonnet-4-0");

    let mut stream = body;
    stream["stream"] = json!(true);
    let reply = post(
        &gw,
        "/v1/messages",
        stream,
        &[("anthropic-version", "2023-06-01")],
    )
    .await;
    assert_eq!(reply.status, 200);
    let text = reply.text();
    assert!(
        text.contains("event: message_start") && text.contains("event: message_stop"),
        "{text}"
    );
    std::thread::sleep(Duration::from_millis(200));
    let line = access_line(&gw, "/v1/messages");
    assert!(line["ai"]["output_tokens"].as_u64().unwrap() > 0, "{line}");

    let reply = post(
        &gw,
        "/v1/messages/count_tokens",
        json!({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "x"}]}),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = post(
        &gw,
        "/v1/messages/count_tokens",
        json!({"model": "gpt-4o", "messages": []}),
        &[],
    )
    .await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.json()["type"], "error");
    assert_eq!(reply.json()["error"]["code"], "ERR_KEYGATE_3813");
    assert_clean(&gw, &mock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_across_providers_drops_and_timeouts() {
    let mock = mock().await;
    let data = TempDir::new("ai-failover");
    seed(data.path());
    let config = "per_request_timeout: 400ms\ntotal_timeout: 5s\nproviders:\n  - id: openai\n    api_keys:\n      - value: ${secrets.get('openai', 'down')}\n      - value: ${secrets.get('openai', 'drop')}\n      - value: ${secrets.get('openai', 'slow')}\n  - id: anthropic\n    api_keys:\n      - value: ${secrets.get('anthropic', 'good')}";
    let gw = gateway(&mock, &data, config);
    let mut body = chat("gpt-4o");
    body["models"] = json!(["claude-haiku-4-5"]);
    let reply = post(&gw, "/v1/chat/completions", body, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-keygate-provider"), Some("anthropic"));
    let auths: Vec<String> = mock.requests().iter().map(auth_of).collect();
    assert_eq!(
        auths,
        [OPENAI_503, OPENAI_DROP, OPENAI_SLOW, ANTHROPIC_GOOD].map(|k| format!("Bearer {k}")),
        "503, dropped connection and timeout each move to the next key, then to the next provider"
    );
    assert_eq!(
        access_line(&gw, "/v1/chat/completions")["ai"]["attempts"],
        4
    );

    // A stream that breaks after its first bytes is not failed over: the client sees it end.
    mock.clear_requests();
    let mut stream = chat("claude-haiku-4-5");
    stream["stream"] = json!(true);
    let req = Req::post("/v1/chat/completions", stream.to_string())
        .bearer(TOKEN)
        .header("x-mock-drop", "mid-stream");
    let broken = send(gw.addr, req).await;
    match &broken {
        Ok(reply) => assert!(
            reply.status == 200 && !reply.text().contains("[DONE]"),
            "{}: {}",
            reply.status,
            reply.text()
        ),
        Err(err) => assert!(
            err.to_string().contains("chunked"),
            "the head arrived, then the chunked body broke: {err}"
        ),
    }
    assert_eq!(mock.requests().len(), 1, "no failover after the first byte");

    // Everything fails: 503 with the attempts listed, keys redacted.
    let reply = post(&gw, "/v1/chat/completions", chat("gpt-4o"), &[]).await;
    assert_eq!(
        (reply.status, code(&reply).as_str()),
        (503, "ERR_KEYGATE_3807")
    );
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("[503] openai/gpt-4o (sk-cana...b6a)") || message.contains("sk-cana"),
        "{message}"
    );
    assert!(
        message.contains("[timeout]") && message.contains("[unreachable]"),
        "{message}"
    );
    assert_clean(&gw, &mock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_timeout_and_error_codes() {
    let mock = mock().await;
    let data = TempDir::new("ai-errors");
    seed(data.path());
    let config = "per_request_timeout: 1s\ntotal_timeout: 600ms\nmax_input_tokens: 200\nproviders:\n  - id: openai\n    api_keys:\n      - value: ${secrets.get('openai', 'slow')}\n      - value: ${secrets.get('openai', 'good')}";
    let gw = gateway(&mock, &data, config);
    let started = std::time::Instant::now();
    let reply = post(&gw, "/v1/chat/completions", chat("gpt-4o"), &[]).await;
    assert_eq!(
        (reply.status, code(&reply).as_str()),
        (504, "ERR_KEYGATE_3810"),
        "{}",
        reply.text()
    );
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "total_timeout must stop the attempt"
    );

    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "/v1/chat/completions",
            json!({"model": ["x"]}),
            400,
            "ERR_KEYGATE_3801",
        ),
        (
            "/v1/chat/completions",
            json!("not an object"),
            400,
            "ERR_KEYGATE_3801",
        ),
        (
            "/v1/chat/completions",
            chat("gpt-nonexistent"),
            422,
            "ERR_KEYGATE_3804",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "mock-echo", "messages": [{"role": "user", "content": "y".repeat(2000)}]}),
            413,
            "ERR_KEYGATE_3811",
        ),
        (
            "/v1/chat/completions",
            chat("claude-haiku-4-5"),
            400,
            "ERR_KEYGATE_3802",
        ),
    ];
    for (path, body, status, expected) in cases {
        let reply = post(&gw, path, body.clone(), &[]).await;
        assert_eq!(
            (reply.status, code(&reply).as_str()),
            (status, expected),
            "{body}: {}",
            reply.text()
        );
    }
    // A provider's own 400 goes straight back to the client (no failover).
    mock.clear_requests();
    let reply = post(&gw, "/v1/chat/completions", chat("mock:mock-echo"), &[]).await;
    assert_eq!(reply.status, 200);
    let unreachable = {
        let data = TempDir::new("ai-dead");
        seed(data.path());
        let policy = format!(
            "{AUTH_RULE}  - actions:\n      - type: ai-gateway\n        config:\n          providers:\n            - id: openai\n              api_keys:\n                - value: ${{secrets.get('openai', 'good')}}\n"
        );
        let args = vec![
            "--provider-url".to_owned(),
            "openai=http://127.0.0.1:9/v1".to_owned(),
        ];
        let dead = Gateway::start_with(
            &policy,
            Options {
                args,
                data_dir: Some(data.path()),
                ..Options::default()
            },
        );
        let reply = post(&dead, "/v1/chat/completions", chat("gpt-4o"), &[]).await;
        assert_no_canary(&dead.output());
        reply
    };
    assert_eq!(
        (unreachable.status, code(&unreachable).as_str()),
        (502, "ERR_KEYGATE_3800")
    );
    assert_clean(&gw, &mock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_client_errors_pass_through_and_passthrough_keys() {
    let mock = mock().await;
    let data = TempDir::new("ai-pass");
    seed(data.path());
    let gw = gateway(&mock, &data, "providers:\n  - id: openai\n    api_keys:\n      - value: ${secrets.get('openai', 'good')}\n      - value: ${secrets.get('openai', 'limited')}");
    let reply = post(
        &gw,
        "/v1/chat/completions",
        chat("gpt-4o"),
        &[("x-mock-status", "400")],
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(
        mock.requests().len(),
        1,
        "a provider's 400 is not failed over"
    );

    // Without server keys the client's own provider key is forwarded (passthrough mode).
    let open = MockServer::start(MockConfig::default()).await.unwrap();
    let policy = "on_http_request:\n  - actions:\n      - type: ai-gateway\n";
    let args = vec![
        "--provider-url".to_owned(),
        format!("openai={}", open.openai_base_url()),
    ];
    let passthrough = Gateway::start_with(
        policy,
        Options {
            args,
            ..Options::default()
        },
    );
    let reply = send(
        passthrough.addr,
        Req::post("/v1/chat/completions", chat("gpt-4o").to_string())
            .header("x-api-key", "sk-client-own-key-0123456789"),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        auth_of(&open.requests()[0]),
        "Bearer sk-client-own-key-0123456789"
    );
    let reply = send(
        passthrough.addr,
        Req::post("/v1/chat/completions", chat("gpt-4o").to_string()),
    )
    .await
    .unwrap();
    assert_eq!(
        (reply.status, code(&reply).as_str()),
        (400, "ERR_KEYGATE_3802")
    );
    assert_clean(&gw, &mock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_in_shape_pass_byte_for_byte_and_duplicate_keys_are_refused() {
    let mock = mock().await;
    let data = TempDir::new("ai-raw-body");
    seed(data.path());
    let config = "providers:\n  - id: openai\n    api_keys:\n      - value: ${secrets.get('openai', 'good')}";
    let gw = gateway(&mock, &data, config);

    // Nothing to change (model already the provider's id): the provider gets the client's bytes.
    let raw = "{ \"messages\": [{\"role\": \"user\", \"content\": \"Caf\\u00e9\"}],\n  \"model\": \"gpt-4o\", \"x_vendor\": {\"b\": 2, \"a\": 1} }";
    let reply = send(
        gw.addr,
        Req::post("/v1/chat/completions", raw).bearer(TOKEN),
    )
    .await
    .expect("request");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let received = mock.requests().pop().expect("the provider got the request");
    assert_eq!(received.body, raw);

    // An alias is rewritten to the provider's id, so that body is re-serialized.
    mock.clear_requests();
    let reply = post(&gw, "/v1/chat/completions", chat("openai:gpt-4o"), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let received: Value = serde_json::from_str(&mock.requests().pop().unwrap().body).unwrap();
    assert_eq!(received["model"], "gpt-4o");

    // Parsers disagree on which duplicate counts: refused before any provider sees it.
    mock.clear_requests();
    let duplicate = r#"{"model": "gpt-4o", "messages": [], "model": "o1-pro"}"#;
    let reply = send(
        gw.addr,
        Req::post("/v1/chat/completions", duplicate).bearer(TOKEN),
    )
    .await
    .expect("request");
    assert_eq!(
        (reply.status, code(&reply).as_str()),
        (400, "ERR_KEYGATE_3801")
    );
    assert!(
        reply.text().contains("duplicate key 'model'"),
        "{}",
        reply.text()
    );
    assert!(mock.requests().is_empty());
    assert_clean(&gw, &mock);
}

/// A provider that accepts connections and never answers: a TCP listener holding every
/// connection it accepts, counting them.
async fn hung_listener() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepts.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(stream);
        }
    });
    (addr, accepts, task)
}

/// A `llama3` chat request, which the provider `backup` must answer; how long it took.
async fn timed_llama3(gw: &Gateway) -> Duration {
    let started = std::time::Instant::now();
    let reply = post(gw, "/v1/chat/completions", chat("llama3"), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-keygate-provider"), Some("backup"));
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_never_answers_is_tried_last_until_its_probe() {
    use std::sync::atomic::Ordering::SeqCst;
    use std::time::Instant;

    let mock = mock().await;
    let (hung, accepts, hung_task) = hung_listener().await;
    let data = TempDir::new("ai-health");
    seed(data.path());
    let backup = mock.openai_base_url();
    let config = format!(
        "per_request_timeout: 1s\nprovider_health:\n  cooldown: 2s\nproviders:\n  - id: hung\n    base_url: http://{hung}/v1\n    models:\n      - id: llama3\n  - id: backup\n    base_url: {backup}\n    api_keys:\n      - value: ${{secrets.get('openai', 'good')}}\n    models:\n      - id: llama3"
    );
    let gw = gateway(&mock, &data, &config);

    // The first request waits out the hung provider's per-request timeout, then fails over.
    let first = timed_llama3(&gw).await;
    let demoted_at = Instant::now();
    assert!(
        first >= Duration::from_millis(900) && first < Duration::from_secs(3),
        "{first:?}"
    );
    assert_eq!(accepts.load(SeqCst), 1);
    assert_eq!(
        access_line(&gw, "/v1/chat/completions")["ai"]["attempts"],
        2
    );
    assert!(
        gw.wait_for_output("tried after the healthy providers", Duration::from_secs(2)),
        "the demotion is logged:\n{}",
        gw.output()
    );

    // The next ones go straight to the healthy provider.
    for _ in 0..3 {
        let before = request_lines(&gw);
        let took = timed_llama3(&gw).await;
        assert!(took < Duration::from_millis(500), "{took:?}");
        assert_eq!(
            next_access_line(&gw, before, "/v1/chat/completions")["ai"]["attempts"],
            1
        );
    }
    assert_eq!(accepts.load(SeqCst), 1, "the hung provider was not tried");

    // After the cooldown, one request (and only one of two concurrent ones) probes it again.
    tokio::time::sleep(Duration::from_millis(2200).saturating_sub(demoted_at.elapsed())).await;
    let (a, b) = tokio::join!(timed_llama3(&gw), timed_llama3(&gw));
    let (probe, other) = (a.max(b), a.min(b));
    assert!(probe >= Duration::from_millis(900), "{a:?} {b:?}");
    assert!(other < Duration::from_millis(500), "{a:?} {b:?}");
    assert_eq!(accepts.load(SeqCst), 2, "one probe");

    // The probe failed: demoted again (for twice the cooldown).
    let took = timed_llama3(&gw).await;
    assert!(took < Duration::from_millis(500), "{took:?}");
    assert_eq!(accepts.load(SeqCst), 2);
    assert_eq!(
        mock.requests().len(),
        7,
        "every request was served by the backup"
    );
    assert_clean(&gw, &mock);
    hung_task.abort();
}

/// ngrok's multi-region pattern: `openai-eu` aliases `openai` beside the configured `openai`;
/// `openai:` names reach both and a strategy on the providers' metadata picks the region.
#[tokio::test(flavor = "multi_thread")]
async fn a_regional_copy_shares_the_prefix_and_the_strategy_picks_it() {
    let (us, eu) = (mock().await, mock().await);
    let data = TempDir::new("ai-regions");
    seed(data.path());
    let providers = format!(
        "providers:\n  - id: openai\n    metadata: {{region: us}}\n    api_keys:\n      - value: ${{secrets.get('openai', 'good')}}\n  - id: openai-eu\n    id_aliases: [openai]\n    base_url: {}\n    metadata: {{region: eu}}\n    api_keys:\n      - value: ${{secrets.get('openai', 'good')}}",
        eu.openai_base_url()
    );
    let by_order = gateway(&us, &data, &providers);
    let reply = post(
        &by_order,
        "/v1/chat/completions",
        chat("openai:gpt-4o"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!((us.requests().len(), eu.requests().len()), (1, 0));
    drop(by_order);

    let strategy = "\nmodel_selection:\n  strategy:\n    - \"ai.models.filter(m, m.getMetadata('region') == 'eu')\"";
    let by_region = gateway(&us, &data, &(providers + strategy));
    for model in ["openai:gpt-4o", "gpt-4o"] {
        let before = request_lines(&by_region);
        let reply = post(&by_region, "/v1/chat/completions", chat(model), &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let line = next_access_line(&by_region, before, "/v1/chat/completions");
        assert_eq!(line["ai"]["provider"], "openai-eu", "{model}");
    }
    assert_eq!((us.requests().len(), eu.requests().len()), (1, 2));
    assert_clean(&by_region, &us);
}

/// `only_allow_configured_providers` with no providers (shown in ngrok's docs) loads with a
/// warning and refuses every request with a 422 naming the reason.
#[tokio::test(flavor = "multi_thread")]
async fn a_configuration_with_nothing_usable_loads_and_refuses_requests() {
    let mock = mock().await;
    let data = TempDir::new("ai-nothing");
    seed(data.path());
    let gw = gateway(&mock, &data, "only_allow_configured_providers: true");
    assert!(
        gw.output().contains("every request will be refused"),
        "{}",
        gw.output()
    );
    let reply = post(&gw, "/v1/chat/completions", chat("gpt-4o"), &[]).await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    assert_eq!(code(&reply), "ERR_KEYGATE_3804");
    assert!(mock.requests().is_empty());
}
