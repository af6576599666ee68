//! Translation between Messages, Chat Completions and Responses through the real binary: each
//! client format against models reachable only in another format (custom providers on
//! `keygate-mock` that serve one surface), whole and streamed, with a tool-use round trip, a
//! cross-format failover, translated provider errors and `x-keygate-removed-params`.

mod common;

use std::time::{Duration, Instant};

use common::{send, Gateway, Reply, Req, TempDir};
use keygate_mock::{MockConfig, MockServer};
use serde_json::{json, Value};

/// `chat-only`, `messages-only` and `responses-only` serve one surface each, on the mock.
fn policy(mock: &MockServer) -> String {
    let url = mock.openai_base_url();
    let provider = |id: &str, format: &str, surface: &str, model: &str, key: &str| {
        format!(
            "            - id: {id}\n              base_url: {url}\n              api_keys:\n                - value: {key}\n              supported_api_surfaces:\n                - {{format: {format}, surface: {surface}}}\n              models:\n                - id: {model}\n"
        )
    };
    format!(
        "on_http_request:\n  - actions:\n      - type: ai-gateway\n        config:\n          access_keys: optional\n          only_allow_configured_providers: true\n          providers:\n{}{}{}{}",
        provider("chat-only", "openai", "chat-completions", "gpt-chat", "sk-chat-key"),
        provider("messages-only", "anthropic", "messages", "claude-native", "sk-ant-key"),
        provider("responses-only", "openai", "responses", "gpt-resp", "sk-resp-key"),
        provider(
            "broken-claude",
            "anthropic",
            "messages",
            "claude-broken",
            "sk-ant-fail500"
        ),
    )
}

async fn start() -> (MockServer, Gateway, TempDir) {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let data = TempDir::new("translation-data");
    let gw = Gateway::start_on_mock(&policy(&mock), &mock.openai_base_url(), data.path(), &[]);
    (mock, gw, data)
}

async fn post(gw: &Gateway, path: &str, body: &Value) -> Reply {
    send(gw.addr, Req::post(path, body.to_string()))
        .await
        .expect("request")
}

/// The SSE events of a reply: (event name, data as JSON or the raw string).
fn sse_events(reply: &Reply) -> Vec<(Option<String>, Value)> {
    let text = reply.text();
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            let value = serde_json::from_str(&data).unwrap_or(Value::String(data));
            (name, value)
        })
        .collect()
}

/// The last request the mock received on `path`.
fn upstream_body(mock: &MockServer, path: &str) -> Value {
    mock.requests()
        .iter()
        .rev()
        .find(|r| r.path == path)
        .unwrap_or_else(|| panic!("no upstream request on {path}"))
        .body_json()
        .expect("JSON body")
}

