//! The dashboard in a real browser: headless Chromium driven over WebDriver (chromedriver on
//! loopback, `webdriver/mod.rs`) against `keygate serve` after a scripted burst of traffic
//! through the gateway in front of the mock provider. Every page loads with no console error;
//! the overview's charts add up to the ledger's totals; a filter narrows the logs, and a row
//! opens its attempts; a key created on the keys page works for a request; the admin token is
//! required (the login page refuses a wrong one, the API answers 401 without it).
//!
//! Screenshots of each page go to `target/dashboard-screenshots/` (kept as test artifacts).
//! Chromium and chromedriver come from `cargo xtask test` (Debian's `chromium` and
//! `chromium-driver`); without them the test says so in one line.

mod common;
mod webdriver;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{api, send, Gateway, Req, TempDir};
use keygate_mock::{MockConfig, MockServer};
use keygate_test_support::{parts, require};
use serde_json::{json, Value};
use webdriver::{Driver, Session};

const LIMITED_KEY: &str = "sk-browser-fail429-limited-0123456789ab";
const GOOD_KEY: &str = "sk-browser-good-openai-9876543210abcdef";
const ANTHROPIC_KEY: &str = "sk-ant-browser-good-55555555555555555";

fn policy() -> String {
    format!(
        "on_http_request:\n  - actions:\n      - type: ai-gateway\n        config:\n          access_keys: required\n          providers:\n            - id: openai\n              api_keys:\n                - value: {LIMITED_KEY}\n                - value: {GOOD_KEY}\n            - id: anthropic\n              api_keys:\n                - value: {ANTHROPIC_KEY}\n"
    )
}

