//! Access keys' request limits and token and spend budgets through the real binary: keys made
//! with `keygate api ai-gateway-api-keys create --token-limit ...`, an `ai-gateway` with
//! `access_keys: required` and the mock provider behind it. Budgets are reserved before a call,
//! settled to its usage after, hold under concurrent streams (also across two gateways on one
//! redis-server), and a stream that runs out of budget ends with an error event.

mod common;

use std::time::Duration;

use common::{api, send, Gateway, Req, TempDir};
use keygate_mock::{MockConfig, MockServer};
use keygate_test_support::{require, RedisServer};
use serde_json::{json, Value};

const POLICY: &str = "on_http_request:
  - actions:
      - type: ai-gateway
        config:
          access_keys: required
          providers:
            - id: openai
              api_keys:
                - value: sk-server-key-for-budget-tests
            - id: anthropic
              api_keys:
                - value: sk-ant-server-key-for-budget-tests
";

/// Tokens one request may settle beyond what its budget granted: the output of the one stream
/// chunk held back when the budget ran out, which is charged though never sent (the mock sends
/// at most 8 characters, 2 tokens, per chunk in these tests; 4 leaves room for rounding).
const OVERRUN_PER_REQUEST: u64 = 4;

fn start(mock: &MockServer, data: &TempDir, extra: &[String]) -> Gateway {
    Gateway::start_on_mock(POLICY, &mock.openai_base_url(), data.path(), extra)
}

/// Creates an access key with `flags`; returns (id, token).
fn create_key(data: &TempDir, flags: &[&str]) -> (String, String) {
    let mut args = vec!["ai-gateway-api-keys", "create"];
    args.extend_from_slice(flags);
    let key = api(data.path(), &args);
    let field = |name: &str| key[name].as_str().unwrap().to_owned();
    (field("id"), field("token"))
}

/// A streamed chat whose answer echoes `words` words of 4 characters, in chunks of 2 words.
fn streamed_chat(words: usize) -> (String, usize) {
    let content = vec!["abc"; words].join(" ") + " ";
    let body = json!({"model": "gpt-4o", "stream": true,
        "messages": [{"role": "user", "content": content}]});
    (body.to_string(), words.div_ceil(2))
}

async fn post(gw: &Gateway, token: &str, body: String, chunks: usize) -> common::Reply {
    send(
        gw.addr,
        Req::post("/v1/chat/completions", body)
            .bearer(token)
            .header("x-mock-chunks", chunks.to_string()),
    )
    .await
    .unwrap()
}

/// The access-log lines of AI requests: (status, input + output tokens, estimated).
fn settled(gw: &Gateway) -> Vec<(u64, u64)> {
    gw.output()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == "request" && line["ai"].is_object())
        .map(|line| {
            let ai = &line["ai"];
            let tokens =
                ai["input_tokens"].as_u64().unwrap() + ai["output_tokens"].as_u64().unwrap();
            (line["status"].as_u64().unwrap(), tokens)
        })
        .collect()
}

/// Waits until `n` AI requests are in the access log (each settled its budget just before).
fn wait_for_lines(gw: &Gateway, n: usize) -> Vec<(u64, u64)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let lines = settled(gw);
        if lines.len() >= n || std::time::Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_budget_refusal(reply: &common::Reply, message: &str) {
    assert_eq!(reply.status, 429, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["error"]["code"], "ERR_KEYGATE_27009");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert!(
        body["error"]["message"].as_str().unwrap().contains(message),
        "{body}"
    );
    assert!(reply.header("retry-after").is_some());
}

/// Sends `n` streamed chats at once, half to each gateway; returns the replies.
async fn burst(gateways: &[&Gateway], token: &str, n: usize, words: usize) -> Vec<common::Reply> {
    let (body, chunks) = streamed_chat(words);
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let addr = gateways[i % gateways.len()].addr;
            let (body, token) = (body.clone(), token.to_owned());
            tokio::spawn(async move {
                send(
                    addr,
                    Req::post("/v1/chat/completions", body)
                        .bearer(&token)
                        .header("x-mock-chunks", chunks.to_string()),
                )
                .await
                .unwrap()
            })
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    replies
}

