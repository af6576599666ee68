//! The usage dashboard's JSON API and the admin token, over plain HTTP against the real binary
//! (the browser test is `dashboard_browser.rs`): a burst of traffic through the gateway in front
//! of the mock provider (one provider key refused with 429, so requests fail over), then the
//! overview against the ledger's own totals, breakdowns, the logs with filters and one request's
//! attempts, key management with the CLI's rules, the policy page's reload history, and the
//! flags (`--no-ui`, `--open-usage-api`, `--admin-token-file`, `--admin-token-secret`).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::{api, seed_secrets, send, Gateway, Reply, Req, TempDir};
use keygate_mock::{MockConfig, MockServer};
use serde_json::{json, Value};

/// Refused by the mock with 429 (the word `fail429`): the gateway moves to the next key.
const LIMITED_KEY: &str = "sk-dashboard-fail429-limited-0123456789";
const GOOD_KEY: &str = "sk-dashboard-good-openai-9876543210abc";
const ANTHROPIC_KEY: &str = "sk-ant-dashboard-good-5555555555555555";

/// Access keys required; `openai` tries the limited key first, `anthropic` has one good key.
fn policy() -> String {
    format!(
        "on_http_request:\n  - actions:\n      - type: ai-gateway\n        config:\n          access_keys: required\n          providers:\n            - id: openai\n              api_keys:\n                - value: {LIMITED_KEY}\n                - value: {GOOD_KEY}\n            - id: anthropic\n              api_keys:\n                - value: {ANTHROPIC_KEY}\n"
    )
}

async fn start(data: &TempDir, extra: &[&str]) -> (MockServer, Gateway) {
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
    let gw = Gateway::start_on_mock(&policy(), &mock.openai_base_url(), data.path(), &extra);
    (mock, gw)
}

/// Creates an access key with the CLI; returns (id, token).
fn create_key(data: &TempDir) -> (String, String) {
    let key = api(data.path(), &["ai-gateway-api-keys", "create"]);
    (
        key["id"].as_str().unwrap().to_owned(),
        key["token"].as_str().unwrap().to_owned(),
    )
}

