//! In-process tests of the action: configuration validation, the mock provider, every
//! pre-flight error, strategies, and failover against a scripted loopback upstream.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use keygate_cel::{to_json, Compiler, MemorySecrets};
use serde_json::{json, Value};

use crate::build::Deps;
use crate::engine::Outcome;
use crate::exchange::Exchange;
use crate::policy::Policy;

const KEY_OK: &str = "sk-good-0123456789abcdefghijklmnop";
const KEY_429: &str = "sk-rate-0123456789abcdefghijklmnop";
const KEY_500: &str = "sk-down-0123456789abcdefghijklmnop";
const CLIENT_TOKEN: &str = "kg-client-token-0123456789abcdef";

fn secrets() -> Arc<MemorySecrets> {
    let mut secrets = MemorySecrets::default();
    secrets.insert("llm", "ok", KEY_OK);
    secrets.insert("llm", "limited", KEY_429);
    secrets.insert("llm", "down", KEY_500);
    Arc::new(secrets)
}

fn deps(urls: &[(&str, String)]) -> Deps {
    Deps {
        provider_urls: Arc::new(
            urls.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<HashMap<_, _>>(),
        ),
        ..Deps::offline(secrets())
    }
}

/// A policy sending `openai` requests to `upstream` with the vault key `llm/ok`.
fn openai_with_vault_key(upstream: &Upstream) -> Policy {
    let config =
        "providers:\n  - id: openai\n    api_keys:\n      - value: ${secrets.get('llm', 'ok')}";
    compile_with(config, &[("openai", upstream.base())]).unwrap()
}

