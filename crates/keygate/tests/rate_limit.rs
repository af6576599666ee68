//! End to end: the seed guide's "authorization + rate limiting" policy through the real binary, in memory
//! and with two gateways sharing one Redis (which must hold the limit exactly, in total).
//! Without `redis-server` the Redis test says so in one line (see `keygate_test_support::parts`).

mod common;

use std::time::{Duration, Instant};

use keygate_test_support::{require, RedisServer};

use common::{seed_secrets, send, EchoUpstream, Gateway, Options, Req, TempDir};

const TOKEN: &str = "kg_test_0123456789abcdef";

/// The seed guide's policy (section "Adding rate limiting"), with the upstream standing in for
/// ai-gateway: its authorization rule, then this one.
const RATE_LIMIT_RULE: &str = r#"  # Apply rate limiting to authorized requests
  - actions:
      - type: rate-limit
        config:
          name: ai-gateway-limit
          algorithm: sliding_window
          capacity: 100
          rate: 100/min
          bucket_key:
            - req.headers['authorization']
"#;

fn start_gateway(data: &TempDir, upstream: &EchoUpstream, extra: &[String]) -> Gateway {
    let mut args = vec!["--upstream".to_owned(), upstream.url()];
    args.extend_from_slice(extra);
    Gateway::start_with(
        &format!("{}{RATE_LIMIT_RULE}", common::SEED_BEARER_RULE),
        Options {
            args,
            data_dir: Some(data.path()),
            ..Options::default()
        },
    )
}

fn data_dir() -> TempDir {
    let data = TempDir::new("rl-data");
    seed_secrets(data.path(), &[("gateway-auth", "access-token", TOKEN)]);
    data
}

#[tokio::test]
async fn seed_policy_admits_capacity_then_answers_429() {
    let upstream = EchoUpstream::start().await;
    let data = data_dir();
    let gateway = start_gateway(&data, &upstream, &[]);

    for i in 0..100 {
        let reply = send(gateway.addr, Req::get("/v1/models").bearer(TOKEN))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
    }
    let reply = send(gateway.addr, Req::get("/v1/models").bearer(TOKEN))
        .await
        .unwrap();
    assert_eq!(reply.status, 429, "{}", reply.text());
    let retry: u64 = reply
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.json()["error"]["code"], "ERR_KEYGATE_429");

    // Anthropic clients get Anthropic's error shape.
    let reply = send(gateway.addr, Req::post("/v1/messages", "{}").bearer(TOKEN))
        .await
        .unwrap();
    assert_eq!(reply.status, 429);
    assert_eq!(reply.json()["type"], "error");

    // Unauthorized requests are answered by the earlier rule and never reach the limiter.
    let reply = send(gateway.addr, Req::get("/v1/models")).await.unwrap();
    assert_eq!(reply.status, 401);
    assert_eq!(upstream.requests().len(), 100);
}

#[tokio::test]
async fn two_gateways_sharing_redis_admit_exactly_capacity_in_total() {
    let Some(redis) = require(RedisServer::start()) else {
        return;
    };
    let upstream = EchoUpstream::start().await;
    let data = data_dir();
    let args = ["--redis".to_owned(), redis.url()];
    let a = start_gateway(&data, &upstream, &args);
    let b = start_gateway(&data, &upstream, &args);

    let mut tasks = Vec::new();
    for i in 0..160 {
        let addr = if i % 2 == 0 { a.addr } else { b.addr };
        tasks.push(tokio::spawn(async move {
            send(addr, Req::get("/v1/models").bearer(TOKEN))
                .await
                .unwrap()
                .status
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!((ok, limited), (100, 60), "statuses: {statuses:?}");
    assert_eq!(upstream.requests().len(), 100);
}

#[tokio::test]
async fn unreachable_redis_fails_open_by_default() {
    let upstream = EchoUpstream::start().await;
    let data = data_dir();
    let dead = format!("redis://127.0.0.1:{}/", common::free_port());
    let gateway = start_gateway(&data, &upstream, &["--redis".to_owned(), dead]);
    let started = Instant::now();
    let reply = send(gateway.addr, Req::get("/v1/models").bearer(TOKEN))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(started.elapsed() < Duration::from_secs(2));
}
