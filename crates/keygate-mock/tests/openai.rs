//! OpenAI surfaces: shapes the SDKs rely on, and streaming framing.

mod common;

use base64::Engine as _;
use common::{data_json, get, post, sse_events, start};
use serde_json::{json, Value};

fn chat_body(stream: bool, include_usage: bool) -> Value {
    let mut body = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": "Hello from the round trip test!"}
        ]
    });
    if stream {
        body["stream"] = json!(true);
    }
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

#[tokio::test]
async fn chat_completion_echoes_last_user_message() {
    let mock = start().await;
    let resp = post(
        mock.addr,
        "/v1/chat/completions",
        &[],
        chat_body(false, false),
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert!(resp.header("x-request-id").is_some());
    let v = resp.json();
    assert!(v["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("chatcmpl-")));
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().is_some());
    assert_eq!(v["model"], "gpt-4o");
    assert_eq!(v["choices"][0]["index"], 0);
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from the round trip test!"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let usage = &v["usage"];
    let prompt = usage["prompt_tokens"].as_u64().expect("prompt_tokens");
    let completion = usage["completion_tokens"]
        .as_u64()
        .expect("completion_tokens");
    // 8 + 14 + 9 + 31 characters of content, 31 of reply, at 4 characters per token.
    assert_eq!((prompt, completion), (16, 8));
    assert_eq!(usage["total_tokens"].as_u64(), Some(prompt + completion));
}

#[tokio::test]
async fn chat_stream_framing_without_usage() {
    let mock = start().await;
    let resp = post(
        mock.addr,
        "/v1/chat/completions",
        &[],
        chat_body(true, false),
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    let events = sse_events(&resp.text());
    assert!(
        events.iter().all(|e| e.name.is_none()),
        "OpenAI sends data-only events"
    );
    assert_eq!(events.last().map(|e| e.data.as_str()), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(data_json).collect();
    // role chunk, 5 content chunks (the default), finish chunk.
    assert_eq!(chunks.len(), 7);
    let id = chunks[0]["id"].clone();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], id);
        assert_eq!(c["model"], "gpt-4o");
        assert!(
            c.get("usage").is_none(),
            "no usage key without include_usage"
        );
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks[1..6]
        .iter()
        .map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .expect("content delta")
        })
        .collect();
    assert_eq!(text, "Hello from the round trip test!");
    assert!(chunks[..6]
        .iter()
        .all(|c| c["choices"][0]["finish_reason"].is_null()));
    assert_eq!(chunks[6]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[6]["choices"][0]["delta"], json!({}));
}

#[tokio::test]
async fn chat_stream_with_include_usage_ends_with_usage_chunk() {
    let mock = start().await;
    let resp = post(
        mock.addr,
        "/v1/chat/completions",
        &[],
        chat_body(true, true),
    )
    .await;
    let events = sse_events(&resp.text());
    assert_eq!(events.last().map(|e| e.data.as_str()), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(data_json).collect();
    assert_eq!(chunks.len(), 8);
    for c in &chunks[..7] {
        assert!(
            c["usage"].is_null() && c.get("usage").is_some(),
            "usage: null on content chunks"
        );
    }
    let last = &chunks[7];
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 16);
    assert_eq!(last["usage"]["completion_tokens"], 8);
    assert_eq!(last["usage"]["total_tokens"], 24);
}

#[tokio::test]
async fn chat_accepts_content_parts_and_rejects_bad_bodies() {
    let mock = start().await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "part one, "}, {"type": "text", "text": "part two"}
    ]}]});
    let v = post(mock.addr, "/v1/chat/completions", &[], body)
        .await
        .json();
    assert_eq!(v["choices"][0]["message"]["content"], "part one, part two");

    let resp = common::send(
        mock.addr,
        http::Method::POST,
        "/v1/chat/completions",
        &[],
        "{not json",
    )
    .await
    .expect("answered");
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()["error"]["type"], "invalid_request_error");
    let resp = post(
        mock.addr,
        "/v1/chat/completions",
        &[],
        json!({"messages": []}),
    )
    .await;
    assert_eq!(resp.status, 400);
    assert!(resp.json()["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("model")));
}

#[tokio::test]
async fn completions_plain_and_streamed() {
    let mock = start().await;
    let v = post(
        mock.addr,
        "/v1/completions",
        &[],
        json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say this"}),
    )
    .await
    .json();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], "Say this");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["total_tokens"], 4);

    let body = json!({"model": "m", "prompt": ["ignored", "abcdef"], "stream": true,
                      "stream_options": {"include_usage": true}});
    let resp = post(
        mock.addr,
        "/v1/completions",
        &[("x-mock-chunks", "3")],
        body,
    )
    .await;
    let events = sse_events(&resp.text());
    assert_eq!(events.last().map(|e| e.data.as_str()), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(data_json).collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "abcdef");
    assert_eq!(chunks.len(), 3 + 1 + 1);
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[4]["usage"]["prompt_tokens"], 2);
}

