//! The usage ledger through the real binary: AI requests made with access keys land in
//! DATA_DIR/usage.db, `keygate usage` and `GET /v1/usage` report the same totals (tokens as the
//! responses carried them, cost from the catalog prices), and a SIGTERM in the middle of a burst
//! loses no row: exactly one per request that got a response. `--no-usage-ledger` turns it off.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{api, send, Gateway, Options, Reply, Req, TempDir, BIN};
use keygate_mock::{MockConfig, MockServer};
use serde_json::{json, Value};

const SERVER_KEY: &str = "sk-server-key-for-usage-tests";

/// An `ai-gateway` in front of the mock's OpenAI API; `extra` goes into its config.
fn policy(extra: &str) -> String {
    format!(
        "on_http_request:\n  - actions:\n      - type: ai-gateway\n        config:\n{extra}          providers:\n            - id: openai\n              api_keys:\n                - value: {SERVER_KEY}\n"
    )
}

/// The flag that sends `openai` requests to `mock`.
fn provider_url(mock: &MockServer) -> Vec<String> {
    vec![
        "--provider-url".to_owned(),
        format!("openai={}", mock.openai_base_url()),
    ]
}

async fn chat(gw: &Gateway, token: &str, model: &str, headers: &[(&'static str, &str)]) -> Reply {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "How many tokens is this?"}]});
    let mut req = Req::post("/v1/chat/completions", body.to_string()).bearer(token);
    for (name, value) in headers {
        req = req.header(name, *value);
    }
    send(gw.addr, req).await.expect("request")
}

/// Creates an access key; returns (id, token).
fn create_key(data: &TempDir) -> (String, String) {
    let key = api(data.path(), &["ai-gateway-api-keys", "create"]);
    (
        key["id"].as_str().unwrap().to_owned(),
        key["token"].as_str().unwrap().to_owned(),
    )
}

/// Runs `keygate usage ARGS --json` on `data` and returns its JSON.
fn usage_cli(data: &Path, args: &[&str]) -> Value {
    let output = Command::new(BIN)
        .arg("usage")
        .args(args)
        .arg("--json")
        .arg("--data-dir")
        .arg(data)
        .env_remove("KEYGATE_MASTER_KEY")
        .env_remove("KEYGATE_MASTER_KEY_FILE")
        .output()
        .expect("run keygate usage");
    assert!(
        output.status.success(),
        "keygate usage {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("keygate usage --json prints JSON")
}

/// What a report says, without the time bounds (each run takes its own `now`).
fn rows_and_total(report: &Value) -> (Value, Value, Value) {
    (
        report["group_by"].clone(),
        report["rows"].clone(),
        report["total"].clone(),
    )
}

/// Polls `GET /v1/usage?QUERY` until its total counts `requests` (the writer commits within
/// 200 ms).
async fn admin_report(gw: &Gateway, query: &str, requests: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = send(
            gw.admin,
            Req::get(&format!("/v1/usage?{query}")).bearer(&gw.admin_token()),
        )
        .await
        .expect("admin request");
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let report = reply.json();
        if report["total"]["requests"] == requests || Instant::now() > deadline {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Expected totals of one group: (group, requests, errors, input, output, cost in micro-USD).
type Expected = (String, u64, u64, u64, u64, u64);

fn expected_json((group, requests, errors, input, output, cost): &Expected) -> Value {
    json!({
        "group": group, "requests": requests, "errors": errors,
        "input_tokens": input, "output_tokens": output, "cached_tokens": 0,
        "reasoning_tokens": 0, "estimated_requests": 0, "unpriced_requests": 0,
        "cost_micros": cost, "cost_usd": *cost as f64 / 1e6,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_reported_by_the_cli_and_the_admin_endpoint_alike() {
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock");
    let data = TempDir::new("usage-data");
    let (alice, alice_token) = create_key(&data);
    let (bob, bob_token) = create_key(&data);
    let gw = Gateway::start_with(
        &policy("          access_keys: required\n"),
        Options {
            args: provider_url(&mock),
            data_dir: Some(data.path()),
            ..Options::default()
        },
    );

    // USD per million tokens in the catalog: gpt-4o 2.50 in / 10 out, gpt-4o-mini 0.15 / 0.60.
    // A price per million tokens is micro-USD per token, rounded up per request.
    let mut by_model: HashMap<&str, Expected> = HashMap::new();
    let mut by_key: HashMap<&str, Expected> = HashMap::new();
    let plan = [
        (&alice, &alice_token, "gpt-4o", None),
        (&alice, &alice_token, "gpt-4o", None),
        (&alice, &alice_token, "gpt-4o-mini", None),
        (&bob, &bob_token, "gpt-4o-mini", None),
        (&bob, &bob_token, "gpt-4o-mini", Some("400")),
    ];
    for (key, token, model, fail) in plan {
        let headers: Vec<(&str, &str)> = fail.map(|s| ("x-mock-status", s)).into_iter().collect();
        let reply = chat(&gw, token, model, &headers).await;
        let usage = &reply.json()["usage"];
        let input = usage["prompt_tokens"].as_u64().unwrap_or(0);
        let output = usage["completion_tokens"].as_u64().unwrap_or(0);
        let errors = u64::from(reply.status >= 400);
        assert_eq!(reply.status, if fail.is_some() { 400 } else { 200 });
        assert!(
            fail.is_some() || input > 0 && output > 0,
            "{}",
            reply.text()
        );
        // Prices in hundredths of a micro-USD per token, so the sum stays in integers.
        let (input_price, output_price) = match model {
            "gpt-4o" => (250, 1_000),
            _ => (15, 60),
        };
        let cost = (input * input_price + output * output_price).div_ceil(100);
        for (map, group) in [(&mut by_model, model), (&mut by_key, key.as_str())] {
            let entry = map
                .entry(group)
                .or_insert_with(|| (group.to_owned(), 0, 0, 0, 0, 0));
            entry.1 += 1;
            entry.2 += errors;
            entry.3 += input;
            entry.4 += output;
            entry.5 += cost;
        }
    }

    let report = admin_report(&gw, "by=model", 5).await;
    let expected_rows = |map: &HashMap<&str, Expected>| {
        let mut rows: Vec<&Expected> = map.values().collect();
        // Busiest first, then by name.
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Value::Array(rows.into_iter().map(expected_json).collect())
    };
    assert_eq!(report["group_by"], "model");
    assert_eq!(report["rows"], expected_rows(&by_model), "{report:#}");
    let cli = usage_cli(data.path(), &["--by", "model"]);
    assert_eq!(rows_and_total(&cli), rows_and_total(&report));

    let by_key_report = admin_report(&gw, "by=key&since=1h", 5).await;
    assert_eq!(
        by_key_report["rows"],
        expected_rows(&by_key),
        "{by_key_report:#}"
    );
    assert_eq!(by_key_report["total"]["errors"], 1);
    let cli = usage_cli(data.path(), &["--by", "key", "--since", "1h"]);
    assert_eq!(rows_and_total(&cli), rows_and_total(&by_key_report));
    let only_bob = usage_cli(data.path(), &["--key", &bob, "--model", "gpt-4o-mini"]);
    assert_eq!(only_bob["total"]["requests"], 2);

    // The event log, newest first, filtered by status.
    let events = send(
        gw.admin,
        Req::get("/v1/usage/events?limit=2").bearer(&gw.admin_token()),
    )
    .await
    .unwrap()
    .json();
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["status"], 400);
    assert_eq!(events[0]["access_key"], bob.as_str());
    let failed = send(
        gw.admin,
        Req::get(&format!("/v1/usage/events?status=4xx&key={bob}")).bearer(&gw.admin_token()),
    )
    .await
    .unwrap()
    .json();
    assert_eq!(failed["events"].as_array().map(Vec::len), Some(1));

    // Bad parameters are named.
    for (query, param) in [
        ("/v1/usage?since=yesterday", "since"),
        ("/v1/usage?by=week", "by"),
        ("/v1/usage?limit=5", "limit"),
        ("/v1/usage/events?limit=1001", "limit"),
        ("/v1/usage/events?status=6xx", "status"),
    ] {
        let reply = send(gw.admin, Req::get(query).bearer(&gw.admin_token()))
            .await
            .unwrap();
        assert_eq!(reply.status, 400, "{query}: {}", reply.text());
        assert_eq!(reply.json()["error"]["param"], param, "{query}");
    }
    let metrics = send(gw.admin, Req::get("/metrics")).await.unwrap().text();
    assert!(
        metrics.contains("keygate_usage_ledger_dropped_total 0"),
        "{metrics}"
    );

    // Tokens are never stored, only key ids.
    let db = std::fs::read(data.path().join("usage.db")).unwrap_or_default();
    let wal = std::fs::read(data.path().join("usage.db-wal")).unwrap_or_default();
    for token in [&alice_token, &bob_token] {
        let token = token.as_bytes();
        for file in [&db, &wal] {
            assert!(
                !file.windows(token.len()).any(|w| w == token),
                "a token was stored"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigterm_mid_burst_keeps_exactly_one_row_per_answered_request() {
    const REQUESTS: usize = 2_000;
    const CLIENTS: usize = 32;
    let mock = MockServer::start(MockConfig::default().with_max_records(0))
        .await
        .expect("mock");
    let mut gw = Gateway::start_with(
        &policy(""),
        Options {
            args: provider_url(&mock),
            ..Options::default()
        },
    );
    let next = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    // Request id -> the status its client received; refused requests are not in it.
    let statuses = Arc::new(Mutex::new(HashMap::new()));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (next, answered, statuses, refused, addr) = (
            next.clone(),
            answered.clone(),
            statuses.clone(),
            refused.clone(),
            gw.addr,
        );
        clients.push(tokio::spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= REQUESTS {
                    return;
                }
                let id = format!("burst-{index}");
                let body =
                    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
                // A few milliseconds each, so the burst is still going when SIGTERM lands.
                let req = Req::post("/v1/chat/completions", body.to_string())
                    .header("x-request-id", id.clone())
                    .header("x-mock-delay-ms", "10");
                match send(addr, req).await {
                    Ok(reply) => {
                        statuses.lock().unwrap().insert(id, reply.status);
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered.load(Ordering::Relaxed) < REQUESTS / 4 {
        assert!(
            Instant::now() < deadline,
            "the burst did not get going:\n{}",
            gw.output()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gw.signal("TERM");
    for client in clients {
        client.await.unwrap();
    }
    assert_eq!(
        gw.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        gw.output()
    );

    let statuses = statuses.lock().unwrap().clone();
    let refused = refused.load(Ordering::Relaxed);
    assert_eq!(statuses.len() + refused, REQUESTS);
    assert!(
        refused > 0,
        "SIGTERM came after the burst ended; nothing was tested"
    );
    assert!(
        statuses.values().all(|status| *status == 200),
        "in-flight requests finish normally: {statuses:?}"
    );
    let conn = rusqlite::Connection::open(gw.dir.path().join("data/usage.db")).unwrap();
    let mut rows_per_id: HashMap<String, u64> = HashMap::new();
    let mut statement = conn
        .prepare("SELECT request_id, status FROM usage")
        .unwrap();
    let rows = statement
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, u16>(1)?))
        })
        .unwrap();
    for row in rows {
        let (id, status) = row.unwrap();
        assert_eq!(
            statuses.get(&id),
            Some(&status),
            "{id}: a row for a request nobody got an answer to, or with another status"
        );
        *rows_per_id.entry(id).or_default() += 1;
    }
    let doubled: Vec<_> = rows_per_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "more than one row: {doubled:?}");
    let answered: HashSet<&String> = statuses.keys().collect();
    let missing: Vec<_> = answered
        .iter()
        .filter(|id| !rows_per_id.contains_key(**id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered requests have no row, e.g. {:?}",
        missing.len(),
        answered.len(),
        missing.first()
    );
    assert!(
        !gw.output().contains("usage events dropped"),
        "{}",
        gw.output()
    );
}

#[tokio::test]
async fn the_ledger_can_be_turned_off_and_its_retention_is_checked() {
    let gw = Gateway::start(
        "on_http_request:\n  - actions:\n      - type: ai-gateway\n        config:\n          providers:\n            - id: mock\n",
        &["--no-usage-ledger"],
    );
    let reply = send(
        gw.addr,
        Req::post(
            "/v1/chat/completions",
            json!({"model": "mock:echo", "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = send(gw.admin, Req::get("/v1/usage").bearer(&gw.admin_token()))
        .await
        .unwrap();
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.json()["error"]["message"],
        "the usage ledger is off (--no-usage-ledger)"
    );
    assert!(!gw.dir.path().join("data/usage.db").exists());
    // Without a ledger, `keygate usage` reports nothing rather than failing.
    let empty = usage_cli(&gw.dir.path().join("data"), &[]);
    assert_eq!(
        (empty["rows"].clone(), empty["total"]["requests"].clone()),
        (json!([]), json!(0))
    );
    assert!(!gw.dir.path().join("data/usage.db").exists());

    let output = Command::new(BIN)
        .args([
            "serve",
            "--policy",
            "unused.yml",
            "--usage-retention",
            "90 days",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid duration '90 days'"));
}

#[test]
fn a_reader_that_stops_early_ends_the_output_not_the_process() {
    let data = TempDir::new("usage-pipe");
    for args in [&["usage", "--json"][..], &["usage"][..]] {
        // The pipe's reading end is closed before the command writes: its write fails (EPIPE).
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let output = Command::new(BIN)
            .args(args)
            .arg("--data-dir")
            .arg(data.path())
            .stdout(writer)
            .output()
            .expect("keygate runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
