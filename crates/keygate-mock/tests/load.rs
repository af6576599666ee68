//! The load generator against the mock: fixed rate, maximum rate, TTFT, and error counting.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use keygate_mock::load::{run, LoadPlan, RequestSpec, Target};
use keygate_mock::{MockConfig, MockServer};

fn plan(url: &str, body: &str, rate: Option<f64>, stream: bool) -> LoadPlan {
    LoadPlan {
        request: RequestSpec {
            method: Method::POST,
            target: Target::parse(url).expect("url"),
            headers: vec![(
                HeaderName::from_static("content-type"),
                HeaderValue::from_static("application/json"),
            )],
            body: Bytes::from(body.to_owned()),
        },
        rate,
        duration: Duration::from_millis(600),
        warmup: Duration::from_millis(100),
        connections: 4,
        stream,
        timeout: Duration::from_secs(2),
    }
}

const CHAT: &str = r#"{"model":"m","messages":[{"role":"user","content":"load test"}]}"#;
const STREAM: &str =
    r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"load test"}]}"#;

#[tokio::test]
async fn fixed_rate_sends_the_scheduled_number_of_requests() {
    let mock = MockServer::start(MockConfig::default().with_max_records(0))
        .await
        .expect("starts");
    let url = format!("{}/v1/chat/completions", mock.url());
    let report = run(plan(&url, CHAT, Some(200.0), false), "fixed").await;
    assert_eq!(report.mode, "fixed");
    assert_eq!((report.errors, report.non_2xx), (0, 0));
    // 200/s over 0.6 s measured = 120 requests (allow scheduling slack at the edges).
    assert!((110..=130).contains(&report.ok), "{report:?}");
    let latency = report.latency.expect("latency");
    assert!(latency.p50_ms <= latency.p99_ms && latency.p99_ms <= latency.max_ms);
    assert!(report.ttft.is_none());
}

#[tokio::test]
async fn stream_reports_time_to_first_token_before_last_byte() {
    let config = MockConfig::default()
        .with_chunks(4)
        .with_chunk_delay(Duration::from_millis(25));
    let mock = MockServer::start(config).await.expect("starts");
    let url = format!("{}/v1/chat/completions", mock.url());
    let report = run(plan(&url, STREAM, Some(20.0), true), "stream").await;
    assert_eq!(report.errors, 0);
    let ttft = report.ttft.expect("ttft");
    let latency = report.latency.expect("latency");
    assert!(
        ttft.p50_ms < 25.0,
        "first data chunk goes out unpaced: {ttft:?}"
    );
    assert!(
        latency.p50_ms >= 100.0,
        "4 paced chunks of 25 ms: {latency:?}"
    );
}

#[tokio::test]
async fn max_rate_and_non_2xx_counting() {
    let mock = MockServer::start(MockConfig::default().with_max_records(0))
        .await
        .expect("starts");
    let url = format!("{}/v1/chat/completions", mock.url());
    let mut p = plan(&url, CHAT, None, false);
    p.request.headers.push((
        HeaderName::from_static("x-mock-status"),
        HeaderValue::from_static("500"),
    ));
    let report = run(p, "max").await;
    assert_eq!(report.mode, "max");
    assert_eq!(report.ok, 0);
    assert!(report.non_2xx > 50, "{report:?}");
}

#[tokio::test]
async fn unreachable_target_counts_errors() {
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("starts");
    let url = format!("{}/v1/chat/completions", mock.url());
    mock.shutdown().await;
    let report = run(plan(&url, CHAT, Some(100.0), false), "down").await;
    assert_eq!(report.ok, 0);
    assert!(report.errors > 0);
    assert!(report.latency.is_none());
}

#[tokio::test]
async fn connections_closed_by_the_server_are_reopened_without_errors() {
    let mock = MockServer::start(MockConfig::default().with_max_records(0))
        .await
        .expect("starts");
    let url = format!("{}/v1/chat/completions", mock.url());
    let mut p = plan(&url, CHAT, Some(100.0), false);
    // The server closes the connection after every response.
    p.request.headers.push((
        HeaderName::from_static("connection"),
        HeaderValue::from_static("close"),
    ));
    let report = run(p, "close").await;
    assert_eq!(report.errors, 0, "{report:?}");
    assert!((55..=65).contains(&report.ok), "{report:?}");
}
