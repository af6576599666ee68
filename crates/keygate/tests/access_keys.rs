//! Access keys through the real binary: keys made with `keygate api ai-gateway-api-keys`, an
//! `ai-gateway` with `access_keys: required` and no auth rule of its own, the mock provider
//! behind it. The key authorizes, never reaches the provider, is refused in the client's SDK
//! shape once unknown, disabled, deleted or expired (on the running gateway), and rules see it.

mod common;

use std::time::{Duration, Instant};

use common::{api, send, Gateway, Req, TempDir};
use keygate_mock::{MockConfig, MockServer};
use serde_json::json;

const SERVER_KEY: &str = "sk-server-key-for-access-key-tests";

/// `rules` (YAML list items, indented two spaces) before an ai-gateway with `access_keys: MODE`.
fn policy(mode: &str, rules: &str) -> String {
    format!(
        "on_http_request:\n{rules}  - actions:\n      - type: ai-gateway\n        config:\n          access_keys: {mode}\n          providers:\n            - id: openai\n              api_keys:\n                - value: {SERVER_KEY}\n"
    )
}

fn start(mock: &MockServer, data: &TempDir, policy: &str) -> Gateway {
    Gateway::start_on_mock(policy, &mock.openai_base_url(), data.path(), &[])
}

/// Creates an access key; returns (id, token).
fn create_key(data: &TempDir, extra: &[&str]) -> (String, String) {
    let mut args = vec!["ai-gateway-api-keys", "create"];
    args.extend_from_slice(extra);
    let key = api(data.path(), &args);
    (
        key["id"].as_str().unwrap().to_owned(),
        key["token"].as_str().unwrap().to_owned(),
    )
}

fn chat() -> String {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).to_string()
}

async fn chat_with(gw: &Gateway, token: &str) -> common::Reply {
    send(
        gw.addr,
        Req::post("/v1/chat/completions", chat()).bearer(token),
    )
    .await
    .unwrap()
}

/// Polls until a chat with `token` answers `status` (the key cache refreshes in the background).
async fn wait_for_status(gw: &Gateway, token: &str, status: u16) -> common::Reply {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let reply = chat_with(gw, token).await;
        if reply.status == status || Instant::now() > deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_refused_openai(reply: &common::Reply, message: &str) {
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert!(reply.header("www-authenticate").is_some());
    let body = reply.json();
    assert_eq!(body["error"]["code"], "ERR_KEYGATE_27007");
    assert_eq!(body["error"]["type"], "authentication_error");
    assert_eq!(body["error"]["message"], message);
}

#[tokio::test]
async fn a_key_authorizes_without_a_rule_and_never_reaches_the_provider() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let data = TempDir::new("ak-data");
    let (id, token) = create_key(&data, &["--description", "ci"]);
    let gw = start(&mock, &data, &policy("required", ""));

    let reply = chat_with(&gw, &token).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["choices"][0]["message"]["content"], "hi");
    // Older Anthropic SDKs send x-api-key: the same key works there, on every surface.
    let reply = send(
        gw.addr,
        Req::post("/v1/chat/completions", chat()).header("x-api-key", token.clone()),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());

    let seen = mock.requests();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {SERVER_KEY}").as_str())
        );
        assert_eq!(request.header("x-api-key"), None);
        let headers = format!("{:?}", request.headers);
        assert!(!headers.contains(&token), "the access key went upstream");
    }
    assert!(gw.wait_for_output(&format!("\"access_key\":\"{id}\""), Duration::from_secs(2)));
    assert!(!gw.output().contains(&token), "the token reached the log");
}

