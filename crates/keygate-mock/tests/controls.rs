//! Behaviour controls: request headers, words in API keys, mock-level defaults.

mod common;

use std::time::{Duration, Instant};

use common::{post, send, sse_events, start};
use http::Method;
use keygate_mock::{MockConfig, MockServer};
use serde_json::{json, Value};

fn chat(stream: bool) -> Value {
    json!({"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": "0123456789"}]})
}

#[tokio::test]
async fn status_header_answers_in_openai_error_shape() {
    let mock = start().await;
    let resp = post(
        mock.addr,
        "/v1/chat/completions",
        &[("x-mock-status", "429")],
        chat(false),
    )
    .await;
    assert_eq!(resp.status, 429);
    assert_eq!(resp.header("retry-after"), Some("1"));
    let v = resp.json();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert!(v["error"]["message"].is_string());
    let resp = post(
        mock.addr,
        "/v1/chat/completions",
        &[("x-mock-status", "503")],
        chat(true),
    )
    .await;
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.json()["error"]["type"], "server_error");
}

#[tokio::test]
async fn key_words_script_failures_for_bearer_and_x_api_key() {
    let mock = start().await;
    let cases = [
        ("authorization", "Bearer sk-upstream-fail429", 429),
        ("authorization", "Bearer sk-fail500", 500),
        ("x-api-key", "sk-ant-fail401", 401),
        ("authorization", "Bearer sk-good", 200),
    ];
    for (header, value, status) in cases {
        let resp = post(
            mock.addr,
            "/v1/chat/completions",
            &[(header, value)],
            chat(false),
        )
        .await;
        assert_eq!(resp.status, status, "{value}");
    }
    let resp = post(
        mock.addr,
        "/v1/messages",
        &[("x-api-key", "sk-ant-fail401")],
        json!({"model": "c", "max_tokens": 5, "messages": []}),
    )
    .await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.json()["error"]["type"], "authentication_error");
}

#[tokio::test]
async fn header_overrides_key() {
    let mock = start().await;
    let resp = post(
        mock.addr,
        "/v1/chat/completions",
        &[
            ("authorization", "Bearer k-fail500"),
            ("x-mock-status", "200"),
        ],
        chat(false),
    )
    .await;
    assert_eq!(resp.status, 200);
}

#[tokio::test]
async fn delay_header_and_slow_key_delay_the_response() {
    let mock = MockServer::start(MockConfig::default().with_slow_delay(Duration::from_millis(150)))
        .await
        .expect("starts");
    let t = Instant::now();
    post(
        mock.addr,
        "/v1/chat/completions",
        &[("x-mock-delay-ms", "120")],
        chat(false),
    )
    .await;
    assert!(t.elapsed() >= Duration::from_millis(120));

    let t = Instant::now();
    post(
        mock.addr,
        "/v1/chat/completions",
        &[("authorization", "Bearer k-slow")],
        chat(false),
    )
    .await;
    assert!(t.elapsed() >= Duration::from_millis(150));

    let t = Instant::now();
    post(
        mock.addr,
        "/v1/chat/completions",
        &[("authorization", "Bearer k-slow80")],
        chat(false),
    )
    .await;
    let elapsed = t.elapsed();
    assert!(
        elapsed >= Duration::from_millis(80) && elapsed < Duration::from_millis(150),
        "{elapsed:?}"
    );

    let t = Instant::now();
    post(mock.addr, "/v1/chat/completions", &[], chat(false)).await;
    assert!(t.elapsed() < Duration::from_millis(80));
}

#[tokio::test]
async fn chunk_count_and_delay_from_headers() {
    let mock = start().await;
    let t = Instant::now();
    let resp = post(
        mock.addr,
        "/v1/chat/completions",
        &[("x-mock-chunks", "10"), ("x-mock-chunk-delay-ms", "20")],
        chat(true),
    )
    .await;
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "10 paced chunks of 20 ms"
    );
    let events = sse_events(&resp.text());
    // role + 10 content + finish + [DONE]
    assert_eq!(events.len(), 13);
}

#[tokio::test]
async fn chunk_defaults_come_from_config() {
    let config = MockConfig::default()
        .with_chunks(3)
        .with_chunk_delay(Duration::from_millis(30));
    let mock = MockServer::start(config).await.expect("starts");
    let t = Instant::now();
    let resp = post(mock.addr, "/v1/chat/completions", &[], chat(true)).await;
    assert!(t.elapsed() >= Duration::from_millis(90));
    assert_eq!(sse_events(&resp.text()).len(), 1 + 3 + 1 + 1);
    // Non-streamed replies are not paced.
    let t = Instant::now();
    post(mock.addr, "/v1/chat/completions", &[], chat(false)).await;
    assert!(t.elapsed() < Duration::from_millis(30));
}

