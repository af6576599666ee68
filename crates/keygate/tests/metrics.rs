//! `/metrics` on the admin listener: every metric docs/server.md promises, bounded labels, and `log`
//! metadata in the access log.

mod common;

use std::time::Duration;

use common::{send, Gateway, Req};

const TOKEN: &str = "metrics-canary-token-8f7e6d5c";

const POLICY: &str = r#"
on_http_request:
  - expressions:
      - req.headers['authorization'][0] != 'Bearer metrics-canary-token-8f7e6d5c'
    actions:
      - type: custom-response
        config: {status_code: 401, body: '{"error": {"message": "no"}}'}
  - actions:
      - type: log
        config:
          metadata:
            team: "${req.headers['x-team'][0]}"
      - type: rate-limit
        config:
          name: per-token
          capacity: 2
          rate: 60s
          bucket_key:
            - req.headers['authorization']
      - type: ai-gateway
        config:
          providers:
            - id: mock
"#;

#[tokio::test]
async fn every_spec_metric_is_exported_without_secrets() {
    let gw = Gateway::start(POLICY, &[]);
    let chat =
        r#"{"model": "mock-echo", "messages": [{"role": "user", "content": "count my tokens"}]}"#;
    for _ in 0..3 {
        send(
            gw.addr,
            Req::post("/v1/chat/completions", chat)
                .bearer(TOKEN)
                .header("x-team", "blue")
                .from("127.0.0.9"),
        )
        .await
        .unwrap();
    }
    send(gw.addr, Req::get("/v1/models")).await.unwrap();
    assert!(
        gw.wait_for_output(r#""log":[{"team":"blue"}]"#, Duration::from_secs(2)),
        "{}",
        gw.output()
    );
    // Metrics are counted just before the line is queued: once the last request's line is out,
    // the scrape sees every request.
    assert!(
        gw.wait_for_output(
            r#""path":"/v1/models","status":401"#,
            Duration::from_secs(2)
        ),
        "{}",
        gw.output()
    );

    let metrics = send(gw.admin, Req::get("/metrics")).await.unwrap();
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    for expected in [
        "keygate_http_requests_total{status=\"200\"} 2",
        "keygate_http_requests_total{status=\"429\"} 1",
        "keygate_http_requests_total{status=\"401\"} 1",
        "keygate_http_request_duration_seconds_count 4",
        "keygate_policy_reloads_total",
        "keygate_rate_limit_decisions_total{name=\"per-token\",limited=\"false\"} 2",
        "keygate_rate_limit_decisions_total{name=\"per-token\",limited=\"true\"} 1",
        "keygate_ai_requests_total{provider=\"mock\",model=\"mock-echo\",status=\"200\"} 2",
        "keygate_ai_tokens_total{provider=\"mock\",model=\"mock-echo\",direction=\"input\",source=\"provider\"}",
        "keygate_ai_tokens_total{provider=\"mock\",model=\"mock-echo\",direction=\"output\",source=\"provider\"}",
        "keygate_ai_upstream_duration_seconds_count 2",
        "keygate_ai_time_to_first_token_seconds_count 2",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(
        !text.contains(TOKEN) && !text.contains("127.0.0.9"),
        "a token or client address is in a label"
    );
    assert_eq!(
        send(gw.addr, Req::get("/metrics")).await.unwrap().status,
        401,
        "metrics must not be on the client listener"
    );
    for path in ["/healthz", "/readyz"] {
        assert_eq!(send(gw.admin, Req::get(path)).await.unwrap().status, 200);
    }
}
