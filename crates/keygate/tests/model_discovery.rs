//! End to end: model discovery through the real binary. A custom provider without `models`
//! points at `keygate-mock`, whose model list the tests set (`MockConfig::with_models`,
//! `MockServer::set_models`): bare names and `provider:model` resolve to the listed models,
//! `GET /v1/models` lists them, list changes are picked up, a server down at start is picked up
//! when it comes up (one warning, however many failures), a reload stops the old policy's list
//! requests, and `keygate policy check` fetches nothing.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{free_port, seed_secrets, send, Gateway, Options, Reply, Req, TempDir, BIN};
use keygate_mock::{MockConfig, MockServer};
use serde_json::{json, Value};

/// The self-hosted server's key (a canary: never in a response or a log line).
const SERVER_KEY: &str = "sk-canary-llamacpp-5f4dcc3b5aa765d61d83";

/// A policy with one `ai-gateway` action and `config` (YAML, indented under `config:`).
fn policy(config: &str) -> String {
    let config: String = config.lines().map(|l| format!("          {l}\n")).collect();
    format!("on_http_request:\n  - actions:\n      - type: ai-gateway\n        config:\n{config}")
}

/// The `llamacpp` provider at `base_url`, keyed with the vault secret, listing every second.
fn llamacpp(base_url: &str, extra: &str) -> String {
    format!(
        "providers:
  - id: llamacpp
    base_url: {base_url}
    api_keys:
      - value: ${{secrets.get('llamacpp', 'key')}}
    model_discovery: {{interval: 1s, timeout: 2s}}
{extra}"
    )
}

fn start(config: &str, data: &TempDir) -> Gateway {
    Gateway::start_with(
        &policy(config),
        Options {
            data_dir: Some(data.path()),
            ..Options::default()
        },
    )
}

fn seeded(label: &str) -> TempDir {
    let data = TempDir::new(label);
    seed_secrets(data.path(), &[("llamacpp", "key", SERVER_KEY)]);
    data
}

async fn chat(gw: &Gateway, model: &str) -> Reply {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "hi discovery"}]});
    let reply = send(gw.addr, Req::post("/v1/chat/completions", body.to_string()))
        .await
        .expect("request");
    assert!(
        !reply.text().contains(SERVER_KEY),
        "key leaked: {}",
        reply.text()
    );
    reply
}