#[tokio::test]
async fn missing_unknown_and_revoked_keys_are_refused_in_the_clients_shape() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let data = TempDir::new("ak-data");
    let (id, token) = create_key(&data, &[]);
    let gw = start(&mock, &data, &policy("required", ""));

    let reply = send(gw.addr, Req::post("/v1/chat/completions", chat()))
        .await
        .unwrap();
    assert_refused_openai(
        &reply,
        "an access key is required: send it as 'Authorization: Bearer kg-...' or 'x-api-key: kg-...'",
    );
    // A provider key is not an access key: still refused, never passed through.
    assert_refused_openai(&chat_with(&gw, "sk-some-provider-key").await, "an access key is required: send it as 'Authorization: Bearer kg-...' or 'x-api-key: kg-...'");
    let unknown = format!("kg-{}", "A".repeat(54));
    assert_refused_openai(
        &chat_with(&gw, &unknown).await,
        "unknown or deleted access key",
    );
    // Anthropic's error shape on /v1/messages.
    let reply = send(
        gw.addr,
        Req::post("/v1/messages", "{}").header("x-api-key", unknown.clone()),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json()["type"], "error");
    assert_eq!(reply.json()["error"]["type"], "authentication_error");

    // Revocation on the running gateway: disabled, enabled again, deleted.
    assert_eq!(chat_with(&gw, &token).await.status, 200);
    api(
        data.path(),
        &["ai-gateway-api-keys", "update", &id, "--disabled", "true"],
    );
    assert_refused_openai(
        &wait_for_status(&gw, &token, 401).await,
        "disabled access key",
    );
    api(
        data.path(),
        &["ai-gateway-api-keys", "update", &id, "--disabled", "false"],
    );
    assert_eq!(wait_for_status(&gw, &token, 200).await.status, 200);
    api(data.path(), &["ai-gateway-api-keys", "delete", &id]);
    assert_refused_openai(
        &wait_for_status(&gw, &token, 401).await,
        "unknown or deleted access key",
    );
    // Only requests the key authorized went upstream, each with the server's key.
    let server = format!("Bearer {SERVER_KEY}");
    assert!(mock
        .requests()
        .iter()
        .all(|r| r.header("authorization") == Some(server.as_str())));
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let data = TempDir::new("ak-data");
    let (_, token) = create_key(&data, &["--expires-in", "2s"]);
    let gw = start(&mock, &data, &policy("required", ""));
    assert_eq!(chat_with(&gw, &token).await.status, 200);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_refused_openai(&chat_with(&gw, &token).await, "expired access key");
}