#[tokio::test]
async fn embeddings_floats_base64_and_dimensions() {
    let mock = start().await;
    let v = post(
        mock.addr,
        "/v1/embeddings",
        &[],
        json!({"model": "text-embedding-3-small", "input": ["a", "b"]}),
    )
    .await
    .json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "text-embedding-3-small");
    let data = v["data"].as_array().expect("data");
    assert_eq!(data.len(), 2);
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], i);
        assert_eq!(item["embedding"].as_array().map(Vec::len), Some(1536));
    }
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);
    assert_eq!(v["usage"]["prompt_tokens"], 2);

    let floats = post(
        mock.addr,
        "/v1/embeddings",
        &[],
        json!({"model": "m", "input": "x", "dimensions": 4}),
    )
    .await
    .json();
    let b64 = post(
        mock.addr,
        "/v1/embeddings",
        &[],
        json!({"model": "m", "input": "x", "dimensions": 4, "encoding_format": "base64"}),
    )
    .await
    .json();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64["data"][0]["embedding"].as_str().expect("base64 string"))
        .expect("valid base64");
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    // JSON numbers are read back as f64; narrowing restores the exact f32.
    let expected: Vec<f32> = floats["data"][0]["embedding"]
        .as_array()
        .expect("floats")
        .iter()
        .filter_map(Value::as_f64)
        .map(|x| x as f32)
        .collect();
    assert_eq!(decoded, expected);

    let bad = post(
        mock.addr,
        "/v1/embeddings",
        &[],
        json!({"model": "m", "input": []}),
    )
    .await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn responses_plain_and_streamed() {
    let mock = start().await;
    let v = post(
        mock.addr,
        "/v1/responses",
        &[],
        json!({"model": "gpt-4o", "input": "Tell me a story"}),
    )
    .await
    .json();
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert!(v["id"].as_str().is_some_and(|id| id.starts_with("resp_")));
    assert_eq!(v["output"][0]["type"], "message");
    assert_eq!(v["output"][0]["content"][0]["type"], "output_text");
    assert_eq!(v["output"][0]["content"][0]["text"], "Tell me a story");
    assert_eq!(v["usage"]["input_tokens"], 4);
    assert_eq!(v["usage"]["output_tokens"], 4);
    assert_eq!(v["usage"]["total_tokens"], 8);

    let body = json!({"model": "gpt-4o", "stream": true, "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "streamed story"}]}
    ]});
    let events = sse_events(&post(mock.addr, "/v1/responses", &[], body).await.text());
    let names: Vec<&str> = events.iter().filter_map(|e| e.name.as_deref()).collect();
    assert_eq!(names.len(), events.len(), "every Responses event is named");
    assert_eq!(names.first(), Some(&"response.created"));
    assert_eq!(names.last(), Some(&"response.completed"));
    let mut text = String::new();
    for (i, e) in events.iter().enumerate() {
        let d = data_json(e);
        assert_eq!(d["type"].as_str(), e.name.as_deref());
        assert_eq!(d["sequence_number"], i);
        if d["type"] == "response.output_text.delta" {
            text.push_str(d["delta"].as_str().expect("delta"));
        }
    }
    assert_eq!(text, "streamed story");
    let completed = data_json(events.last().expect("events"));
    assert_eq!(
        completed["response"]["output"][0]["content"][0]["text"],
        "streamed story"
    );
}

#[tokio::test]
async fn models_list_in_openai_shape() {
    let mock = start().await;
    let v = get(mock.addr, "/v1/models", &[]).await.json();
    assert_eq!(v["object"], "list");
    let data = v["data"].as_array().expect("data");
    assert!(data.iter().any(|m| m["id"] == "gpt-4o"));
    assert!(data
        .iter()
        .all(|m| m["object"] == "model" && m["owned_by"].is_string()));
}

#[tokio::test]
async fn unknown_path_is_404_in_openai_shape() {
    let mock = start().await;
    let resp = post(mock.addr, "/v1/nothing", &[], json!({})).await;
    assert_eq!(resp.status, 404);
    assert!(resp.json()["error"]["message"].is_string());
}