async fn listed(gw: &Gateway) -> Vec<(String, String)> {
    let reply = send(gw.addr, Req::get("/v1/models"))
        .await
        .expect("request");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap_or_default().to_owned(),
                m["owned_by"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn code(reply: &Reply) -> String {
    reply.json()["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Sends `chat(model)` until it is answered 200 (or `within` passes); returns how long it took.
async fn until_served(gw: &Gateway, model: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let reply = chat(gw, model).await;
        if reply.status == 200 {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "'{model}' not served within {within:?}: {} {}\n{}",
            reply.status,
            reply.text(),
            gw.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn list_requests(mock: &MockServer) -> usize {
    mock.requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/v1/models")
        .count()
}

fn log_lines(gw: &Gateway, message: &str) -> Vec<Value> {
    gw.output()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == message)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_models_resolve_list_and_follow_changes() {
    let mock = MockServer::start(MockConfig::default().with_models(["smollm2"]))
        .await
        .expect("mock starts");
    let data = seeded("discovery-main");
    let gw = start(&llamacpp(&mock.openai_base_url(), ""), &data);

    // The first request right after start waits for the first list: no retry needed.
    let reply = chat(&gw, "smollm2").await;
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), gw.output());
    assert_eq!(reply.header("x-keygate-provider"), Some("llamacpp"));
    assert_eq!(reply.header("x-keygate-model"), Some("smollm2"));
    let forwarded = mock
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .expect("the chat reached the server");
    assert_eq!(forwarded.path, "/v1/chat/completions");
    assert_eq!(forwarded.body_json().unwrap()["model"], "smollm2");
    let reply = chat(&gw, "llamacpp:smollm2").await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // The list request: `GET {base_url}/models` with the provider's key as Bearer.
    let list_request = mock
        .requests()
        .into_iter()
        .find(|r| r.method == "GET")
        .expect("a list request");
    assert_eq!(list_request.path, "/v1/models");
    assert_eq!(
        list_request.header("authorization"),
        Some(format!("Bearer {SERVER_KEY}").as_str())
    );

    let models = listed(&gw).await;
    assert!(
        models.contains(&("smollm2".into(), "llamacpp".into())),
        "{models:?}"
    );
    // Server keys: built-ins that need a key and have none are not listed.
    assert!(!models.iter().any(|(id, _)| id == "gpt-4o"), "{models:?}");

    // Unknown to the server: refused as before.
    let unknown = chat(&gw, "qwen2.5").await;
    assert_eq!(unknown.status, 422);
    assert_eq!(code(&unknown), "ERR_KEYGATE_3804");

    // The server's list changes: picked up within the interval (1 s) plus a list request.
    mock.set_models(["smollm2", "qwen2.5"]);
    let took = until_served(&gw, "qwen2.5", Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let models = listed(&gw).await;
    assert!(
        models.contains(&("qwen2.5".into(), "llamacpp".into())),
        "{models:?}"
    );
    mock.set_models(["qwen2.5"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while chat(&gw, "smollm2").await.status == 200 {
        assert!(Instant::now() < deadline, "a dropped model stays served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let changes = log_lines(&gw, "discovered models changed");
    assert!(changes.len() >= 3, "{}", gw.output());
    assert_eq!(changes[0]["provider"], "llamacpp");
    assert!(!gw.output().contains(SERVER_KEY), "key in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_down_at_start_is_picked_up_when_it_comes_up() {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let data = seeded("discovery-down");
    let gw = start(&llamacpp(&format!("http://{addr}/v1"), ""), &data);
    assert!(
        gw.wait_for_output("model discovery failed", Duration::from_secs(5)),
        "no warning:\n{}",
        gw.output()
    );
    let reply = chat(&gw, "smollm2").await;
    assert_eq!(code(&reply), "ERR_KEYGATE_3804", "{}", reply.text());
    // Let a few more lists fail: still one warning.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let mock = MockServer::start(
        MockConfig::default()
            .with_listen(addr)
            .with_models(["smollm2"]),
    )
    .await
    .expect("mock starts on the provider's port");
    let took = until_served(&gw, "smollm2", Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(list_requests(&mock) >= 1);
    let warnings = log_lines(
        &gw,
        "model discovery failed; keeping the last good model list and retrying",
    );
    assert_eq!(warnings.len(), 1, "rate-limited:\n{}", gw.output());
    assert_eq!(warnings[0]["level"], "WARN");
    assert_eq!(warnings[0]["provider"], "llamacpp");
    assert!(
        gw.wait_for_output("model discovery recovered", Duration::from_secs(2)),
        "{}",
        gw.output()
    );
    assert!(!gw.output().contains(SERVER_KEY), "key in the log");
}

/// Passthrough mode (no server keys) with only the custom provider allowed: `GET /v1/models`
/// lists the server's models and nothing from the catalog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_configured_providers_list_just_the_discovered_models() {
    let mock = MockServer::start(MockConfig::default().with_models(["smollm2", "phi3"]))
        .await
        .expect("mock starts");
    let data = TempDir::new("discovery-passthrough");
    let config = format!(
        "only_allow_configured_providers: true
providers:
  - id: llamacpp
    base_url: {}",
        mock.openai_base_url()
    );
    let gw = start(&config, &data);
    assert_eq!(
        listed(&gw).await,
        [
            ("smollm2".to_owned(), "llamacpp".to_owned()),
            ("phi3".to_owned(), "llamacpp".to_owned())
        ]
    );
    // No key: the list request went without one.
    let list_request = mock.requests().into_iter().next().expect("a list request");
    assert_eq!(list_request.header("authorization"), None);
    assert_eq!(chat(&gw, "phi3").await.status, 200);
    assert_eq!(code(&chat(&gw, "gpt-4o").await), "ERR_KEYGATE_3804");
}

/// A reload replaces the policy: the old one's list requests stop (here the new policy turns
/// discovery off, so none come at all), and a policy turning it back on starts from the last
/// good list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_stop_the_old_lists_and_keep_the_last_good_one() {
    let mock = MockServer::start(MockConfig::default().with_models(["smollm2"]))
        .await
        .expect("mock starts");
    let data = seeded("discovery-reload");
    let on = llamacpp(&mock.openai_base_url(), "");
    let gw = start(&on, &data);
    until_served(&gw, "smollm2", Duration::from_secs(5)).await;

    let off = format!(
        "providers:
  - id: llamacpp
    base_url: {}
    model_discovery: {{enabled: false}}
    models: [{{id: fixed}}]",
        mock.openai_base_url()
    );
    std::fs::write(&gw.policy_path, policy(&off)).unwrap();
    gw.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while chat(&gw, "smollm2").await.status == 200 {
        assert!(Instant::now() < deadline, "the reload did not take effect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = list_requests(&mock);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        list_requests(&mock),
        before,
        "the replaced policy still lists models"
    );

    // Back on while the server lists nothing new: the last good list serves at once.
    std::fs::write(&gw.policy_path, policy(&on)).unwrap();
    gw.signal("HUP");
    let took = until_served(&gw, "smollm2", Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

/// `keygate policy check` validates the settings without asking the server anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_check_fetches_nothing() {
    let mock = MockServer::start(MockConfig::default().with_models(["smollm2"]))
        .await
        .expect("mock starts");
    let dir = TempDir::new("discovery-check");
    let check = |config: &str| {
        let path = dir.path().join("policy.yml");
        std::fs::write(&path, policy(config)).unwrap();
        let output = std::process::Command::new(BIN)
            .args(["policy", "check"])
            .arg(&path)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let good = format!(
        "only_allow_configured_providers: true\nproviders:\n  - id: llamacpp\n    base_url: {}",
        mock.openai_base_url()
    );
    assert_eq!(check(&good), (Some(0), String::new()));
    let bad = format!(
        "providers:\n  - id: llamacpp\n    base_url: {}\n    model_discovery: {{interval: 10ms}}",
        mock.openai_base_url()
    );
    let (code, stderr) = check(&bad);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("providers[0].model_discovery.interval"),
        "{stderr}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(mock.requests().is_empty(), "policy check asked the server");
}
