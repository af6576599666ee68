//! Model discovery in process: the `model_discovery` settings, and the refresh tasks against a
//! loopback server whose model list, availability and answers the tests control.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use keygate_cel::{Compiler, MemorySecrets};
use serde_json::{json, Value};

use crate::build::Deps;
use crate::engine::Outcome;
use crate::exchange::Exchange;
use crate::policy::Policy;

const LIST_KEY: &str = "sk-list-0123456789abcdefghijklmnop";

fn secrets() -> Arc<MemorySecrets> {
    let mut secrets = MemorySecrets::default();
    secrets.insert("llm", "list", LIST_KEY);
    Arc::new(secrets)
}

fn deps(offline: bool) -> Deps {
    Deps {
        offline,
        ..Deps::offline(secrets())
    }
}

fn compile_with(config: &str, offline: bool) -> Result<Policy, String> {
    let config: String = config.lines().map(|l| format!("          {l}\n")).collect();
    let text = format!(
        "on_http_request:\n  - actions:\n      - type: ai-gateway\n        config:\n{config}"
    );
    Policy::compile("t.yml", &text, &Compiler::new(), &deps(offline)).map_err(|e| {
        e.diagnostics
            .iter()
            .map(|d| format!("{}: {}", d.path, d.message))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

fn compile(config: &str) -> Policy {
    compile_with(config, false).unwrap_or_else(|e| panic!("policy rejected: {e}"))
}

/// A model server on loopback: `GET .../models` answers its list (503 while down), any `POST`
/// answers a chat completion naming the model; every list request's `authorization` is kept.
struct ModelServer {
    addr: SocketAddr,
    models: Arc<Mutex<Value>>,
    up: Arc<AtomicBool>,
    lists: Arc<AtomicUsize>,
    auth: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ModelServer {
    async fn start(ids: &[&str]) -> ModelServer {
        Self::start_on("127.0.0.1:0".parse().unwrap(), ids).await
    }

    async fn start_on(addr: SocketAddr, ids: &[&str]) -> ModelServer {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let models = Arc::new(Mutex::new(list(ids)));
        let up = Arc::new(AtomicBool::new(true));
        let lists = Arc::new(AtomicUsize::new(0));
        let auth = Arc::new(Mutex::new(Vec::new()));
        let shared = (models.clone(), up.clone(), lists.clone(), auth.clone());
        let task = tokio::spawn(async move {
            let (models, up, lists, auth) = shared;
            while let Ok((stream, _)) = listener.accept().await {
                let (models, up, lists, auth) =
                    (models.clone(), up.clone(), lists.clone(), auth.clone());
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (models, up, lists, auth) =
                        (models.clone(), up.clone(), lists.clone(), auth.clone());
                    async move {
                        let (head, body) = req.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        let (status, text) = if head.method == http::Method::GET {
                            lists.fetch_add(1, Ordering::SeqCst);
                            let seen = head
                                .headers
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            auth.lock().unwrap().push(seen);
                            if up.load(Ordering::SeqCst) {
                                (200, models.lock().unwrap().to_string())
                            } else {
                                (503, "{}".to_owned())
                            }
                        } else {
                            let request: Value =
                                serde_json::from_slice(&body).unwrap_or(Value::Null);
                            let reply = json!({"object": "chat.completion", "model": request["model"],
                                "choices": [{"message": {"content": "ok"}}]});
                            (200, reply.to_string())
                        };
                        let response = Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(text)))
                            .unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        ModelServer {
            addr,
            models,
            up,
            lists,
            auth,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set(&self, ids: &[&str]) {
        *self.models.lock().unwrap() = list(ids);
    }

    fn lists(&self) -> usize {
        self.lists.load(Ordering::SeqCst)
    }

    async fn wait_for_lists(&self, n: usize) {
        for _ in 0..500 {
            if self.lists() >= n {
                // Let the answer land in the registry.
                tokio::time::sleep(Duration::from_millis(30)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the server saw {} lists, expected {n}", self.lists());
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn list(ids: &[&str]) -> Value {
    let data: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "object": "model", "owned_by": "server"}))
        .collect();
    json!({"object": "list", "data": data})
}

struct Answer {
    status: u16,
    body: Value,
    model: String,
}

async fn send(policy: &Policy, method: &str, path: &str, body: Value) -> Answer {
    let (request, ()) = Request::builder()
        .method(method)
        .uri(path)
        .body(())
        .unwrap()
        .into_parts();
    let bytes = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    let mut ex = Exchange::for_test(request, bytes, 1 << 20, secrets());
    let Outcome::Respond(response) = policy.on_http_request(&mut ex).await else {
        panic!("the action answers")
    };
    let (head, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: head.status.as_u16(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        model: head
            .headers
            .get("x-keygate-model")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
    }
}

async fn chat(policy: &Policy, model: &str) -> Answer {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    send(policy, "POST", "/v1/chat/completions", body).await
}

async fn listed(policy: &Policy) -> Vec<String> {
    let answer = send(policy, "GET", "/v1/models", Value::Null).await;
    answer.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

fn code(answer: &Answer) -> &str {
    answer.body["error"]["code"].as_str().unwrap_or_default()
}

fn provider(url: &str, extra: &str) -> String {
    format!("providers:\n  - id: llamacpp\n    base_url: {url}\n{extra}")
}

#[test]
fn settings_are_checked() {
    let cases = [
        (
            provider(
                "http://127.0.0.1:9/v1",
                "    model_discovery: {interval: 500ms}",
            ),
            "must be at least 1s",
        ),
        (
            provider(
                "http://127.0.0.1:9/v1",
                "    model_discovery: {timeout: soon}",
            ),
            "providers[0].model_discovery.timeout",
        ),
        (
            provider("http://127.0.0.1:9/v1", "    model_discovery: {every: 5s}"),
            "every",
        ),
        (
            "providers:\n  - id: mock\n    model_discovery: {}".to_owned(),
            "needs an http:// or https:// base_url",
        ),
    ];
    for (config, expected) in cases {
        let err = compile_with(&config, true).err().unwrap_or_default();
        assert!(err.contains(expected), "{config}\n=> {err}");
    }
    // With it (the default), the same configuration loads: the models come from the server.
    let config = format!(
        "only_allow_configured_providers: true\n{}",
        provider("http://127.0.0.1:9/v1", "")
    );
    assert!(compile_with(&config, true).is_ok());
    let config = provider(
        "http://127.0.0.1:9/v1",
        "    model_discovery: {enabled: true, interval: 1m30s, timeout: 2s}",
    );
    assert!(compile_with(&config, true).is_ok());
}

/// `policy check` (offline) never fetches; the bare name stays unknown.
#[tokio::test]
async fn offline_policies_never_fetch() {
    let server = ModelServer::start(&["smollm2"]).await;
    let policy = compile_with(&provider(&server.url(), ""), true).unwrap();
    let answer = chat(&policy, "smollm2").await;
    assert_eq!(answer.status, 422);
    assert_eq!(code(&answer), "ERR_KEYGATE_3804");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.lists(), 0);
}

/// Who is asked: custom providers without models by default, never one that declares models or
/// inherits a built-in's (unless asked), never a disabled one.
#[tokio::test]
async fn which_providers_are_asked() {
    let server = ModelServer::start(&["smollm2"]).await;
    let url = server.url();
    let config = format!(
        "providers:
  - id: declared
    base_url: {url}/a/v1
    models: [{{id: fixed}}]
  - id: shadow
    id_aliases: [deepseek]
    base_url: {url}/b/v1
  - id: off
    base_url: {url}/c/v1
    disabled: true
  - id: asked
    base_url: {url}/d/v1
    models: [{{id: fixed}}]
    model_discovery: {{}}"
    );
    let policy = compile(&config);
    server.wait_for_lists(1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.lists(), 1, "only 'asked' lists its models");
    let answer = chat(&policy, "smollm2").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.model, "smollm2");
    assert_eq!(chat(&policy, "asked:fixed").await.status, 200);
}

/// The first list is there for the first request (it waits for it), bare names and
/// `provider:model` resolve, the key goes as Bearer, `GET /v1/models` lists the models, and
/// strategies see them.
#[tokio::test]
async fn discovered_models_serve_like_configured_ones() {
    let server = ModelServer::start(&["smollm2", "qwen2.5:0.5b"]).await;
    let config = format!(
        "{}
model_selection:
  strategy:
    - ai.models.filter(m, m.provider_id == 'llamacpp' && m.id.startsWith('qwen'))
    - ai.models.filter(m, m.provider_id == 'llamacpp')",
        provider(
            &server.url(),
            "    api_keys:\n      - value: ${secrets.get('llm', 'list')}"
        )
    );
    let policy = compile(&config);
    let answer = chat(&policy, "smollm2").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.model, "smollm2");
    assert_eq!(answer.body["model"], "smollm2");
    assert_eq!(chat(&policy, "llamacpp:smollm2").await.model, "smollm2");
    assert_eq!(server.auth.lock().unwrap()[0], format!("Bearer {LIST_KEY}"));
    let ids = listed(&policy).await;
    assert_eq!(ids[..2], ["smollm2", "qwen2.5:0.5b"], "{ids:?}");
    assert!(
        !ids.contains(&"claude-haiku-4-5".to_owned()),
        "server keys: built-ins without a key are left out: {ids:?}"
    );
    // No model named: the strategy picks among the discovered ones.
    let auto = send(
        &policy,
        "POST",
        "/v1/chat/completions",
        json!({"messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(auto.status, 200, "{}", auto.body);
    assert_eq!(auto.model, "qwen2.5:0.5b");
}

/// A later change is picked up within the interval; a server that fails (down, or answering
/// something that is no list) leaves the last good list in place.
#[tokio::test]
async fn changes_are_picked_up_and_failures_keep_the_last_good_list() {
    let server = ModelServer::start(&["a"]).await;
    let policy = compile(&provider(
        &server.url(),
        "    model_discovery: {interval: 1s}",
    ));
    assert_eq!(chat(&policy, "a").await.status, 200);
    server.set(&["a", "b"]);
    server.wait_for_lists(2).await;
    assert_eq!(chat(&policy, "b").await.status, 200);

    server.up.store(false, Ordering::SeqCst);
    server.wait_for_lists(3).await;
    assert_eq!(chat(&policy, "b").await.status, 200, "kept while down");
    server.up.store(true, Ordering::SeqCst);
    *server.models.lock().unwrap() = json!({"error": "not a list"});
    server.wait_for_lists(4).await;
    assert_eq!(
        chat(&policy, "b").await.status,
        200,
        "kept after a bad answer"
    );

    server.set(&["c"]);
    server.wait_for_lists(5).await;
    assert_eq!(chat(&policy, "c").await.status, 200);
    let gone = chat(&policy, "a").await;
    assert_eq!(
        code(&gone),
        "ERR_KEYGATE_3804",
        "a model the server dropped is gone"
    );
    let ids = listed(&policy).await;
    assert_eq!(ids[0], "c", "{ids:?}");
    assert!(!ids.iter().any(|id| id == "a" || id == "b"), "{ids:?}");
}

/// Down at start: the policy loads, a request fails fast (3804), and once the server is up the
/// next list brings the models.
#[tokio::test]
async fn a_server_down_at_start_is_picked_up_later() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let started = std::time::Instant::now();
    let policy = compile(&provider(
        &format!("http://{addr}"),
        "    model_discovery: {interval: 1s, timeout: 2s}",
    ));
    let answer = chat(&policy, "smollm2").await;
    assert_eq!(code(&answer), "ERR_KEYGATE_3804");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused at once"
    );
    let server = ModelServer::start_on(addr, &["smollm2"]).await;
    server.wait_for_lists(1).await;
    assert_eq!(chat(&policy, "smollm2").await.status, 200);
}

/// A key template that reads the request cannot be rendered for a list: it goes without one.
#[tokio::test]
async fn a_key_that_needs_the_request_is_not_sent() {
    let server = ModelServer::start(&["m"]).await;
    let policy = compile(&provider(
        &server.url(),
        "    api_keys:\n      - value: ${req.headers['x-key'][0]}",
    ));
    assert_eq!(listed(&policy).await[0], "m");
    assert_eq!(server.auth.lock().unwrap()[0], "");
}

/// Passthrough mode with only custom providers allowed lists the discovered models alone.
#[tokio::test]
async fn only_configured_providers_list_no_catalog() {
    let server = ModelServer::start(&["smollm2"]).await;
    let policy = compile(&format!(
        "only_allow_configured_providers: true\n{}",
        provider(&server.url(), "")
    ));
    assert_eq!(listed(&policy).await, ["smollm2"]);
}

/// Dropping the policy (a reload replaced it) stops its task; a policy loaded after it starts
/// from the last good list even while the server is down.
#[tokio::test]
async fn tasks_stop_with_the_policy_and_reloads_keep_the_list() {
    let server = ModelServer::start(&["kept"]).await;
    let config = provider(&server.url(), "    model_discovery: {interval: 1s}");
    let policy = compile(&config);
    server.wait_for_lists(1).await;
    drop(policy);
    let seen = server.lists();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(server.lists(), seen, "no list after the policy is gone");

    server.up.store(false, Ordering::SeqCst);
    let reloaded = compile(&config);
    let answer = chat(&reloaded, "kept").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}