/// Every reply is a whole stream, a stream ended by the budget's error event, or a 429.
fn classify(replies: &[common::Reply]) -> (usize, usize, usize) {
    let (mut whole, mut cut, mut refused) = (0, 0, 0);
    for reply in replies {
        let text = reply.text();
        match reply.status {
            200 if text.ends_with("data: [DONE]\n\n") => whole += 1,
            200 => {
                assert!(text.contains("\"code\":\"ERR_KEYGATE_27009\""), "{text}");
                cut += 1;
            }
            429 => {
                assert_budget_refusal(reply, "token budget (1000/day)");
                refused += 1;
            }
            other => panic!("unexpected status {other}: {text}"),
        }
    }
    (whole, cut, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_budget_holds_under_concurrent_streams() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let data = TempDir::new("budget-data");
    let (_, token) = create_key(&data, &["--token-limit", "1000/day"]);
    let gw = start(&mock, &data, &[]);
    // 12 streams of about 100 tokens in and 100 out: 2,400 tokens asked of 1,000.
    let replies = burst(&[&gw], &token, 12, 100).await;
    let (whole, cut, refused) = classify(&replies);
    assert!(
        whole >= 2 && refused >= 1,
        "{whole} whole, {cut} cut, {refused} refused"
    );
    let lines = wait_for_lines(&gw, whole + cut);
    let total: u64 = lines.iter().map(|(_, tokens)| tokens).sum();
    let answered = (whole + cut) as u64;
    assert!(
        total <= 1000 + answered * OVERRUN_PER_REQUEST,
        "settled {total} tokens over {answered} answers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_on_one_redis_hold_the_same_budget() {
    let Some(redis) = require(RedisServer::start()) else {
        return;
    };
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let data = TempDir::new("budget-data");
    let (_, token) = create_key(&data, &["--token-limit", "1000/day"]);
    let shared = ["--redis".to_owned(), redis.url()];
    let a = start(&mock, &data, &shared);
    let b = start(&mock, &data, &shared);
    let replies = burst(&[&a, &b], &token, 16, 100).await;
    let (whole, cut, refused) = classify(&replies);
    assert!(
        whole >= 2 && refused >= 1,
        "{whole} whole, {cut} cut, {refused} refused"
    );
    let answered = whole + cut;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let (lines_a, lines_b) = loop {
        let (la, lb) = (settled(&a), settled(&b));
        if la.len() + lb.len() >= answered || std::time::Instant::now() > deadline {
            break (la, lb);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Each gateway took 8 of the 16: with a budget per gateway both would admit about three
    // streams of 200 tokens, 1,200 in all, over the bound below.
    let total: u64 = lines_a.iter().chain(&lines_b).map(|(_, t)| t).sum();
    assert!(
        total <= 1000 + answered as u64 * OVERRUN_PER_REQUEST,
        "settled {total} tokens over {answered} answers on two gateways"
    );
}

#[tokio::test]
async fn a_stream_that_runs_out_of_budget_ends_with_an_error_event() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let data = TempDir::new("budget-data");
    let (id, token) = create_key(&data, &["--token-limit", "700/day"]);
    let (_, anthropic_token) = create_key(&data, &["--token-limit", "700/day"]);
    let gw = start(&mock, &data, &[]);
    // About 400 tokens in and 400 out: the stream starts, then its budget runs out.
    let (body, chunks) = streamed_chat(400);
    let reply = post(&gw, &token, body, chunks).await;
    assert_eq!(reply.status, 200);
    let text = reply.text();
    assert!(!text.contains("[DONE]"), "the stream was not cut: {text}");
    let last = text.trim_end().lines().last().unwrap();
    let event: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(event["error"]["code"], "ERR_KEYGATE_27009");
    assert_eq!(
        event["error"]["message"],
        format!("access key {id} has reached its token budget (700/day)")
    );
    let lines = wait_for_lines(&gw, 1);
    assert!(lines[0].1 <= 700 + OVERRUN_PER_REQUEST, "{lines:?}");
    assert!(gw.output().contains("stream ended by the gateway"));

    // The same cut in Anthropic's shape.
    let content = vec!["abc"; 400].join(" ");
    let body = json!({"model": "claude-sonnet-4-6", "stream": true, "max_tokens": 1000,
        "messages": [{"role": "user", "content": content}]});
    let reply = send(
        gw.addr,
        Req::post("/v1/messages", body.to_string())
            .header("x-api-key", anthropic_token)
            .header("x-mock-chunks", "200"),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let text = reply.text();
    assert!(
        text.contains("event: error\ndata: {\"error\":{\"code\":\"ERR_KEYGATE_27009\""),
        "{text}"
    );
    assert!(!text.contains("message_stop"));
}

#[tokio::test]
async fn unused_reservations_are_refunded() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let data = TempDir::new("budget-data");
    let (_, token) = create_key(&data, &["--token-limit", "300/day"]);
    let gw = start(&mock, &data, &[]);
    let chat = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    // Each request reserves nearly the whole budget (no max_tokens: up to 4,096 output tokens)
    // and uses about 10 tokens: without refunds the second would be refused.
    for n in 1..=5 {
        let reply = send(
            gw.addr,
            Req::post("/v1/chat/completions", chat.to_string()).bearer(&token),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 200, "request {n}: {}", reply.text());
        wait_for_lines(&gw, n);
    }
    // The provider was asked for no more output than the budget had left.
    let asked = mock.requests()[0].body_json().unwrap();
    let cap = asked["max_completion_tokens"].as_u64().unwrap();
    assert!(cap > 250 && cap < 300, "max_completion_tokens {cap}");
}

#[tokio::test]
async fn request_and_spend_limits() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let data = TempDir::new("budget-data");
    let (id, token) = create_key(&data, &["--request-limit", "2/min"]);
    let (_, spender) = create_key(&data, &["--daily-spend-limit", "0.001"]);
    let gw = start(&mock, &data, &[]);
    let chat = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let ask = || {
        send(
            gw.addr,
            Req::post("/v1/chat/completions", chat.to_string()).bearer(&token),
        )
    };
    assert_eq!(ask().await.unwrap().status, 200);
    assert_eq!(ask().await.unwrap().status, 200);
    assert_budget_refusal(
        &ask().await.unwrap(),
        &format!("access key {id} is over its request limit (2/min)"),
    );

    // gpt-4o costs $2.50 in and $10 out per million tokens: $0.001 buys a few short answers.
    let mut answered = 0;
    let refusal = loop {
        let reply = send(
            gw.addr,
            Req::post("/v1/chat/completions", chat.to_string()).bearer(&spender),
        )
        .await
        .unwrap();
        if reply.status != 200 {
            break reply;
        }
        answered += 1;
        assert!(answered < 100, "the spend limit never refused");
        wait_for_lines(&gw, 2 + answered);
    };
    assert!(answered >= 1);
    assert_budget_refusal(&refusal, "daily spend limit ($0.001)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_and_restarted_under_load() {
    let Some(redis) = require(RedisServer::start()) else {
        return;
    };
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let data = TempDir::new("budget-data");
    let (local_id, local) = create_key(&data, &["--token-limit", "100000/day"]);
    let (_, closed) = create_key(
        &data,
        &[
            "--token-limit",
            "100000/day",
            "--on-store-failure",
            "closed",
        ],
    );
    let gw = start(&mock, &data, &["--redis".to_owned(), redis.url()]);
    let chat = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let ask = |token: &str| {
        let started = std::time::Instant::now();
        let request = send(
            gw.addr,
            Req::post("/v1/chat/completions", chat.to_string()).bearer(token),
        );
        async move {
            let reply = request.await.unwrap();
            // Never a hang: a Redis that is gone costs at most its timeout.
            assert!(started.elapsed() < Duration::from_secs(2));
            reply.status
        }
    };
    assert_eq!((ask(&local).await, ask(&closed).await), (200, 200));
    assert!(
        !todays_tokens(&redis, &local_id).is_empty(),
        "charged on Redis"
    );

    redis.stop();
    for _ in 0..5 {
        // Local keeps enforcing in memory; closed refuses, with Retry-After: 1.
        assert_eq!(ask(&local).await, 200);
        let reply = send(
            gw.addr,
            Req::post("/v1/chat/completions", chat.to_string()).bearer(&closed),
        )
        .await
        .unwrap();
        assert_budget_refusal(&reply, "budget store is unreachable");
        assert_eq!(reply.header("retry-after"), Some("1"));
    }

    let redis = RedisServer::start_on(redis.port()).expect("redis-server ran before");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ask(&closed).await != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "budgets did not go back to Redis"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A restarted Redis has lost its counters; new charges land there again.
    assert_eq!(ask(&local).await, 200);
    assert!(
        !todays_tokens(&redis, &local_id).is_empty(),
        "charged on the restarted Redis"
    );
}

/// The Redis value of key `id`'s token counter for today (`/day` windows), empty when absent.
fn todays_tokens(redis: &RedisServer, id: &str) -> String {
    let day = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    let key = format!("keygate:budget:{id}:tokens:86400000:{day}");
    redis.cli(&["GET", &key]).trim().to_owned()
}