#[tokio::test]
async fn drop_before_headers_closes_without_response() {
    let mock = start().await;
    for (header, value) in [
        ("x-mock-drop", "before-headers"),
        ("authorization", "Bearer k-drop-before"),
    ] {
        let result = send(
            mock.addr,
            Method::POST,
            "/v1/chat/completions",
            &[(header, value)],
            &chat(false).to_string(),
        )
        .await;
        assert!(result.is_err(), "expected a failed request, got {result:?}");
    }
    // The request was still recorded.
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test]
async fn drop_mid_stream_sends_head_and_partial_body() {
    let mock = start().await;
    for body in [chat(true), chat(false)] {
        let (received, end) = cut(&mock, "mid-stream", &body).await;
        let err = end.expect_err("the body must end in an error");
        assert_eq!(
            io_kind(&err),
            Some(std::io::ErrorKind::ConnectionReset),
            "{err:?}"
        );
        assert!(!received.is_empty(), "part of the body arrived");
        assert!(!received.contains("[DONE]"));
    }
}

#[tokio::test]
async fn fin_mid_stream_closes_with_the_body_unfinished() {
    let mock = start().await;
    for body in [chat(true), chat(false)] {
        let (received, end) = cut(&mock, "fin-mid-stream", &body).await;
        let err = end.expect_err("the body must end in an error");
        assert_ne!(
            io_kind(&err),
            Some(std::io::ErrorKind::ConnectionReset),
            "{err:?}"
        );
        assert!(!received.is_empty() && !received.contains("[DONE]"));
    }
}

#[tokio::test]
async fn end_mid_stream_ends_cleanly_without_the_final_events() {
    let mock = start().await;
    let (received, end) = cut(&mock, "end-mid-stream", &chat(true)).await;
    end.expect("a clean end");
    assert!(received.contains("data: {") && !received.contains("[DONE]"));
    assert!(!received.contains("\"finish_reason\":\"stop\""));
}

/// Sends `body` with `x-mock-drop: drop` over HTTP/1.1: the body received and how it ended.
async fn cut(mock: &MockServer, drop: &str, body: &Value) -> (String, Result<(), hyper::Error>) {
    let stream = tokio::net::TcpStream::connect(mock.addr)
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::post("/v1/chat/completions")
        .header("host", "mock")
        .header("x-mock-drop", drop)
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .expect("request");
    let resp = sender.send_request(req).await.expect("head arrives");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut received = Vec::new();
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        match frame {
            Ok(f) => {
                received.extend_from_slice(f.data_ref().map(|d| d.as_ref()).unwrap_or_default())
            }
            Err(err) => return (String::from_utf8_lossy(&received).into(), Err(err)),
        }
    }
    (String::from_utf8_lossy(&received).into(), Ok(()))
}

/// The kind of the I/O error beneath `err`, if there is one.
fn io_kind(err: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cause = err.source();
    }
    None
}

#[tokio::test]
async fn invalid_control_is_a_400_naming_the_header() {
    let mock = start().await;
    let resp = post(
        mock.addr,
        "/v1/chat/completions",
        &[("x-mock-delay-ms", "soon")],
        chat(false),
    )
    .await;
    assert_eq!(resp.status, 400);
    assert!(resp.json()["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("x-mock-delay-ms")));
}

#[tokio::test]
async fn usage_can_be_left_out_of_every_surface() {
    let mock = start().await;
    let omit = [("x-mock-usage", "omit")];
    let streamed_chat = json!({"model": "gpt-4o", "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "0123456789"}]});
    let messages = |stream: bool| {
        json!({"model": "claude-haiku-4-5", "max_tokens": 16, "stream": stream,
            "messages": [{"role": "user", "content": "0123456789"}]})
    };
    let responses =
        |stream: bool| json!({"model": "gpt-4o", "stream": stream, "input": "0123456789"});
    let cases = [
        ("/v1/chat/completions", chat(false)),
        ("/v1/chat/completions", streamed_chat),
        ("/v1/messages", messages(false)),
        ("/v1/messages", messages(true)),
        ("/v1/responses", responses(false)),
        ("/v1/responses", responses(true)),
    ];
    for (path, body) in cases {
        let reported = post(mock.addr, path, &[], body.clone()).await;
        assert!(
            reported.text().contains("\"usage\""),
            "{path}: usage by default"
        );
        let omitted = post(mock.addr, path, &omit, body.clone()).await;
        assert_eq!(omitted.status, 200, "{path}");
        let text = omitted.text();
        assert!(!text.contains("\"usage\""), "{path} {body}: {text}");
        // The answer itself is still there (streams split the echo into pieces).
        assert!(text.contains("01"), "{path}: {text}");
    }
    // The key word works too, and a bad header value is refused.
    let resp = post(
        mock.addr,
        "/v1/chat/completions",
        &[("authorization", "Bearer sk-nousage")],
        chat(false),
    )
    .await;
    assert!(resp.json().get("usage").is_none());
    let resp = post(
        mock.addr,
        "/v1/chat/completions",
        &[("x-mock-usage", "sometimes")],
        chat(false),
    )
    .await;
    assert_eq!(resp.status, 400);
}