async fn chat(gw: &Gateway, token: &str, model: &str, headers: &[(&'static str, &str)]) -> Reply {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "Count my tokens, please."}]});
    let mut req = Req::post("/v1/chat/completions", body.to_string()).bearer(token);
    for (name, value) in headers {
        req = req.header(name, *value);
    }
    send(gw.addr, req).await.expect("request")
}

/// GET `path` on the admin listener with the admin token.
async fn admin_get(gw: &Gateway, path: &str) -> Reply {
    send(gw.admin, Req::get(path).bearer(&gw.admin_token()))
        .await
        .expect("admin request")
}

async fn admin_json(gw: &Gateway, path: &str) -> Value {
    let reply = admin_get(gw, path).await;
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    reply.json()
}

/// Waits until the ledger holds `requests` rows (the writer commits within about 200 ms).
async fn wait_for_rows(gw: &Gateway, requests: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let total = admin_json(gw, "/v1/usage?since=1h").await["total"]["requests"].clone();
        if total == requests {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the ledger holds {total}, not {requests}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The scripted burst: 6 gpt-4o by Alice (each after a 429 on the first key), 4 Claude by Bob,
/// 2 by Bob that every provider key refuses (500): 12 requests, 2 errors.
async fn burst(gw: &Gateway, alice: &str, bob: &str) {
    for _ in 0..6 {
        assert_eq!(chat(gw, alice, "gpt-4o", &[]).await.status, 200);
    }
    for _ in 0..4 {
        let reply = chat(gw, bob, "claude-haiku-4-5", &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    for _ in 0..2 {
        let reply = chat(gw, bob, "gpt-4o-mini", &[("x-mock-status", "500")]).await;
        assert!(reply.status >= 500, "{}", reply.text());
    }
}

fn events_of(page: &Value) -> Vec<Value> {
    page["events"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_reports_what_the_ledger_holds() {
    let data = TempDir::new("dash-api");
    let (alice, alice_token) = create_key(&data);
    let (bob, bob_token) = create_key(&data);
    let (_mock, gw) = start(&data, &[]).await;
    burst(&gw, &alice_token, &bob_token).await;
    wait_for_rows(&gw, 12).await;

    // The overview's window, and the ledger's own totals over exactly that window.
    let overview = admin_json(&gw, "/ui/api/overview?range=1h").await;
    let total = &overview["total"];
    assert_eq!(overview["bucket_seconds"], 60);
    assert_eq!(overview["buckets"].as_array().unwrap().len(), 60);
    let ledger = admin_json(
        &gw,
        &format!(
            "/v1/usage?since={}&until={}",
            overview["since"].as_str().unwrap(),
            overview["until"].as_str().unwrap()
        ),
    )
    .await;
    for field in [
        "requests",
        "errors",
        "input_tokens",
        "output_tokens",
        "cost_micros",
    ] {
        assert_eq!(total[field], ledger["total"][field], "{field}");
        let buckets: u64 = overview["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b[field].as_u64().unwrap())
            .sum();
        assert_eq!(Some(buckets), total[field].as_u64(), "{field} per bucket");
    }
    assert_eq!(total["requests"], 12);
    assert_eq!(total["errors"], 2);
    assert!((total["error_rate"].as_f64().unwrap() - 2.0 / 12.0).abs() < 1e-9);
    assert!(total["cost_micros"].as_u64().unwrap() > 0, "{total}");
    for field in [
        "latency_p50_ms",
        "latency_p95_ms",
        "ttft_p50_ms",
        "ttft_p95_ms",
    ] {
        assert!(
            total[field].as_f64().is_some_and(|v| v > 0.0),
            "{field}: {total}"
        );
    }

    // Breakdowns.
    let by_key = admin_json(&gw, "/ui/api/breakdown?by=key&range=24h").await;
    let groups: Vec<(String, u64)> = by_key["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["group"].as_str().unwrap().to_owned(),
                r["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut expected = vec![(alice.clone(), 6), (bob.clone(), 6)];
    expected.sort();
    assert_eq!(groups, expected, "equal counts sort by name");
    assert_eq!(by_key["rows"][0]["series"].as_array().unwrap().len(), 24);
    let by_model = admin_json(&gw, "/ui/api/breakdown?by=provider&range=1h").await;
    assert_eq!(by_model["total"]["requests"], 12);
    let bad = admin_get(&gw, "/ui/api/breakdown?by=day").await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["param"], "by");
    assert_eq!(
        admin_get(&gw, "/ui/api/overview?range=2d").await.status,
        400
    );

    // Logs: filters narrow, pages follow each other.
    let all = admin_json(&gw, "/ui/api/events?limit=5").await;
    assert_eq!(events_of(&all).len(), 5);
    assert_eq!(all["has_more"], true);
    let rest = admin_json(&gw, "/ui/api/events?limit=10&offset=5").await;
    assert_eq!(events_of(&rest).len(), 7);
    assert_eq!(rest["has_more"], false);
    let claude = admin_json(&gw, "/ui/api/events?model=claude-haiku-4-5").await;
    assert_eq!(events_of(&claude).len(), 4);
    let failed = admin_json(&gw, &format!("/ui/api/events?status=5xx&key={bob}")).await;
    assert_eq!(events_of(&failed).len(), 2);
    let mine = admin_json(&gw, &format!("/ui/api/events?key={alice}&since=1h")).await;
    assert_eq!(events_of(&mine).len(), 6);

    // One request's attempts: the 429 on the first key, then the answer; keys redacted.
    let id = events_of(&mine)[0]["id"].as_i64().unwrap();
    let detail = admin_json(&gw, &format!("/ui/api/events/{id}")).await;
    let tried = detail["event"]["tried"].as_array().unwrap().clone();
    assert_eq!(tried.len(), 2, "{detail}");
    assert_eq!(tried[0]["outcome"], "status");
    assert_eq!(tried[0]["status"], 429);
    assert_eq!(tried[0]["error"], "429 Too Many Requests");
    assert_eq!(tried[0]["api_key"], "sk-dash...6789");
    assert_eq!(tried[1]["outcome"], "success");
    assert_eq!(tried[1]["api_key"], "sk-dash...0abc");
    assert_eq!(detail["event"]["status"], 200);
    let failed_detail = admin_json(
        &gw,
        &format!("/ui/api/events/{}", events_of(&failed)[0]["id"]),
    )
    .await;
    assert!(failed_detail["event"]["error"]
        .as_str()
        .unwrap()
        .contains("500"));
    assert!(failed_detail["event"]["tried"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["status"] == 500));
    assert_eq!(admin_get(&gw, "/ui/api/events/999999").await.status, 404);
    // Never a whole provider key, anywhere in what the API shows.
    let everything = admin_get(&gw, "/ui/api/events?limit=100").await.text();
    for key in [LIMITED_KEY, GOOD_KEY, ANTHROPIC_KEY] {
        assert!(!everything.contains(key));
    }
    let ledger_file = std::fs::read(data.path().join("usage.db")).unwrap();
    let ledger_text = String::from_utf8_lossy(&ledger_file);
    for key in [LIMITED_KEY, GOOD_KEY, ANTHROPIC_KEY] {
        assert!(
            !ledger_text.contains(key),
            "a whole provider key in usage.db"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_managed_with_the_cli_rules() {
    let data = TempDir::new("dash-keys");
    let (mock, gw) = start(&data, &[]).await;
    let token = gw.admin_token();
    let post = |body: Value| {
        send(
            gw.admin,
            Req::post("/ui/api/keys", body.to_string()).bearer(&token),
        )
    };
    // Created as the CLI creates keys; the token is in this answer only.
    let created = post(json!({"description": "from the dashboard", "request_limit": "100/min", "daily_spend_limit": "5", "allowed_models": "gpt-4o*"}))
        .await
        .unwrap();
    assert_eq!(created.status, 201, "{}", created.text());
    let created = created.json();
    let id = created["id"].as_str().unwrap().to_owned();
    let key_token = created["token"].as_str().unwrap().to_owned();
    assert!(key_token.starts_with("kg-"));
    assert_eq!(created["limits"]["requests"], "100/min");
    assert_eq!(created["limits"]["daily_spend_usd"], "5.00");
    let cli = api(data.path(), &["ai-gateway-api-keys", "get", &id]);
    assert_eq!(cli["description"], "from the dashboard");

    // The key works at once (the cache sees new keys within 2 s) and its scope holds.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = chat(&gw, &key_token, "gpt-4o", &[]).await;
        if reply.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "{}", reply.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Refused before any attempt: no ledger row.
    assert_eq!(
        chat(&gw, &key_token, "claude-haiku-4-5", &[]).await.status,
        403
    );
    wait_for_rows(&gw, 1).await;

    // The list: budgets from the ledger, never a token.
    let list = admin_json(&gw, "/ui/api/keys").await;
    let text = list.to_string();
    assert!(!text.contains(&key_token));
    let key = &list["keys"][0];
    assert_eq!(key["id"], id.as_str());
    let budgets = key["usage"]["budgets"].as_array().unwrap();
    assert_eq!(budgets[0]["kind"], "requests");
    assert_eq!(budgets[0]["limit"], 100);
    assert_eq!(budgets[0]["used"], 1, "{key}");
    assert_eq!(budgets[1]["kind"], "daily_spend");
    assert_eq!(budgets[1]["limit"], 5_000_000);
    assert_eq!(key["usage"]["today"]["requests"], 1);

    // Bad input gets the CLI's message; unknown fields are refused.
    let bad = post(json!({"token_limit": "lots"})).await.unwrap();
    assert_eq!(bad.status, 400);
    assert!(
        bad.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("--token-limit: invalid rate 'lots'"),
        "{}",
        bad.text()
    );
    assert_eq!(post(json!({"colour": "red"})).await.unwrap().status, 400);

    // Disable, enable, delete.
    let key_path = format!("/ui/api/keys/{id}");
    let patch = |disabled: bool| {
        send(
            gw.admin,
            Req {
                method: "PATCH",
                ..Req::post(&key_path, json!({"disabled": disabled}).to_string())
            }
            .bearer(&token),
        )
    };
    let disabled = patch(true).await.unwrap();
    assert_eq!(disabled.status, 200, "{}", disabled.text());
    assert_eq!(disabled.json()["disabled"], true);
    let deadline = Instant::now() + Duration::from_secs(5);
    while chat(&gw, &key_token, "gpt-4o", &[]).await.status != 401 {
        assert!(Instant::now() < deadline, "a disabled key still works");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(patch(false).await.unwrap().json()["disabled"], false);
    let delete = || {
        send(
            gw.admin,
            Req {
                method: "DELETE",
                ..Req::get(&key_path)
            }
            .bearer(&token),
        )
    };
    assert_eq!(delete().await.unwrap().status, 200);
    assert_eq!(delete().await.unwrap().status, 404);
    assert_eq!(admin_json(&gw, "/ui/api/keys").await["keys"], json!([]));
    drop(mock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_guards_the_api_and_the_usage_endpoints() {
    let data = TempDir::new("dash-auth");
    let (_mock, gw) = start(&data, &[]).await;
    // Made on first start: random, private, printed once on stderr.
    let path = data.path().join("admin-token");
    let token = gw.admin_token();
    assert!(token.starts_with("kgadm-") && token.len() > 40, "{token}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(gw.wait_for_output(&token, Duration::from_secs(2)));
    for path in [
        "/ui/api/session",
        "/ui/api/overview",
        "/ui/api/keys",
        "/ui/api/policy",
        "/v1/usage",
        "/v1/usage/events",
    ] {
        for auth in [None, Some("Bearer kgadm-wrong"), Some("Basic abc")] {
            let mut req = Req::get(path);
            if let Some(auth) = auth {
                req = req.header("authorization", auth);
            }
            let reply = send(gw.admin, req).await.unwrap();
            assert_eq!(reply.status, 401, "{path} {auth:?}");
            assert!(reply.json()["error"]["message"].is_string(), "{path}");
            assert_eq!(
                reply.header("www-authenticate"),
                Some("Bearer realm=\"keygate-admin\"")
            );
        }
        let ok = admin_get(&gw, path).await;
        assert_eq!(ok.status, 200, "{path}: {}", ok.text());
    }
    // A POST without the token never reaches the key store.
    let create = send(gw.admin, Req::post("/ui/api/keys", "{}"))
        .await
        .unwrap();
    assert_eq!(create.status, 401);
    assert_eq!(admin_json(&gw, "/ui/api/keys").await["keys"], json!([]));
    // The pages themselves hold no data and need no token.
    let page = send(gw.admin, Req::get("/ui/")).await.unwrap();
    assert_eq!(page.status, 200);
    assert!(page
        .text()
        .contains("<script type=\"module\" src=\"app.js\">"));
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .contains("default-src 'self'"));
    for asset in ["app.js", "api.js", "pages.js", "charts.js", "style.css"] {
        let reply = send(gw.admin, Req::get(&format!("/ui/{asset}")))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{asset}");
    }
    let redirect = send(gw.admin, Req::get("/ui")).await.unwrap();
    assert_eq!(
        (redirect.status, redirect.header("location")),
        (308, Some("/ui/"))
    );
    assert_eq!(
        send(gw.admin, Req::get("/ui/nope.js"))
            .await
            .unwrap()
            .status,
        404
    );
    assert_eq!(admin_get(&gw, "/ui/api/nope").await.status, 404);
    // Probes and metrics stay open.
    for open in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(send(gw.admin, Req::get(open)).await.unwrap().status, 200);
    }
    drop(gw);

    // A second start keeps the token and does not print it again.
    let (_mock, again) = start(&data, &[]).await;
    assert_eq!(again.admin_token(), token);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!again.output().contains(&token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_turn_the_ui_off_open_the_usage_api_and_move_the_token() {
    // --no-ui: no dashboard; the usage API still asks for the token.
    let data = TempDir::new("dash-flags");
    let (_mock, gw) = start(&data, &["--no-ui"]).await;
    assert_eq!(send(gw.admin, Req::get("/ui/")).await.unwrap().status, 404);
    assert_eq!(admin_get(&gw, "/ui/api/session").await.status, 404);
    assert_eq!(
        send(gw.admin, Req::get("/v1/usage")).await.unwrap().status,
        401
    );
    drop(gw);

    // --open-usage-api: the usage API as before the token.
    let (_mock, gw) = start(&data, &["--open-usage-api"]).await;
    assert_eq!(
        send(gw.admin, Req::get("/v1/usage")).await.unwrap().status,
        200
    );
    assert_eq!(
        send(gw.admin, Req::get("/ui/api/session"))
            .await
            .unwrap()
            .status,
        401
    );
    drop(gw);

    // --admin-token-file: a token of one's own.
    let file = data.path().join("my-token");
    std::fs::write(&file, "kgadm-my-own-token\n").unwrap();
    let file_arg = file.display().to_string();
    let (_mock, gw) = start(&data, &["--admin-token-file", &file_arg]).await;
    let session = send(
        gw.admin,
        Req::get("/ui/api/session").bearer("kgadm-my-own-token"),
    )
    .await
    .unwrap();
    assert_eq!(session.status, 200);
    drop(gw);

    // --admin-token-secret: read through the secret store, so a rotated secret applies.
    let secret_data = TempDir::new("dash-secret");
    seed_secrets(
        secret_data.path(),
        &[("dashboard", "admin-token", "kgadm-from-the-vault")],
    );
    let (_mock, gw) = start(
        &secret_data,
        &["--admin-token-secret", "dashboard/admin-token"],
    )
    .await;
    assert!(!secret_data.path().join("admin-token").exists());
    let with = |token: &'static str| send(gw.admin, Req::get("/ui/api/session").bearer(token));
    assert_eq!(with("kgadm-from-the-vault").await.unwrap().status, 200);
    let secrets = api(secret_data.path(), &["secrets", "list"]);
    let secret_id = secrets["secrets"][0]["id"].as_str().unwrap().to_owned();
    api(
        secret_data.path(),
        &["secrets", "update", &secret_id, "--value", "kgadm-rotated"],
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while with("kgadm-rotated").await.unwrap().status != 200 {
        assert!(Instant::now() < deadline, "the rotated token is not used");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(with("kgadm-from-the-vault").await.unwrap().status, 401);
    drop(gw);

    // A missing secret stops the start with exit status 2.
    let output = std::process::Command::new(common::BIN)
        .args(["serve", "--policy"])
        .arg(secret_data.path().join("none.yml"))
        .args(["--admin-token-secret", "dashboard/missing", "--data-dir"])
        .arg(secret_data.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_page_shows_the_text_and_the_reloads() {
    let data = TempDir::new("dash-policy");
    let (_mock, gw) = start(&data, &[]).await;
    let status = admin_json(&gw, "/ui/api/policy").await;
    assert_eq!(status["text"], policy());
    assert_eq!(status["last_error"], Value::Null);
    assert_eq!(status["reloads"][0]["message"], "loaded at start");
    std::fs::write(
        &gw.policy_path,
        "on_http_request:\n  - actions:\n      - type: nope\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        let status = admin_json(&gw, "/ui/api/policy").await;
        if !status["last_error"].is_null() {
            break status;
        }
        assert!(Instant::now() < deadline, "the failed reload is not shown");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status["reloads"][0]["ok"], false);
    assert!(
        status["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("nope"),
        "{status}"
    );
    assert_eq!(status["text"], policy(), "the serving text is the old one");
    let fixed = format!("{}# fixed\n", policy());
    std::fs::write(&gw.policy_path, &fixed).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = admin_json(&gw, "/ui/api/policy").await;
        if status["text"] == fixed {
            assert_eq!(status["reloads"][0]["ok"], true);
            assert_eq!(status["reloads"][1]["ok"], false);
            assert!(
                !status["last_error"].is_null(),
                "the last error stays shown"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the fixed policy is not shown");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