/// The access log's `ai` object of the newest request on `path`.
fn ai_line(gw: &Gateway, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = gw
            .output()
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["message"] == "request" && v["path"] == path && v["ai"].is_object());
        if let Some(line) = found {
            return line["ai"].clone();
        }
        assert!(Instant::now() < deadline, "no access log line for {path}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_client_on_a_chat_completions_model() {
    let (mock, gw, _data) = start().await;
    let body = json!({"model": "gpt-chat", "max_tokens": 300, "system": "Be brief.",
        "messages": [{"role": "user", "content": "hello translated world"}]});
    let reply = post(&gw, "/v1/messages", &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json();
    assert_eq!(answer["type"], "message");
    assert_eq!(answer["role"], "assistant");
    assert_eq!(answer["stop_reason"], "end_turn");
    assert!(answer["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("hello translated world"));
    assert!(answer["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(reply.header("x-keygate-provider"), Some("chat-only"));
    let sent = upstream_body(&mock, "/v1/chat/completions");
    assert_eq!(sent["model"], "gpt-chat");
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(sent["messages"][1]["role"], "user");
    assert_eq!(sent["max_tokens"], 300);

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let reply = post(&gw, "/v1/messages", &streamed).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let events = sse_events(&reply);
    let names: Vec<&str> = events.iter().filter_map(|(n, _)| n.as_deref()).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
    assert_eq!(names.last(), Some(&"message_stop"), "{names:?}");
    let text: String = events
        .iter()
        .filter(|(n, _)| n.as_deref() == Some("content_block_delta"))
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert!(text.contains("hello translated world"), "{text}");
    let delta = events
        .iter()
        .find(|(n, _)| n.as_deref() == Some("message_delta"))
        .expect("message_delta");
    assert_eq!(delta.1["delta"]["stop_reason"], "end_turn");
    let output = delta.1["usage"]["output_tokens"].as_u64().unwrap();
    assert!(output > 0);
    let sent = upstream_body(&mock, "/v1/chat/completions");
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let ai = ai_line(&gw, "/v1/messages");
    assert_eq!(ai["output_tokens"].as_u64(), Some(output), "{ai}");
    assert_eq!(ai["usage_source"], "provider", "{ai}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_client_on_a_messages_model_and_responses_client_on_both() {
    let (mock, gw, _data) = start().await;
    let chat = json!({"model": "claude-native", "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "chat to claude"}]});
    let reply = post(&gw, "/v1/chat/completions", &chat).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let events = sse_events(&reply);
    assert_eq!(events.last().unwrap().1, json!("[DONE]"));
    let text: String = events
        .iter()
        .filter_map(|(_, d)| d["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(text.contains("chat to claude"), "{text}");
    let usage = events
        .iter()
        .find(|(_, d)| d["usage"].is_object())
        .expect("the usage chunk the client asked for");
    assert!(usage.1["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    let sent = upstream_body(&mock, "/v1/messages");
    assert_eq!(sent["model"], "claude-native");
    assert!(
        sent["max_tokens"].as_u64().is_some(),
        "Messages needs max_tokens: {sent}"
    );

    for model in ["claude-native", "gpt-chat"] {
        let body = json!({"model": model, "input": "respond please", "instructions": "terse"});
        let reply = post(&gw, "/v1/responses", &body).await;
        assert_eq!(reply.status, 200, "{model}: {}", reply.text());
        let answer = reply.json();
        assert_eq!(answer["object"], "response", "{answer}");
        assert_eq!(answer["status"], "completed");
        let text = answer["output"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|item| item["type"] == "message")
            .flat_map(|item| item["content"].as_array().unwrap())
            .filter_map(|part| part["text"].as_str())
            .collect::<String>();
        assert!(text.contains("respond please"), "{model}: {answer}");

        let mut streamed = body.clone();
        streamed["stream"] = json!(true);
        let reply = post(&gw, "/v1/responses", &streamed).await;
        assert_eq!(reply.status, 200, "{model}: {}", reply.text());
        let events = sse_events(&reply);
        let names: Vec<&str> = events.iter().filter_map(|(n, _)| n.as_deref()).collect();
        assert_eq!(names.first(), Some(&"response.created"), "{names:?}");
        assert_eq!(names.last(), Some(&"response.completed"), "{names:?}");
        let completed = &events.last().unwrap().1["response"];
        assert!(completed["usage"]["output_tokens"].as_u64().unwrap() > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_round_trip_keeps_the_call_id_across_formats() {
    let (mock, gw, _data) = start().await;
    let tools = json!([{"name": "lookup", "description": "Looks things up",
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}]);
    let ask = json!({"model": "gpt-chat", "max_tokens": 200, "tools": tools,
        "messages": [{"role": "user", "content": "mock-tool: lookup {\"q\":\"keygate\"}"}]});
    let reply = post(&gw, "/v1/messages", &ask).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json();
    assert_eq!(answer["stop_reason"], "tool_use", "{answer}");
    let call = answer["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "tool_use")
        .expect("a tool_use block")
        .clone();
    assert_eq!(call["name"], "lookup");
    assert_eq!(call["input"], json!({"q": "keygate"}));
    let sent = upstream_body(&mock, "/v1/chat/completions");
    assert_eq!(sent["tools"][0]["function"]["name"], "lookup");

    let id = call["id"].as_str().unwrap();
    let follow_up = json!({"model": "gpt-chat", "max_tokens": 200, "tools": tools,
    "messages": [
        ask["messages"][0],
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id,
            "content": "keygate is a gateway"}]}
    ]});
    let reply = post(&gw, "/v1/messages", &follow_up).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let text = reply.json()["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(text.contains("tool result: keygate is a gateway"), "{text}");
    let sent = upstream_body(&mock, "/v1/chat/completions");
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages[1]["tool_calls"][0]["id"], id);
    assert_eq!(messages[2]["role"], "tool");
    assert_eq!(messages[2]["tool_call_id"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_crosses_formats_and_errors_come_back_in_the_clients_shape() {
    let (mock, gw, _data) = start().await;
    let body = json!({"model": "claude-broken", "models": ["gpt-chat"], "max_tokens": 50,
        "top_k": 5, "messages": [{"role": "user", "content": "fail over"}]});
    let reply = post(&gw, "/v1/messages", &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-keygate-provider"), Some("chat-only"));
    assert_eq!(reply.json()["type"], "message");
    assert_eq!(reply.header("x-keygate-removed-params"), Some("top_k"));
    let paths: Vec<String> = mock.requests().iter().map(|r| r.path.clone()).collect();
    assert!(paths.ends_with(&["/v1/messages".into(), "/v1/chat/completions".into()]));

    let refused = Req::post(
        "/v1/messages",
        json!({"model": "gpt-chat", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
            .to_string(),
    )
    .header("x-mock-status", "400");
    let reply = send(gw.addr, refused).await.unwrap();
    assert_eq!(reply.status, 400, "{}", reply.text());
    let error = reply.json();
    assert_eq!(error["type"], "error", "{error}");
    assert!(error["error"]["message"].as_str().is_some(), "{error}");
    assert_eq!(reply.header("content-type"), Some("application/json"));

    let invalid = json!({"model": "gpt-chat", "max_tokens": 5, "messages": "not a list"});
    let reply = post(&gw, "/v1/messages", &invalid).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "ERR_KEYGATE_3801");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_is_told_to_use_http() {
    let (_mock, gw, _data) = start().await;
    let upgrade = Req::get("/v1/responses")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    let reply = send(gw.addr, upgrade).await.unwrap();
    assert_eq!(reply.status, 426, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "ERR_KEYGATE_3814");
    let plain = send(gw.addr, Req::get("/v1/responses")).await.unwrap();
    assert_eq!(plain.status, 404, "{}", plain.text());
}
