//! Translation costs: one request body, one whole answer, and a 200-chunk stream, for the
//! crossings clients use most (Claude Code on GPT: Messages -> Chat Completions; Codex on
//! Claude: Responses -> Messages). Per-chunk cost = the stream figure / 200.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keygate_ai::translate::{self, StreamTranslator};
use keygate_ai::Surface;
use serde_json::{json, Map, Value};

/// A Messages request as an agent sends it: system blocks, tools, a tool round trip.
fn messages_request() -> Map<String, Value> {
    let tool = |name: &str| {
        json!({"name": name, "description": format!("The {name} tool, which does {name} things."),
            "input_schema": {"type": "object", "properties": {"command": {"type": "string"},
                "timeout": {"type": "number"}}, "required": ["command"]}})
    };
    let tools: Vec<Value> = ["Bash", "Read", "Edit", "Grep", "Glob", "Write"]
        .into_iter()
        .map(tool)
        .collect();
    let body = json!({"model": "gpt-4o", "max_tokens": 4096, "stream": true,
    "system": [{"type": "text", "text": "You are a coding agent. ".repeat(40),
        "cache_control": {"type": "ephemeral"}}],
    "tools": tools,
    "messages": [
        {"role": "user", "content": "List the files and tell me what the project does."},
        {"role": "assistant", "content": [{"type": "text", "text": "Listing them."},
            {"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": {"command": "ls"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01",
            "content": "Cargo.toml\nREADME.md\ncrates\ndocs\n"}]}
    ]});
    match body {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object"),
    }
}

/// A Chat Completions stream of `n` content chunks, the finish chunk, usage and `[DONE]`.
fn chat_stream(n: usize) -> Vec<Vec<u8>> {
    let chunk = |delta: Value, finish: Value| {
        let c = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-4o", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {c}\n\n").into_bytes()
    };
    let mut out = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    out.extend((0..n).map(|i| chunk(json!({"content": format!("word{i} ")}), Value::Null)));
    out.push(chunk(json!({}), json!("stop")));
    let usage = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
        "model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": n}});
    out.push(format!("data: {usage}\n\n").into_bytes());
    out.push(b"data: [DONE]\n\n".to_vec());
    out
}

/// An Anthropic Messages stream of `n` text deltas.
fn messages_stream(n: usize) -> Vec<Vec<u8>> {
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n").into_bytes();
    let mut out = vec![
        event(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1",
            "type": "message", "role": "assistant", "model": "claude-sonnet-4-6", "content": [],
            "stop_reason": null, "usage": {"input_tokens": 12, "output_tokens": 1}}}),
        ),
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    out.extend((0..n).map(|i| {
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": format!("word{i} ")}}),
        )
    }));
    out.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    out.push(event("message_delta", json!({"type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": n}})));
    out.push(event("message_stop", json!({"type": "message_stop"})));
    out
}

fn bench(c: &mut Criterion) {
    let request = messages_request();
    c.bench_function("request_messages_to_chat", |b| {
        b.iter(|| {
            translate::request(
                Surface::Messages,
                Surface::ChatCompletions,
                black_box(&request),
                4096,
            )
        })
    });
    let chat_answer = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1,
        "model": "gpt-4o", "choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": "Reading the README.",
                "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "Read", "arguments": "{\"path\":\"README.md\"}"}}]}}],
        "usage": {"prompt_tokens": 900, "completion_tokens": 40, "total_tokens": 940}})
    .to_string();
    c.bench_function("response_chat_to_messages", |b| {
        b.iter(|| {
            translate::response(
                Surface::ChatCompletions,
                Surface::Messages,
                black_box(chat_answer.as_bytes()),
                0,
            )
        })
    });

    let mut group = c.benchmark_group("stream_200_chunks");
    group.throughput(Throughput::Elements(200));
    for (name, from, to, stream) in [
        (
            "chat_to_messages",
            Surface::ChatCompletions,
            Surface::Messages,
            chat_stream(200),
        ),
        (
            "messages_to_chat",
            Surface::Messages,
            Surface::ChatCompletions,
            messages_stream(200),
        ),
        (
            "messages_to_responses",
            Surface::Messages,
            Surface::Responses,
            messages_stream(200),
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut translator = StreamTranslator::new(from, to, true, 12).expect("streams");
                let mut bytes = 0;
                for chunk in &stream {
                    bytes += translator.push(black_box(chunk)).len();
                }
                bytes + translator.finish().len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
