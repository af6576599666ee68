//! Anthropic surfaces: message shape, event stream framing, token counting, errors.

mod common;

use common::{data_json, get, post, sse_events, start};
use serde_json::{json, Value};

fn messages_body(stream: bool) -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "stream": stream,
        "system": "You are terse.",
        "messages": [
            {"role": "user", "content": "earlier"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "Echo this back, Claude."}]}
        ]
    })
}

#[tokio::test]
async fn message_echoes_last_user_message() {
    let mock = start().await;
    let resp = post(
        mock.addr,
        "/v1/messages",
        &[("x-api-key", "k")],
        messages_body(false),
    )
    .await;
    assert_eq!(resp.status, 200);
    assert!(resp.header("request-id").is_some());
    let v = resp.json();
    assert!(v["id"].as_str().is_some_and(|id| id.starts_with("msg_")));
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-sonnet-4-5");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "Echo this back, Claude."}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["stop_sequence"].is_null());
    // 14 + 7 + 2 + 23 characters in, 23 out.
    assert_eq!(v["usage"]["input_tokens"], 12);
    assert_eq!(v["usage"]["output_tokens"], 6);
}

#[tokio::test]
async fn stream_has_anthropic_event_sequence() {
    let mock = start().await;
    let resp = post(
        mock.addr,
        "/v1/messages",
        &[("x-mock-chunks", "4")],
        messages_body(true),
    )
    .await;
    assert_eq!(
        resp.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    let events = sse_events(&resp.text());
    let names: Vec<&str> = events
        .iter()
        .map(|e| e.name.as_deref().expect("named"))
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for e in &events {
        assert_eq!(
            data_json(e)["type"].as_str(),
            e.name.as_deref(),
            "data type matches event line"
        );
    }
    let start_event = data_json(&events[0]);
    assert_eq!(start_event["message"]["role"], "assistant");
    assert_eq!(start_event["message"]["content"], json!([]));
    assert_eq!(start_event["message"]["usage"]["input_tokens"], 12);
    assert_eq!(
        data_json(&events[1])["content_block"],
        json!({"type": "text", "text": ""})
    );
    let text: String = events[3..7]
        .iter()
        .map(|e| {
            let d = data_json(e);
            assert_eq!(d["delta"]["type"], "text_delta");
            assert_eq!(d["index"], 0);
            d["delta"]["text"].as_str().expect("text").to_owned()
        })
        .collect();
    assert_eq!(text, "Echo this back, Claude.");
    let delta = data_json(&events[8]);
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 6);
}

#[tokio::test]
async fn count_tokens_and_validation() {
    let mock = start().await;
    let v = post(
        mock.addr,
        "/v1/messages/count_tokens",
        &[],
        messages_body(false),
    )
    .await
    .json();
    assert_eq!(v, json!({"input_tokens": 12}));
    let resp = post(mock.addr, "/v1/messages", &[], json!({"model": "claude"})).await;
    assert_eq!(resp.status, 400);
    let v = resp.json();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("messages")));
}

#[tokio::test]
async fn models_list_in_anthropic_shape_when_asked_by_anthropic_client() {
    let mock = start().await;
    let v = get(
        mock.addr,
        "/v1/models",
        &[("anthropic-version", "2023-06-01")],
    )
    .await
    .json();
    let data = v["data"].as_array().expect("data");
    assert!(!data.is_empty());
    assert!(data
        .iter()
        .all(|m| m["type"] == "model" && m["display_name"].is_string()));
    assert_eq!(v["has_more"], false);
    assert_eq!(v["first_id"], data[0]["id"]);
}

#[tokio::test]
async fn scripted_errors_use_anthropic_shape() {
    let mock = start().await;
    let resp = post(
        mock.addr,
        "/v1/messages",
        &[("x-mock-status", "529")],
        messages_body(false),
    )
    .await;
    assert_eq!(resp.status, 529);
    let v = resp.json();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "overloaded_error");
}
