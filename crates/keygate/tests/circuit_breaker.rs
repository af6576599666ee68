//! End to end: `circuit-breaker` in front of an upstream that fails on demand, through the real
//! binary: it trips after `volume_threshold` outcomes, refuses with 503 without calling the
//! upstream, lets one probe through after `tripped_duration`, and closes when the probe works.

mod common;

use std::time::Duration;

use common::{send, EchoUpstream, Gateway, Req};

const POLICY: &str = r#"
on_http_request:
  - actions:
      - type: circuit-breaker
        config:
          error_threshold: 0.5
          volume_threshold: 4
          window_duration: 10s
          tripped_duration: 1s
"#;

/// A little over `tripped_duration`.
const TRIPPED: Duration = Duration::from_millis(1_100);

async fn status(gateway: &Gateway, req: Req<'_>) -> u16 {
    send(gateway.addr, req).await.expect("request").status
}

#[tokio::test]
async fn trips_refuses_probes_and_recovers() {
    let upstream = EchoUpstream::start().await;
    let gateway = Gateway::start(POLICY, &["--upstream", &upstream.url()]);

    for _ in 0..2 {
        assert_eq!(status(&gateway, Req::get("/ok")).await, 200);
    }
    upstream.set_status(500);
    for _ in 0..2 {
        assert_eq!(status(&gateway, Req::get("/fail")).await, 500);
    }
    // 2 errors of 4: open. Nothing more reaches the upstream.
    assert_eq!(upstream.requests().len(), 4);
    let refused = send(gateway.addr, Req::get("/v1/chat/completions"))
        .await
        .unwrap();
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.json()["error"]["code"], "ERR_KEYGATE_3202");
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert_eq!(retry, 1);
    let anthropic = send(gateway.addr, Req::post("/v1/messages", "{}"))
        .await
        .unwrap();
    assert_eq!(anthropic.status, 503);
    assert_eq!(anthropic.json()["type"], "error");
    assert_eq!(upstream.requests().len(), 4);
    assert!(gateway.wait_for_output("circuit breaker tripped", Duration::from_secs(5)));

    // Half-open while the upstream still fails: the probe reaches it, fails, and re-trips.
    tokio::time::sleep(TRIPPED).await;
    assert_eq!(status(&gateway, Req::get("/probe")).await, 500);
    assert_eq!(upstream.requests().len(), 5);
    assert_eq!(status(&gateway, Req::get("/again")).await, 503);
    assert_eq!(upstream.requests().len(), 5);

    // Half-open with a healthy upstream: one slow probe; the others are refused meanwhile.
    upstream.set_status(200);
    tokio::time::sleep(TRIPPED).await;
    let addr = gateway.addr;
    let probe = tokio::spawn(async move {
        send(addr, Req::get("/slow-probe").header("x-delay-ms", "800"))
            .await
            .unwrap()
            .status
    });
    // Well inside the probe's 800 ms, and under `tripped_duration`, after which a probe
    // still unanswered would be given up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(&gateway, Req::get("/during-probe")).await, 503);
    assert_eq!(probe.await.unwrap(), 200);
    // Closed, with a fresh window.
    for _ in 0..5 {
        assert_eq!(status(&gateway, Req::get("/recovered")).await, 200);
    }
    let paths: Vec<String> = upstream.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths.iter().filter(|p| *p == "/recovered").count(), 5);
    assert!(!paths.iter().any(|p| p == "/during-probe" || p == "/again"));
    assert!(gateway.wait_for_output("circuit breaker probe succeeded", Duration::from_secs(5)));
}

#[tokio::test]
async fn an_unreachable_upstream_counts_as_failing() {
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    let gateway = Gateway::start(POLICY, &["--upstream", &closed]);
    for _ in 0..4 {
        assert_eq!(status(&gateway, Req::get("/")).await, 502);
    }
    assert_eq!(status(&gateway, Req::get("/")).await, 503);
}

#[tokio::test]
async fn not_enforcing_logs_the_trip_but_lets_requests_through() {
    let upstream = EchoUpstream::start().await;
    upstream.set_status(503);
    let policy = POLICY.replace(
        "tripped_duration: 1s",
        "tripped_duration: 1s\n          enforce: false",
    );
    let gateway = Gateway::start(&policy, &["--upstream", &upstream.url()]);
    for _ in 0..8 {
        assert_eq!(status(&gateway, Req::get("/")).await, 503);
    }
    assert_eq!(
        upstream.requests().len(),
        8,
        "every request reached the upstream"
    );
    assert!(gateway.wait_for_output("circuit breaker tripped", Duration::from_secs(5)));
}

#[tokio::test]
async fn a_reloaded_policy_starts_closed() {
    let upstream = EchoUpstream::start().await;
    upstream.set_status(500);
    let gateway = Gateway::start(POLICY, &["--upstream", &upstream.url()]);
    for _ in 0..4 {
        assert_eq!(status(&gateway, Req::get("/")).await, 500);
    }
    assert_eq!(status(&gateway, Req::get("/")).await, 503);
    std::fs::write(&gateway.policy_path, format!("# reloaded\n{POLICY}")).unwrap();
    assert!(gateway.wait_for_output("policy reloaded", Duration::from_secs(10)));
    assert_eq!(status(&gateway, Req::get("/")).await, 500);
}

#[test]
fn the_example_loads() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/circuit-breaker.yml"
    );
    let output = std::process::Command::new(common::BIN)
        .args(["policy", "check", example])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