#[tokio::test]
async fn rules_see_the_key_rate_limit_by_it_and_branch_on_its_metadata() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let data = TempDir::new("ak-data");
    let (_, alpha) = create_key(&data, &["--metadata", r#"{"team": "alpha"}"#]);
    let (_, beta) = create_key(&data, &["--metadata", r#"{"team": "beta"}"#]);
    let rules = r#"  - expressions:
      - access_key.metadata.team == 'beta'
    actions:
      - type: custom-response
        config:
          status_code: 403
          body: 'team ${access_key.metadata.team} has no access'
  - actions:
      - type: rate-limit
        config:
          name: per-key
          algorithm: sliding_window
          capacity: 2
          rate: 60s
          bucket_key:
            - access_key.id
"#;
    let gw = start(&mock, &data, &policy("required", rules));
    let reply = chat_with(&gw, &beta).await;
    assert_eq!(
        (reply.status, reply.text()),
        (403, "team beta has no access".to_owned())
    );
    for _ in 0..2 {
        assert_eq!(chat_with(&gw, &alpha).await.status, 200);
    }
    assert_eq!(
        chat_with(&gw, &alpha).await.status,
        429,
        "the bucket is the key"
    );
}

#[tokio::test]
async fn optional_mode_checks_keys_and_leaves_other_requests_to_the_rules() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let data = TempDir::new("ak-data");
    let (_, token) = create_key(&data, &[]);
    // Without a key, only the rule's own token gets through.
    let rules = r#"  - expressions:
      - access_key == null && req.headers['authorization'][0] != 'Bearer team-token'
    actions:
      - type: custom-response
        config:
          status_code: 401
          body: 'no'
"#;
    let gw = start(&mock, &data, &policy("optional", rules));
    assert_eq!(chat_with(&gw, &token).await.status, 200);
    assert_eq!(chat_with(&gw, "team-token").await.status, 200);
    assert_eq!(chat_with(&gw, "other").await.status, 401);
    let unknown = format!("kg-{}", "B".repeat(54));
    assert_refused_openai(
        &chat_with(&gw, &unknown).await,
        "unknown or deleted access key",
    );
    let server = format!("Bearer {SERVER_KEY}");
    let seen: Vec<Option<String>> = mock
        .requests()
        .iter()
        .map(|r| r.header("authorization").map(str::to_owned))
        .collect();
    assert_eq!(seen, vec![Some(server.clone()), Some(server)]);
}

#[tokio::test]
async fn attached_provider_keys_replace_the_policys_for_their_provider_newest_first() {
    // The mock fails a key holding `fail429`, so failover from the newest key is visible.
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let data = TempDir::new("ak-data");
    let (with_keys, token) = create_key(&data, &[]);
    let (_, plain) = create_key(&data, &[]);
    for value in ["sk-attached-older", "sk-attached-newer-fail429"] {
        api(
            data.path(),
            &[
                "ai-gateway-provider-keys",
                "create",
                "--ai-gateway-api-key-id",
                &with_keys,
                "--provider-id",
                "openai",
                "--value",
                value,
            ],
        );
        // Creation times are in whole seconds: keep "newest" unambiguous.
        std::thread::sleep(Duration::from_millis(1_100));
    }
    let gw = start(&mock, &data, &policy("required", ""));

    assert_eq!(chat_with(&gw, &token).await.status, 200);
    let tried: Vec<Option<String>> = mock
        .requests()
        .iter()
        .map(|r| r.header("authorization").map(str::to_owned))
        .collect();
    assert_eq!(
        tried,
        [
            Some("Bearer sk-attached-newer-fail429".to_owned()),
            Some("Bearer sk-attached-older".to_owned())
        ],
        "attached keys, newest first, and never the policy's"
    );
    mock.clear_requests();
    // A key without attached keys uses the policy's.
    assert_eq!(chat_with(&gw, &plain).await.status, 200);
    assert_eq!(
        mock.requests()[0].header("authorization"),
        Some(format!("Bearer {SERVER_KEY}").as_str())
    );
    assert!(
        !gw.output().contains("sk-attached"),
        "a provider key reached the log"
    );
}

/// An ai-gateway with `access_keys: required` serving both openai and anthropic with server keys.
fn two_provider_policy() -> String {
    format!(
        "on_http_request:\n  - actions:\n      - type: ai-gateway\n        config:\n          access_keys: required\n          providers:\n            - id: openai\n              api_keys:\n                - value: {SERVER_KEY}\n            - id: anthropic\n              api_keys:\n                - value: {SERVER_KEY}\n"
    )
}

async fn chat_model(gw: &Gateway, token: &str, model: &str) -> common::Reply {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    send(
        gw.addr,
        Req::post("/v1/chat/completions", body.to_string()).bearer(token),
    )
    .await
    .unwrap()
}

/// The ids `GET /v1/models` lists for `token`.
async fn listed_models(gw: &Gateway, token: &str) -> Vec<String> {
    let reply = send(gw.addr, Req::get("/v1/models").bearer(token))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn scopes_limit_the_models_a_key_may_use() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let data = TempDir::new("ak-scopes");
    let (gpt_id, gpt) = create_key(&data, &["--allowed-models", "gpt-4o*"]);
    let (_, claude_only) = create_key(&data, &["--allowed-providers", "anthropic"]);
    let (_, open) = create_key(&data, &[]);
    let gw = start(&mock, &data, &two_provider_policy());

    assert_eq!(chat_model(&gw, &gpt, "gpt-4o").await.status, 200);
    let reply = chat_model(&gw, &gpt, "gpt-4.1").await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["error"]["code"], "ERR_KEYGATE_27008");
    assert_eq!(body["error"]["type"], "permission_error");
    assert_eq!(
        body["error"]["message"],
        format!("access key {gpt_id} is not allowed to use model gpt-4.1")
    );
    assert!(!reply.text().contains(&gpt), "the token reached the answer");
    // Anthropic's shape on /v1/messages.
    let claude = json!({"model": "claude-sonnet-4", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});
    let reply = send(
        gw.addr,
        Req::post("/v1/messages", claude.to_string()).header("x-api-key", gpt.clone()),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert_eq!(reply.json()["type"], "error");
    assert_eq!(reply.json()["error"]["type"], "permission_error");
    let listed = listed_models(&gw, &gpt).await;
    assert!(
        !listed.is_empty() && listed.iter().all(|m| m.starts_with("gpt-4o")),
        "{listed:?}"
    );

    assert_eq!(chat_model(&gw, &claude_only, "gpt-4o").await.status, 403);
    let reply = send(
        gw.addr,
        Req::post("/v1/messages", claude.to_string()).header("x-api-key", claude_only.clone()),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(!listed_models(&gw, &claude_only)
        .await
        .iter()
        .any(|m| m.starts_with("gpt")));

    assert_eq!(chat_model(&gw, &open, "gpt-4.1").await.status, 200);
    let everything = listed_models(&gw, &open).await;
    assert!(everything.len() > listed.len() && everything.iter().any(|m| m.starts_with("claude")));
}

#[tokio::test]
async fn rules_see_the_keys_scopes() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let data = TempDir::new("ak-scopes-cel");
    let (_, scoped) = create_key(&data, &["--allowed-models", "gpt-4o*,o1"]);
    let (_, open) = create_key(&data, &[]);
    let rules = r#"  - expressions:
      - "'o1' in access_key.allowed_models && size(access_key.allowed_providers) == 0"
    actions:
      - type: custom-response
        config:
          status_code: 418
          body: scoped
"#;
    let gw = start(&mock, &data, &policy("required", rules));
    let reply = chat_with(&gw, &scoped).await;
    assert_eq!((reply.status, reply.text()), (418, "scoped".to_owned()));
    assert_eq!(chat_with(&gw, &open).await.status, 200);
}