async fn chat(gw: &Gateway, token: &str, model: &str, headers: &[(&'static str, &str)]) -> u16 {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "Hello from the browser test"}]});
    let mut req = Req::post("/v1/chat/completions", body.to_string()).bearer(token);
    for (name, value) in headers {
        req = req.header(name, *value);
    }
    send(gw.addr, req).await.expect("request").status
}

async fn admin_json(gw: &Gateway, path: &str) -> Value {
    let reply = send(gw.admin, Req::get(path).bearer(&gw.admin_token()))
        .await
        .expect("admin request");
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    reply.json()
}

/// Where the screenshots go.
fn screenshots() -> PathBuf {
    let dir = parts::target_dir().join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir
}

/// Console messages at error level, but those the step expects.
fn errors(session: &Session, allowed: &[&str]) -> Vec<String> {
    session
        .console()
        .into_iter()
        .filter(|(level, _)| level == "SEVERE")
        .map(|(_, message)| message)
        .filter(|message| !allowed.iter().any(|a| message.contains(a)))
        .collect()
}

/// Navigates to `#/ROUTE` and waits for the page to render; then checks the console.
fn open(session: &Session, base: &str, route: &str, page: &str) {
    let before = renders(session);
    session.goto(&format!("{base}#/{route}"));
    wait_render(session, before, page);
}

fn renders(session: &Session) -> u64 {
    session
        .run(
            "return Number(document.body.dataset.renders || 0);",
            json!([]),
        )
        .as_u64()
        .unwrap_or(0)
}

/// Waits until a render after `before` finished on `page`.
fn wait_render(session: &Session, before: u64, page: &str) {
    session.wait_for(
        &format!(
            "Number(document.body.dataset.renders || 0) > {before} && document.body.dataset.ready === '{page}'"
        ),
        &format!("the {page} page"),
    );
}

fn number(session: &Session, script: &str) -> u64 {
    let value = session.run(script, json!([]));
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("{script}: {value}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_headless_chromium() {
    let Some(chromium) = require(parts::chromium()) else {
        return;
    };
    let started = Instant::now();
    let data = TempDir::new("dash-browser");
    let alice = api(data.path(), &["ai-gateway-api-keys", "create"]);
    let bob = api(data.path(), &["ai-gateway-api-keys", "create"]);
    let (alice_token, bob_token) = (
        alice["token"].as_str().unwrap().to_owned(),
        bob["token"].as_str().unwrap().to_owned(),
    );
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    let gw = Gateway::start_on_mock(&policy(), &mock.openai_base_url(), data.path(), &[]);
    // The burst: 12 answered, 3 refused by every key (500).
    for _ in 0..8 {
        assert_eq!(chat(&gw, &alice_token, "gpt-4o", &[]).await, 200);
    }
    for _ in 0..4 {
        assert_eq!(chat(&gw, &bob_token, "claude-haiku-4-5", &[]).await, 200);
    }
    for _ in 0..3 {
        let status = chat(&gw, &bob_token, "gpt-4o-mini", &[("x-mock-status", "500")]).await;
        assert!(status >= 500);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while admin_json(&gw, "/v1/usage?since=1h").await["total"]["requests"] != 15 {
        assert!(
            Instant::now() < deadline,
            "the ledger did not get the burst"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let driver = Driver::start(&chromium.driver);
    let session = driver.session(&chromium.browser);
    let shots = screenshots();
    let base = format!("http://{}/ui/", gw.admin);

    // No token yet: the login page, and the API refuses the browser too.
    session.goto(&base);
    session.wait_for(
        "document.querySelector('[data-testid=login]')",
        "the login page",
    );
    session.screenshot(&shots.join("login.png"));
    assert_eq!(errors(&session, &[]), Vec::<String>::new(), "login page");
    let status = session.run_async(
        "const done = arguments[arguments.length - 1];\
         fetch('/ui/api/overview').then((r) => done(r.status), () => done(0));",
        json!([]),
    );
    assert_eq!(status, 401, "the JSON API without the token");
    session.type_into("#token", "kgadm-not-the-token");
    session.click("[data-testid=login] button[type=submit]");
    session.wait_for(
        "document.querySelector('[data-testid=login-status]').textContent.includes('refused')",
        "the refusal",
    );
    // The refused attempts are the only errors: two 401s (the fetch above and the login).
    let refused = errors(&session, &["401"]);
    assert_eq!(refused, Vec::<String>::new());

    // Sign in: the overview.
    let before = renders(&session);
    session.type_into("#token", &gw.admin_token());
    session.click("[data-testid=login] button[type=submit]");
    wait_render(&session, before, "overview");
    open(&session, &base, "overview?range=1h", "overview");
    session.screenshot(&shots.join("overview.png"));
    assert_eq!(errors(&session, &[]), Vec::<String>::new(), "overview");
    // The charts' series add up to the ledger's totals over the same window.
    let window = session.run(
        "const w = document.querySelector('[data-testid=window]'); return [w.dataset.since, w.dataset.until];",
        json!([]),
    );
    let ledger = admin_json(
        &gw,
        &format!(
            "/v1/usage?since={}&until={}",
            window[0].as_str().unwrap(),
            window[1].as_str().unwrap()
        ),
    )
    .await;
    let total = &ledger["total"];
    assert_eq!(total["requests"], 15);
    let chart = |attr: &str, testid: &str| {
        number(
            &session,
            &format!("return document.querySelector('figure:has([data-testid={testid}])').dataset.{attr};"),
        )
    };
    assert_eq!(
        json!(chart("totalRequests", "chart-requests")),
        total["requests"]
    );
    assert_eq!(
        json!(chart("totalErrors", "chart-requests")),
        total["errors"]
    );
    assert_eq!(
        json!(chart("totalInput", "chart-tokens")),
        total["input_tokens"]
    );
    assert_eq!(
        json!(chart("totalOutput", "chart-tokens")),
        total["output_tokens"]
    );
    assert_eq!(
        json!(chart("totalMicros", "chart-cost")),
        total["cost_micros"]
    );
    let tile = number(
        &session,
        "return document.querySelector('[data-stat=requests] .tile-value').dataset.value;",
    );
    assert_eq!(json!(tile), total["requests"]);
    let lines = number(
        &session,
        "return document.querySelectorAll('[data-testid=chart-requests] polyline').length;",
    );
    assert!(lines >= 1, "the requests chart draws its series");
    // Every range renders.
    for range in ["24h", "7d", "30d"] {
        let before = renders(&session);
        session.click(&format!("[data-range='{range}']"));
        wait_render(&session, before, "overview");
        assert_eq!(
            errors(&session, &[]),
            Vec::<String>::new(),
            "overview {range}"
        );
    }

    // Breakdowns: a row per key, sortable.
    open(&session, &base, "breakdowns?by=key&range=24h", "breakdowns");
    let rows = number(
        &session,
        "return document.querySelectorAll('[data-testid=breakdown] tbody tr').length;",
    );
    assert_eq!(rows, 2);
    session.click("[data-testid=breakdown] th[data-column=requests] button");
    let sorted = session.run(
        "return document.querySelector('[data-testid=breakdown] th[data-column=requests]').getAttribute('aria-sort');",
        json!([]),
    );
    assert_eq!(sorted, "ascending");
    let first = session.run(
        "return document.querySelector('[data-testid=breakdown] tbody tr').dataset.group;",
        json!([]),
    );
    assert_eq!(first, bob["id"], "fewest requests first: Bob's 7");
    assert!(
        number(
            &session,
            "return document.querySelectorAll('svg.spark').length;"
        ) == 2,
        "a sparkline per row"
    );
    session.screenshot(&shots.join("breakdowns.png"));
    for by in ["model", "provider"] {
        open(
            &session,
            &base,
            &format!("breakdowns?by={by}&range=1h"),
            "breakdowns",
        );
    }
    assert_eq!(errors(&session, &[]), Vec::<String>::new(), "breakdowns");

    // Logs: every request, then a filter narrows them; a row opens its attempts.
    open(&session, &base, "logs", "logs");
    let count = "Number(document.querySelector('[data-testid=logs]').dataset.count)";
    assert_eq!(number(&session, &format!("return {count};")), 15);
    let before = renders(&session);
    session.type_into(
        "[data-testid=filters] input[name=model]",
        "claude-haiku-4-5",
    );
    session.click("[data-testid=filters] button[type=submit]");
    wait_render(&session, before, "logs");
    assert_eq!(number(&session, &format!("return {count};")), 4);
    let before = renders(&session);
    session.type_into("[data-testid=filters] input[name=model]", "");
    session.run(
        "const s = document.querySelector('[data-testid=filters] select[name=status]'); s.value = '5xx';",
        json!([]),
    );
    session.click("[data-testid=filters] button[type=submit]");
    wait_render(&session, before, "logs");
    assert_eq!(number(&session, &format!("return {count};")), 3);
    // Alice's requests: a 429 on the first key, then the answer.
    let before = renders(&session);
    session.goto(&format!(
        "{base}#/logs?key={}",
        alice["id"].as_str().unwrap()
    ));
    wait_render(&session, before, "logs");
    assert_eq!(number(&session, &format!("return {count};")), 8);
    session.click("[data-testid=logs] tbody tr");
    session.wait_for(
        "document.querySelectorAll('[data-testid=attempts] tbody tr').length === 2",
        "the attempts",
    );
    let outcomes = session.run(
        "return [...document.querySelectorAll('[data-testid=attempts] tbody tr')].map((r) => r.dataset.outcome);",
        json!([]),
    );
    assert_eq!(outcomes, json!(["status", "success"]));
    let page_text = session
        .run("return document.body.innerText;", json!([]))
        .to_string();
    assert!(page_text.contains("429"), "why the first attempt failed");
    for key in [LIMITED_KEY, GOOD_KEY] {
        assert!(!page_text.contains(key), "a whole provider key on the page");
    }
    session.screenshot(&shots.join("logs.png"));
    assert_eq!(errors(&session, &[]), Vec::<String>::new(), "logs");

    // Keys: create one; its token (shown once) works for a request.
    open(&session, &base, "keys", "keys");
    assert_eq!(
        number(
            &session,
            "return document.querySelectorAll('[data-testid=keys] tbody tr').length;"
        ),
        2
    );
    session.type_into(
        "[data-testid=new-key] input[name=description]",
        "made in the browser",
    );
    session.type_into(
        "[data-testid=new-key] input[name=request_limit]",
        "1000/min",
    );
    session.click("[data-testid=new-key] button[type=submit]");
    session.wait_for(
        "document.querySelector('[data-testid=new-token]')",
        "the new token",
    );
    let token = session
        .run(
            "return document.querySelector('[data-testid=new-token]').textContent;",
            json!([]),
        )
        .as_str()
        .unwrap()
        .to_owned();
    assert!(token.starts_with("kg-"), "{token}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while chat(&gw, &token, "gpt-4o", &[]).await != 200 {
        assert!(
            Instant::now() < deadline,
            "the key made in the browser does not work"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        number(
            &session,
            "return document.querySelectorAll('[data-testid=keys] tbody tr').length;"
        ),
        3
    );
    assert_eq!(
        number(&session, "return document.querySelectorAll('[data-testid=keys] .budget[data-kind=requests]').length;"),
        1,
        "the new key's request budget bar"
    );
    session.screenshot(&shots.join("keys.png"));
    // Disable it from the page: the gateway refuses its token.
    session.click("[data-testid=keys] tr:has(.budget) button[data-action=disable]");
    session.wait_for(
        "document.querySelector('[data-testid=keys] tr[data-disabled=true]')",
        "the disabled key",
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while chat(&gw, &token, "gpt-4o", &[]).await != 401 {
        assert!(Instant::now() < deadline, "the disabled key still works");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(errors(&session, &[]), Vec::<String>::new(), "keys");

    // Policy: the serving text and the reloads.
    open(&session, &base, "policy", "policy");
    let text = session.run(
        "return document.querySelector('[data-testid=policy-text]').textContent;",
        json!([]),
    );
    assert_eq!(text, policy());
    session.screenshot(&shots.join("policy.png"));
    assert_eq!(errors(&session, &[]), Vec::<String>::new(), "policy");

    // Signing out forgets the token.
    session.click("#logout");
    session.wait_for(
        "document.querySelector('[data-testid=login]')",
        "the login page",
    );
    let stored = session.run(
        "return sessionStorage.getItem('keygate-admin-token');",
        json!([]),
    );
    assert_eq!(stored, Value::Null);
    drop(session);
    drop(driver);
    drop(mock);
    eprintln!(
        "dashboard browser test: {:.1} s, screenshots in {}",
        started.elapsed().as_secs_f64(),
        shots.display()
    );
}