fn compile_with(config: &str, urls: &[(&str, String)]) -> Result<Policy, String> {
    let config: String = config.lines().map(|l| format!("          {l}\n")).collect();
    // The response rule reads the results, as a user's log or debug rule would: the action only
    // builds `actions.ngrok.ai_gateway` when something in the policy can read it.
    let text = format!(
        "on_http_request:\n  - actions:\n      - type: ai-gateway\n        config:\n{config}{READS_RESULTS}"
    );
    Policy::compile("t.yml", &text, &Compiler::new(), &deps(urls)).map_err(|e| {
        e.diagnostics
            .iter()
            .map(|d| format!("{}: {}", d.path, d.message))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

const READS_RESULTS: &str = "on_http_response:
  - expressions:
      - \"'ai_gateway' in actions.ngrok && actions.ngrok.ai_gateway.status == 'unused'\"
    actions:
      - type: add-headers
        config: {headers: {x-unused: '1'}}
";

#[tokio::test]
async fn results_are_built_only_when_the_policy_reads_them() {
    let text = "on_http_request:\n  - actions:\n      - type: ai-gateway\n        config: {}\n";
    let policy = Policy::compile("t.yml", text, &Compiler::new(), &deps(&[])).unwrap();
    let mut ex = exchange("POST", "/v1/chat/completions", &chat("mock-echo"), &[]);
    assert!(matches!(
        policy.on_http_request(&mut ex).await,
        Outcome::Respond(_)
    ));
    assert!(ex.results.get("ai_gateway").is_none());
    assert_eq!(
        ex.log.ai.as_ref().map(|ai| ai.provider.as_str()),
        Some("mock")
    );

    let policy = compile("{}");
    let mut ex = exchange("POST", "/v1/chat/completions", &chat("mock-echo"), &[]);
    assert!(matches!(
        policy.on_http_request(&mut ex).await,
        Outcome::Respond(_)
    ));
    assert!(ex.results.get("ai_gateway").is_some());
}

fn compile(config: &str) -> Policy {
    compile_with(config, &[]).unwrap_or_else(|e| panic!("policy rejected: {e}"))
}

fn exchange(method: &str, path: &str, body: &Value, headers: &[(&str, &str)]) -> Exchange {
    let mut request = http::Request::builder().method(method).uri(path);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let (request, ()) = request.body(()).unwrap().into_parts();
    let body = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    Exchange::for_test(request, body, 1 << 20, secrets())
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: String,
    results: Value,
    attempts: u32,
}

async fn send(
    policy: &Policy,
    path: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> Option<Answer> {
    let method = if path == "/v1/models" { "GET" } else { "POST" };
    let mut ex = exchange(method, path, &body, headers);
    let outcome = policy.on_http_request(&mut ex).await;
    let results = ex
        .results
        .get("ai_gateway")
        .map(to_json)
        .unwrap_or(Value::Null);
    let attempts = ex.log.ai.as_ref().map_or(0, |a| a.attempts);
    match outcome {
        Outcome::Continue => None,
        Outcome::Respond(response) => {
            let (head, body) = response.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            Some(Answer {
                status: head.status.as_u16(),
                headers: head.headers,
                body: String::from_utf8(body.to_vec()).unwrap(),
                results,
                attempts,
            })
        }
        Outcome::Close => panic!("closed"),
    }
}

/// A chat request naming no model (the strategies choose), answered with 200.
async fn chat_without_model(policy: &Policy) -> Answer {
    let body = json!({"messages": [{"role": "user", "content": "auto"}]});
    let answer = send(policy, "/v1/chat/completions", body, &[])
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello gateway"}]})
}

fn code(answer: &Answer) -> String {
    let value: Value = serde_json::from_str(&answer.body).unwrap();
    value["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn config_validation() {
    let err = |config: &str| {
        compile_with(config, &[])
            .err()
            .unwrap_or_else(|| panic!("accepted: {config}"))
    };
    assert!(compile_with("{}", &[]).is_ok());
    assert!(err("total_timeout: 5 minutes").contains("config.total_timeout: invalid duration"));
    assert!(err("provider_health: {cooldown: 0s}")
        .contains("config.provider_health.cooldown: duration '0s' must be greater than zero"));
    assert!(compile_with("provider_health: {enabled: false, cooldown: 2s}", &[]).is_ok());
    assert!(err("max_input_tokens: 600000").contains("config.max_input_tokens"));
    assert!(err("providers:\n  - id: openai\n    api_key: x").contains("api_key"));
    assert!(err("providers:\n  - id: ollama")
        .contains("config.providers[0].base_url: custom provider 'ollama' needs a base_url"));
    assert!(err("on_error: retry").contains("retry"));
    assert!(err("api_key_selection:\n  strategy: ['ai.keys']").contains("api_key_selection"));
    assert!(
        err("providers:\n  - id: openai\n    api_keys:\n      - value: ''")
            .contains("providers[0].api_keys[0].value")
    );
    assert!(
        err("model_selection:\n  strategy: ['ai.models.filter(m, ']")
            .contains("config.model_selection.strategy[0]")
    );
    assert!(err("model_selection:\n  strategy: ['ai.models.only() ']").contains("strategy[0]"));
    let nothing_usable = compile("only_allow_configured_providers: true");
    assert!(
        (nothing_usable.warnings.iter())
            .any(|w| w.message.contains("every request will be refused")),
        "{:?}",
        nothing_usable.warnings
    );
    let two =
        "on_http_request:\n  - actions:\n      - type: ai-gateway\n      - type: ai-gateway\n";
    let diagnostics = Policy::compile("t.yml", two, &Compiler::new(), &deps(&[]))
        .err()
        .unwrap();
    assert!(
        diagnostics.to_string().contains("at most one ai-gateway"),
        "{diagnostics}"
    );
}

#[tokio::test]
async fn redact_is_checked_at_load_and_rewrites_answers() {
    let err = |config: &str| {
        compile_with(config, &[])
            .err()
            .unwrap_or_else(|| panic!("accepted: {config}"))
    };
    let rules = "  replacements:\n    - {from: '[a-z]+@[a-z.]+', to: '[email]'}";
    for (config, expected) in [
        (
            "redact: {replacements: []}",
            "config.redact.replacements: needs at least one replacement",
        ),
        (
            "redact:\n  replacements:\n    - {from: '(', to: x}",
            "config.redact.replacements[0].from: invalid regular expression",
        ),
        (
            "redact:\n  replacements:\n    - {from: '${req.id}'}",
            "config.redact.replacements[0].from: is compiled once at load",
        ),
        (
            "redact:\n  replacements:\n    - {from: a, to: '${req.id}'}",
            "config.redact.replacements[0].to: is compiled once at load",
        ),
        (
            "redact:\n  replacements:\n    - {from: a, field: data}",
            "config.redact.replacements[0].field: field applies to sse-find-replace only",
        ),
        (
            &format!("redact:\n{rules}\n  hold_back_bytes: 0"),
            "config.redact.hold_back_bytes: hold_back_bytes must be between 1 and 65536",
        ),
        (
            &format!("redact:\n{rules}\n  hold_back_bytes: 65537"),
            "between 1 and 65536",
        ),
        (&format!("redact:\n{rules}\n  hold: 5"), "hold"),
    ] {
        let message = err(config);
        assert!(message.contains(expected), "{config}: {message}");
    }

    let policy = compile(&format!("redact:\n{rules}\n  hold_back_bytes: 8"));
    let ask = |stream: bool| {
        json!({"model": "mock-echo", "stream": stream,
        "messages": [{"role": "user", "content": "mail ana@example.org today"}]})
    };
    let answer = send(&policy, "/v1/chat/completions", ask(false), &[])
        .await
        .unwrap();
    let value: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(
        value["choices"][0]["message"]["content"],
        "mail [email] today"
    );
    let answer = send(&policy, "/v1/chat/completions", ask(true), &[])
        .await
        .unwrap();
    assert!(!answer.body.contains("ana@"), "{}", answer.body);
    let text: String = (answer.body.split("\n\n"))
        .filter_map(|event| event.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter_map(|chunk| {
            chunk
                .pointer("/choices/0/delta/content")?
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, "mail [email] today");
}

#[tokio::test]
async fn mock_provider_answers_every_surface() {
    let policy = compile("{}");
    let answer = send(&policy, "/v1/chat/completions", chat("mock-echo"), &[])
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let value: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(value["choices"][0]["message"]["content"], "hello gateway");
    assert_eq!(answer.headers["x-keygate-provider"], "mock");
    assert_eq!(answer.results["status"], "success");
    assert_eq!(answer.results["success"]["model"], "mock-echo");

    let mut stream = chat("mock:mock-echo");
    stream["stream"] = json!(true);
    let answer = send(&policy, "/v1/chat/completions", stream, &[])
        .await
        .unwrap();
    assert_eq!(answer.headers["content-type"], "text/event-stream");
    assert!(answer.body.contains("\"content\":\"gateway\""));
    assert!(answer.body.ends_with("data: [DONE]\n\n"));
    assert!(
        !answer.body.contains("prompt_tokens"),
        "gateway-added usage chunk leaked: {}",
        answer.body
    );

    let messages = json!({"model": "mock-echo", "max_tokens": 10, "stream": true, "messages": [{"role": "user", "content": "hi claude"}]});
    let answer = send(&policy, "/v1/messages", messages, &[]).await.unwrap();
    assert!(answer.body.contains("event: message_stop"));

    let answer = send(
        &policy,
        "/v1/embeddings",
        json!({"model": "mock-embed", "input": "x"}),
        &[],
    )
    .await
    .unwrap();
    assert!(answer.body.contains("\"embedding\""));

    let answer = send(&policy, "/v1/models", Value::Null, &[]).await.unwrap();
    let list: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(list["object"], "list");
    assert!(list["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == "gpt-4o"));
}

#[tokio::test]
async fn preflight_errors_have_codes_in_the_clients_shape() {
    let policy = compile("max_input_tokens: 20");
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "/v1/chat/completions",
            json!({"model": 5}),
            400,
            "ERR_KEYGATE_3801",
        ),
        (
            "/v1/chat/completions",
            chat("no-such-model"),
            422,
            "ERR_KEYGATE_3804",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": []}),
            422,
            "ERR_KEYGATE_3804",
        ),
        (
            "/v1/messages/count_tokens",
            chat("gpt-4o"),
            422,
            "ERR_KEYGATE_3813",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "mock-echo", "messages": [{"role": "user", "content": "x".repeat(400)}]}),
            413,
            "ERR_KEYGATE_3811",
        ),
        (
            "/v1/chat/completions",
            chat("gpt-4o"),
            400,
            "ERR_KEYGATE_3802",
        ),
        ("/v2/other", json!({}), 404, "ERR_KEYGATE_404"),
    ];
    for (path, body, status, expected) in cases {
        let answer = send(&policy, path, body.clone(), &[]).await.unwrap();
        assert_eq!(answer.status, status, "{path} {body}: {}", answer.body);
        let value: Value = serde_json::from_str(&answer.body).unwrap();
        if path == "/v1/messages" {
            assert_eq!(value["type"], "error");
            assert_eq!(value["error"]["code"], expected);
        } else {
            assert_eq!(value["error"]["code"], expected, "{body}");
        }
    }
}

#[tokio::test]
async fn on_error_continue_records_results() {
    let policy = compile("on_error: continue");
    let mut ex = exchange("POST", "/v1/chat/completions", &chat("nope"), &[]);
    assert!(matches!(
        policy.on_http_request(&mut ex).await,
        Outcome::Continue
    ));
    let results = to_json(ex.results.get("ai_gateway").unwrap());
    assert_eq!(results["status"], "error");
    assert_eq!(results["error"]["code"], "ERR_KEYGATE_3804");
    assert_eq!(results["client"]["model"], "nope");
    assert_eq!(results["client"]["rejected_models"][0]["model"], "nope");
}

#[tokio::test]
async fn strategies_select_filter_and_fail_with_codes() {
    let policy = compile("model_selection:\n  strategy:\n    - ai.models.onlyProviders(['nobody'])\n    - ai.models.filter(m, m.provider_id == 'mock').sortBy('price')");
    let answer = chat_without_model(&policy).await;
    assert_eq!(
        answer.results["model_selection"][0]["candidates_after_client_filter"],
        0
    );
    assert_eq!(
        answer.results["model_selection"][1]["models_to_try"][0],
        "mock:mock-echo"
    );
    // The client's model must survive the strategy; gpt-4o is filtered out, so 3805.
    let answer = send(&policy, "/v1/chat/completions", chat("gpt-4o"), &[])
        .await
        .unwrap();
    assert_eq!(
        (answer.status, code(&answer).as_str()),
        (422, "ERR_KEYGATE_3805")
    );

    let wrong = compile("model_selection:\n  strategy: [\"'gpt-4o'\"]");
    let answer = send(&wrong, "/v1/chat/completions", chat("mock-echo"), &[])
        .await
        .unwrap();
    assert_eq!(code(&answer), "ERR_KEYGATE_3806");
    let failing =
        compile("model_selection:\n  strategy: ['ai.models.filter(m, m.id == \"none\")[0]']");
    let answer = send(&failing, "/v1/chat/completions", chat("mock-echo"), &[])
        .await
        .unwrap();
    assert_eq!(code(&answer), "ERR_KEYGATE_3803");
    let random =
        compile("model_selection:\n  strategy: ['ai.models.onlyProviders([\"mock\"]).random()']");
    let answer = send(&random, "/v1/chat/completions", chat("mock-echo"), &[])
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn strategies_reading_metrics_see_recorded_attempts() {
    let recording = compile("model_selection:\n  strategy:\n    - ai.models.filter(m, m.provider_id == 'mock' && m.metrics.global.request_count >= 0)");
    let answer = send(&recording, "/v1/chat/completions", chat("mock-echo"), &[])
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let seen = compile("model_selection:\n  strategy:\n    - ai.models.filter(m, m.metrics.global.request_count > 0)");
    let answer = chat_without_model(&seen).await;
    assert_eq!(
        answer.results["model_selection"][0]["models_to_try"][0],
        "mock:mock-echo"
    );
}

#[tokio::test]
async fn body_overrides_and_config_headers_are_applied() {
    let upstream = Upstream::start().await;
    let config = "headers:\n  x-tenant: ${req.id}\nquery_params:\n  api-version: '2024-10-21'\nbody:\n  temperature: 0\nproviders:\n  - id: openai\n    api_keys:\n      - value: ${secrets.get('llm', 'ok')}";
    let policy = compile_with(config, &[("openai", upstream.base())]).unwrap();
    let mut body = chat("gpt-4o");
    body["temperature"] = json!(1.5);
    let answer = send(
        &policy,
        "/v1/chat/completions",
        body,
        &[("authorization", &format!("Bearer {CLIENT_TOKEN}"))],
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].auth, format!("Bearer {KEY_OK}"));
    assert_eq!(seen[0].headers["x-tenant"], "req-1");
    assert_eq!(seen[0].headers["x-request-id"], "req-1");
    assert_eq!(seen[0].uri, "/v1/chat/completions?api-version=2024-10-21");
    assert_eq!(seen[0].body["temperature"], 0);
    assert_eq!(seen[0].body["model"], "gpt-4o");
    assert!(
        !format!("{:?}", seen[0].headers).contains(CLIENT_TOKEN),
        "client token went upstream"
    );
}

#[tokio::test]
async fn failover_walks_keys_then_models_and_never_leaks_keys() {
    let upstream = Upstream::start().await;
    let config = "providers:\n  - id: openai\n    api_keys:\n      - value: ${secrets.get('llm', 'limited')}\n      - value: ${secrets.get('llm', 'down')}\n      - value: ${secrets.get('llm', 'ok')}";
    let policy = compile_with(config, &[("openai", upstream.base())]).unwrap();
    let answer = send(&policy, "/v1/chat/completions", chat("gpt-4o"), &[])
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.attempts, 3);
    let auths: Vec<String> = upstream.seen().iter().map(|s| s.auth.clone()).collect();
    assert_eq!(
        auths,
        [
            format!("Bearer {KEY_429}"),
            format!("Bearer {KEY_500}"),
            format!("Bearer {KEY_OK}")
        ]
    );
    let results = answer.results.to_string();
    for key in [KEY_OK, KEY_429, KEY_500] {
        assert!(
            !results.contains(key) && !answer.body.contains(key),
            "key leaked"
        );
    }
    assert_eq!(answer.results["success"]["request_index"], 2);
    assert_eq!(
        answer.results["models_tried"][0]["requests_made"][0]["response"]["status_code"],
        429
    );

    // All keys fail: 3807 listing attempts with redacted keys; then the next model is tried.
    let config = "providers:\n  - id: openai\n    api_keys:\n      - value: ${secrets.get('llm', 'limited')}\n      - value: ${secrets.get('llm', 'down')}";
    let policy = compile_with(config, &[("openai", upstream.base())]).unwrap();
    let answer = send(&policy, "/v1/chat/completions", chat("gpt-4o"), &[])
        .await
        .unwrap();
    assert_eq!(
        (answer.status, code(&answer).as_str()),
        (503, "ERR_KEYGATE_3807")
    );
    assert!(
        answer.body.contains("sk-rate...mnop") && !answer.body.contains(KEY_429),
        "{}",
        answer.body
    );
    let mut fallback = chat("gpt-4o");
    fallback["models"] = json!(["mock-echo"]);
    let answer = send(&policy, "/v1/chat/completions", fallback, &[])
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["x-keygate-provider"], "mock");
}

#[tokio::test]
async fn client_errors_pass_through_and_404_skips_keys() {
    let upstream = Upstream::start().await;
    let config = "providers:\n  - id: openai\n    api_keys:\n      - value: ${secrets.get('llm', 'ok')}\n      - value: ${secrets.get('llm', 'down')}";
    let policy = compile_with(config, &[("openai", upstream.base())]).unwrap();
    let answer = send(
        &policy,
        "/v1/chat/completions",
        chat("openai:bad-request"),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 400);
    assert!(answer.body.contains("upstream says no"));
    assert_eq!(upstream.seen().len(), 1, "a 400 must not fail over");
    let mut missing = chat("openai:missing-model");
    missing["models"] = json!(["mock-echo"]);
    let answer = send(&policy, "/v1/chat/completions", missing, &[])
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(
        upstream.seen().len(),
        2,
        "a 404 moves to the next model, not the next key"
    );
}

#[tokio::test]
async fn passthrough_and_timeouts() {
    let upstream = Upstream::start().await;
    let policy = compile_with(
        "per_request_timeout: 200ms\ntotal_timeout: 1s",
        &[("openai", upstream.base())],
    )
    .unwrap();
    let answer = send(
        &policy,
        "/v1/chat/completions",
        chat("gpt-4o"),
        &[("x-api-key", KEY_OK)],
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(upstream.seen()[0].auth, format!("Bearer {KEY_OK}"));
    let slow = send(
        &policy,
        "/v1/chat/completions",
        chat("openai:slow"),
        &[("authorization", "Bearer sk-whatever-0123456789abcdef")],
    )
    .await
    .unwrap();
    assert_eq!(
        (slow.status, code(&slow).as_str()),
        (503, "ERR_KEYGATE_3807")
    );
    assert!(slow.body.contains("[timeout]"), "{}", slow.body);
    let total = compile_with(
        "per_request_timeout: 1s\ntotal_timeout: 300ms",
        &[("openai", upstream.base())],
    )
    .unwrap();
    let answer = send(
        &total,
        "/v1/chat/completions",
        chat("openai:slow"),
        &[("x-api-key", KEY_OK)],
    )
    .await
    .unwrap();
    assert_eq!(
        (answer.status, code(&answer).as_str()),
        (504, "ERR_KEYGATE_3810")
    );
    let dead = compile_with("{}", &[("openai", "http://127.0.0.1:9/v1".to_string())]).unwrap();
    let answer = send(
        &dead,
        "/v1/chat/completions",
        chat("gpt-4o"),
        &[("x-api-key", KEY_OK)],
    )
    .await
    .unwrap();
    assert_eq!(
        (answer.status, code(&answer).as_str()),
        (502, "ERR_KEYGATE_3800")
    );
}

#[tokio::test]
async fn streams_are_metered_and_the_added_usage_chunk_is_dropped() {
    let upstream = Upstream::start().await;
    let policy = openai_with_vault_key(&upstream);
    let mut body = chat("gpt-4o");
    body["stream"] = json!(true);
    let mut ex = exchange("POST", "/v1/chat/completions", &body, &[]);
    let Outcome::Respond(response) = policy.on_http_request(&mut ex).await else {
        panic!("no response")
    };
    let text = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains("\"content\":\"hi\"") && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );
    assert!(!text.contains("prompt_tokens"), "{text}");
    assert_eq!(
        upstream.seen()[0].body["stream_options"]["include_usage"],
        true
    );
    let usage = &ex.log.ai.as_ref().unwrap().usage;
    assert_eq!(
        usage
            .input_tokens
            .load(std::sync::atomic::Ordering::Relaxed),
        9
    );
    assert_eq!(
        usage
            .output_tokens
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

/// The upstream request carries the gateway's request id exactly once, whether the head already
/// had it (as the server stamps it), had another one, or had it twice.
#[tokio::test]
async fn the_upstream_gets_the_request_id_once() {
    let upstream = Upstream::start().await;
    let policy = openai_with_vault_key(&upstream);
    let cases: [&[(&str, &str)]; 4] = [
        &[],
        &[("x-request-id", "req-1")],
        &[("x-request-id", "client-chosen")],
        &[("x-request-id", "req-1"), ("x-request-id", "req-1")],
    ];
    for headers in cases {
        let answer = send(&policy, "/v1/chat/completions", chat("gpt-4o"), headers)
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    for (seen, headers) in upstream.seen().iter().zip(cases) {
        let ids: Vec<_> = seen.headers.get_all("x-request-id").iter().collect();
        assert_eq!(ids, ["req-1"], "{headers:?}");
    }
}

#[test]
fn hop_by_hop_headers_are_stripped_from_provider_responses() {
    let mut response = http::Response::builder()
        .header("connection", "keep-alive")
        .header("keep-alive", "timeout=5")
        .header("alt-svc", "h3=\":443\"")
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    keygate_ai_gateway::strip_provider_headers(&mut response);
    let names: Vec<_> = response.headers().keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["content-type"]);
    let mut plain = http::Response::builder()
        .header("content-type", "application/json")
        .header("x-request-id", "abc")
        .body(())
        .unwrap();
    keygate_ai_gateway::strip_provider_headers(&mut plain);
    assert_eq!(plain.headers().len(), 2);
}

/// What the scripted upstream received.
#[derive(Clone)]
struct Seen {
    uri: String,
    auth: String,
    headers: HeaderMap,
    body: Value,
}

/// A loopback provider: the key and the model pick the answer.
struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    async fn start() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                stream.set_nodelay(true).unwrap();
                let log = log.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(req, log.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream { addr, seen }
    }

    fn base(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn answer(
    req: Request<Incoming>,
    log: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (head, body) = req.into_parts();
    let body: Value =
        serde_json::from_slice(&body.collect().await.unwrap().to_bytes()).unwrap_or(Value::Null);
    let auth = head
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    log.lock().unwrap().push(Seen {
        uri: head.uri.to_string(),
        auth: auth.clone(),
        headers: head.headers.clone(),
        body: body.clone(),
    });
    let model = body["model"].as_str().unwrap_or_default();
    let reply = |status: u16, content_type: &str, text: String| {
        Ok(Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(text)))
            .unwrap())
    };
    if model == "slow" {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    if auth.contains("sk-rate") {
        return reply(
            429,
            "application/json",
            json!({"error": {"message": format!("limited {auth}")}}).to_string(),
        );
    }
    if auth.contains("sk-down") {
        return reply(503, "application/json", "{}".into());
    }
    match model {
        "bad-request" => {
            return reply(
                400,
                "application/json",
                json!({"error": {"message": "upstream says no"}}).to_string(),
            )
        }
        "missing-model" => return reply(404, "application/json", "{}".into()),
        _ => {}
    }
    if body["stream"] == true {
        let chunk = json!({"choices": [{"index": 0, "delta": {"content": "hi"}}], "usage": null});
        let usage = json!({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}});
        return reply(
            200,
            "text/event-stream",
            format!("data: {chunk}\n\ndata: {usage}\n\ndata: [DONE]\n\n"),
        );
    }
    reply(
        200,
        "application/json",
        json!({"object": "chat.completion", "choices": [{"message": {"content": "ok"}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2}})
        .to_string(),
    )
}

#[tokio::test]
async fn models_list_leaves_out_providers_without_keys() {
    let policy = compile(
        "providers:\n  - id: openai\n    api_keys:\n      - value: ${secrets.get('llm', 'ok')}",
    );
    let answer = send(&policy, "/v1/models", Value::Null, &[]).await.unwrap();
    let list: Value = serde_json::from_str(&answer.body).unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(
        ids.contains(&"gpt-4o") && ids.contains(&"mock-echo"),
        "{ids:?}"
    );
    assert!(
        !ids.contains(&"claude-haiku-4-5"),
        "anthropic has no key here: {ids:?}"
    );
    let open = compile("{}");
    let answer = send(&open, "/v1/models", Value::Null, &[]).await.unwrap();
    assert!(
        answer.body.contains("claude-haiku-4-5"),
        "passthrough mode lists every provider"
    );
}
