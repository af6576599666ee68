//! Scripted turns on every chat surface, plain and streamed: tool calls from `mock-tool:` lines,
//! the answer to tool results (a whole round trip), thinking / reasoning, and prompt-cache usage.

mod common;

use std::net::SocketAddr;

use common::{chat_chunks, est, named_events, post, start};
use serde_json::{json, Value};

const CHAT: &str = "/v1/chat/completions";
const MESSAGES: &str = "/v1/messages";
const RESPONSES: &str = "/v1/responses";

/// A prompt scripting two parallel tool calls.
const PROMPT: &str = "Check the weather.\n  mock-tool: get_weather {\"city\": \"Paris\", \"days\": 2}\nmock-tool: get_time";
/// The calls it scripts: name and compact JSON arguments.
const CALLS: [(&str, &str); 2] = [
    ("get_weather", r#"{"city":"Paris","days":2}"#),
    ("get_time", "{}"),
];
/// The results the tests send back, and the answer they get.
const RESULTS: [&str; 2] = ["sunny, 21 C", "12:00"];
const RESULT_ANSWER: &str = "tool result: sunny, 21 C; 12:00";
/// A prompt without directives, longer than the 40 characters the thinking text quotes.
const QUESTION: &str = "Explain the borrow checker in one paragraph, please.";
const THINKING: &str = "thinking about: Explain the borrow checker in one paragr";

/// Output tokens of the scripted calls: their names and arguments.
fn calls_tokens() -> u64 {
    est(&CALLS
        .iter()
        .map(|(name, args)| format!("{name}{args}"))
        .collect::<String>())
}

/// `base` with the fields of `extra` set.
fn with(mut base: Value, extra: Value) -> Value {
    if let Value::Object(fields) = extra {
        for (key, value) in fields {
            base[key] = value;
        }
    }
    base
}

fn chat_body(messages: Value, extra: Value) -> Value {
    let tool = |name: &str| json!({"type": "function", "function": {"name": name, "parameters": {"type": "object"}}});
    with(
        json!({"model": "gpt-4o", "messages": messages, "tools": [tool("get_weather"), tool("get_time")]}),
        extra,
    )
}

fn claude_body(messages: Value, extra: Value) -> Value {
    let tool = |name: &str| json!({"name": name, "input_schema": {"type": "object"}});
    with(
        json!({"model": "claude-sonnet-4-5", "max_tokens": 4096, "messages": messages,
            "tools": [tool("get_weather"), tool("get_time")]}),
        extra,
    )
}

fn responses_body(input: Value, extra: Value) -> Value {
    let tool =
        |name: &str| json!({"type": "function", "name": name, "parameters": {"type": "object"}});
    with(
        json!({"model": "gpt-5", "input": input, "tools": [tool("get_weather"), tool("get_time")]}),
        extra,
    )
}

fn stream() -> Value {
    json!({"stream": true})
}

fn stream_usage() -> Value {
    json!({"stream": true, "stream_options": {"include_usage": true}})
}

async fn text_of(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: Value) -> String {
    let resp = post(addr, path, headers, body).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.text()
}

async fn json_of(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: Value) -> Value {
    serde_json::from_str(&text_of(addr, path, headers, body).await).expect("JSON reply")
}

/// Characters of the prompt after a round trip: the prompt, the calls' arguments, the results.
fn round_trip_chars() -> String {
    format!(
        "{PROMPT}{}{}{}{}",
        CALLS[0].1, CALLS[1].1, RESULTS[0], RESULTS[1]
    )
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
}

/// Concatenated string `field` (a JSON pointer) of the events named `name` whose number at
/// pointer `at.0` is `at.1`; events without the field are passed over.
fn joined(events: &[(String, Value)], name: &str, field: &str, at: (&str, usize)) -> String {
    events
        .iter()
        .filter(|(n, d)| n == name && d.pointer(at.0).and_then(Value::as_u64) == Some(at.1 as u64))
        .filter_map(|(_, d)| d.pointer(field).and_then(Value::as_str))
        .collect()
}

/// Text content of a chat stream.
fn chat_stream_text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Chat Completions

#[tokio::test]
async fn chat_tool_calls_plain_and_streamed() {
    let mock = start().await;
    let messages =
        json!([{"role": "system", "content": "tools"}, {"role": "user", "content": PROMPT}]);
    let v = json_of(mock.addr, CHAT, &[], chat_body(messages.clone(), json!({}))).await;
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let message = &choice["message"];
    assert_eq!(message["role"], "assistant");
    assert!(message.get("content").is_some_and(Value::is_null));
    assert!(message.get("refusal").is_some_and(Value::is_null));
    let calls = message["tool_calls"].as_array().expect("tool_calls");
    assert_eq!(calls.len(), 2);
    for (call, (name, args)) in calls.iter().zip(CALLS) {
        let id = call["id"].as_str().expect("id");
        assert!(id.starts_with("call_") && id.len() == 29, "{id}");
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"], json!({"name": name, "arguments": args}));
    }
    assert_ne!(calls[0]["id"], calls[1]["id"]);
    assert_eq!(v["usage"]["completion_tokens"], calls_tokens());
    assert_eq!(v["usage"]["prompt_tokens"], est(&format!("tools{PROMPT}")));
    // The same request gets the same ids, so golden files stay stable.
    let again = json_of(mock.addr, CHAT, &[], chat_body(messages.clone(), json!({}))).await;
    assert_eq!(
        again["choices"][0]["message"]["tool_calls"],
        message["tool_calls"]
    );

    // Streamed with one chunk: each call opens with its id and name, then its arguments come
    // in two fragments.
    let body = chat_body(messages, stream_usage());
    let chunks = chat_chunks(&text_of(mock.addr, CHAT, &[("x-mock-chunks", "1")], body).await);
    let opening = &chunks[0]["choices"][0]["delta"];
    assert_eq!(opening["role"], "assistant");
    assert!(opening.get("content").is_some_and(Value::is_null));
    assert!(opening.get("refusal").is_some_and(Value::is_null));
    let (usage_chunk, rest) = chunks.split_last().expect("usage chunk");
    let (finish, deltas) = rest.split_last().expect("finish chunk");
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    let mut sequence = Vec::new();
    let mut args = [String::new(), String::new()];
    for chunk in deltas {
        assert!(chunk["choices"][0]["finish_reason"].is_null());
        let delta_calls = chunk["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .expect("tool_calls");
        assert_eq!(delta_calls.len(), 1, "one call per chunk");
        let call = &delta_calls[0];
        let index = call["index"].as_u64().expect("index") as usize;
        if call.get("id").is_some() {
            assert_eq!(call["id"], calls[index]["id"]);
            assert_eq!(call["type"], "function");
            assert_eq!(call["function"]["name"], CALLS[index].0);
            assert_eq!(call["function"]["arguments"], "");
            sequence.push((index, "head"));
        } else {
            assert!(call["function"].get("name").is_none());
            args[index].push_str(call["function"]["arguments"].as_str().expect("fragment"));
            sequence.push((index, "fragment"));
        }
    }
    assert_eq!(
        sequence,
        [
            (0, "head"),
            (0, "fragment"),
            (0, "fragment"),
            (1, "head"),
            (1, "fragment"),
            (1, "fragment")
        ]
    );
    assert_eq!(args, [CALLS[0].1, CALLS[1].1]);
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["completion_tokens"], calls_tokens());
}

#[tokio::test]
async fn chat_tool_results_round_trip() {
    let mock = start().await;
    let mut messages = vec![json!({"role": "user", "content": PROMPT})];
    let v = json_of(mock.addr, CHAT, &[], chat_body(json!(messages), json!({}))).await;
    let assistant = v["choices"][0]["message"].clone();
    let ids: Vec<Value> = assistant["tool_calls"]
        .as_array()
        .expect("tool_calls")
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    messages.push(assistant);
    messages.push(json!({"role": "tool", "tool_call_id": ids[0], "content": RESULTS[0]}));
    messages.push(json!({"role": "tool", "tool_call_id": ids[1],
        "content": [{"type": "text", "text": RESULTS[1]}]}));

    let v = json_of(mock.addr, CHAT, &[], chat_body(json!(messages), json!({}))).await;
    assert_eq!(v["choices"][0]["message"]["content"], RESULT_ANSWER);
    assert!(v["choices"][0]["message"].get("tool_calls").is_none());
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // The prompt counts the calls' arguments and the results too.
    assert_eq!(v["usage"]["prompt_tokens"], est(&round_trip_chars()));
    assert_eq!(v["usage"]["completion_tokens"], est(RESULT_ANSWER));

    let chunks =
        chat_chunks(&text_of(mock.addr, CHAT, &[], chat_body(json!(messages), stream())).await);
    assert_eq!(chat_stream_text(&chunks), RESULT_ANSWER);
    assert_eq!(
        chunks.last().expect("finish")["choices"][0]["finish_reason"],
        "stop"
    );
}

#[tokio::test]
async fn chat_reasoning_effort_reports_reasoning_tokens() {
    let mock = start().await;
    let messages = json!([{"role": "user", "content": QUESTION}]);
    let v = json_of(
        mock.addr,
        CHAT,
        &[],
        chat_body(messages.clone(), json!({"reasoning_effort": "low"})),
    )
    .await;
    let message = &v["choices"][0]["message"];
    assert_eq!(message["content"], QUESTION, "no visible reasoning");
    assert!(message.get("reasoning").is_none() && message.get("reasoning_content").is_none());
    let usage = &v["usage"];
    assert_eq!(
        usage["completion_tokens_details"]["reasoning_tokens"],
        est(THINKING)
    );
    assert_eq!(usage["completion_tokens"], est(QUESTION) + est(THINKING));
    assert_eq!(usage["total_tokens"], est(QUESTION) * 2 + est(THINKING));

    let body = chat_body(
        messages.clone(),
        with(stream_usage(), json!({"reasoning_effort": "high"})),
    );
    let chunks = chat_chunks(&text_of(mock.addr, CHAT, &[], body).await);
    assert_eq!(chat_stream_text(&chunks), QUESTION);
    let usage = &chunks.last().expect("usage chunk")["usage"];
    assert_eq!(
        usage["completion_tokens_details"]["reasoning_tokens"],
        est(THINKING)
    );
    assert_eq!(usage["completion_tokens"], est(QUESTION) + est(THINKING));

    for extra in [json!({"reasoning_effort": "none"}), json!({})] {
        let v = json_of(mock.addr, CHAT, &[], chat_body(messages.clone(), extra)).await;
        assert_eq!(
            v["usage"]["completion_tokens_details"]["reasoning_tokens"],
            0
        );
        assert_eq!(v["usage"]["completion_tokens"], est(QUESTION));
    }
}

// ---------------------------------------------------------------------------------------------
// Anthropic Messages

#[tokio::test]
async fn anthropic_tool_use_plain_and_streamed() {
    let mock = start().await;
    let messages = json!([{"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>context</system-reminder>"},
        {"type": "text", "text": PROMPT, "cache_control": {"type": "ephemeral"}}
    ]}]);
    let v = json_of(
        mock.addr,
        MESSAGES,
        &[],
        claude_body(messages.clone(), json!({})),
    )
    .await;
    assert_eq!(v["stop_reason"], "tool_use");
    let blocks = v["content"].as_array().expect("content");
    assert_eq!(blocks.len(), 2);
    for (block, (name, args)) in blocks.iter().zip(CALLS) {
        assert_eq!(block["type"], "tool_use");
        let id = block["id"].as_str().expect("id");
        assert!(id.starts_with("toolu_01") && id.len() == 30, "{id}");
        assert_eq!(block["name"], name);
        assert_eq!(
            block["input"],
            serde_json::from_str::<Value>(args).expect("args")
        );
    }
    assert_ne!(blocks[0]["id"], blocks[1]["id"]);
    assert_eq!(v["usage"]["output_tokens"], calls_tokens());
    let again = json_of(
        mock.addr,
        MESSAGES,
        &[],
        claude_body(messages.clone(), json!({})),
    )
    .await;
    assert_eq!(again["content"], v["content"]);

    let body = claude_body(messages, stream());
    let events = named_events(&text_of(mock.addr, MESSAGES, &[("x-mock-chunks", "1")], body).await);
    assert_eq!(
        names(&events),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for (index, at) in [(0, 1), (1, 6)] {
        let (_, start) = &events[at];
        assert_eq!(start["index"], index);
        let expected = with(blocks[index].clone(), json!({"input": {}}));
        assert_eq!(
            start["content_block"], expected,
            "tool_use opens with empty input"
        );
        let (_, stop) = &events[at + if index == 0 { 4 } else { 3 }];
        assert_eq!(stop["index"], index);
    }
    for (_, d) in events.iter().filter(|(n, _)| n == "content_block_delta") {
        assert_eq!(d["delta"]["type"], "input_json_delta");
    }
    for (index, (_, args)) in CALLS.iter().enumerate() {
        let json = joined(
            &events,
            "content_block_delta",
            "/delta/partial_json",
            ("/index", index),
        );
        assert_eq!(json, *args);
        assert_eq!(
            serde_json::from_str::<Value>(&json).expect("JSON"),
            blocks[index]["input"]
        );
    }
    let (_, delta) = &events[10];
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(delta["usage"]["output_tokens"], calls_tokens());
}

#[tokio::test]
async fn anthropic_tool_results_round_trip() {
    let mock = start().await;
    let mut messages = vec![json!({"role": "user", "content": PROMPT})];
    let v = json_of(
        mock.addr,
        MESSAGES,
        &[],
        claude_body(json!(messages), json!({})),
    )
    .await;
    let ids: Vec<Value> = v["content"]
        .as_array()
        .expect("content")
        .iter()
        .map(|b| b["id"].clone())
        .collect();
    messages.push(json!({"role": "assistant", "content": v["content"]}));
    // Directives next to tool results are ignored: results end the conversation.
    messages.push(json!({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": ids[0], "content": RESULTS[0]},
        {"type": "tool_result", "tool_use_id": ids[1], "content": [{"type": "text", "text": RESULTS[1]}]},
        {"type": "text", "text": "mock-tool: get_time"}
    ]}));

    let v = json_of(
        mock.addr,
        MESSAGES,
        &[],
        claude_body(json!(messages), json!({})),
    )
    .await;
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": RESULT_ANSWER}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    let prompt_chars = format!("{}mock-tool: get_time", round_trip_chars());
    assert_eq!(v["usage"]["input_tokens"], est(&prompt_chars));
    assert_eq!(v["usage"]["output_tokens"], est(RESULT_ANSWER));

    let events = named_events(
        &text_of(
            mock.addr,
            MESSAGES,
            &[],
            claude_body(json!(messages), stream()),
        )
        .await,
    );
    assert_eq!(
        joined(&events, "content_block_delta", "/delta/text", ("/index", 0)),
        RESULT_ANSWER
    );
    let (_, delta) = &events[events.len() - 2];
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
}

#[tokio::test]
async fn anthropic_thinking_block_comes_first() {
    let mock = start().await;
    let thinking = json!({"thinking": {"type": "enabled", "budget_tokens": 2048}});
    let messages = json!([{"role": "user", "content": QUESTION}]);
    let v = json_of(
        mock.addr,
        MESSAGES,
        &[],
        claude_body(messages.clone(), thinking.clone()),
    )
    .await;
    let blocks = v["content"].as_array().expect("content");
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0]["type"], "thinking");
    assert_eq!(blocks[0]["thinking"], THINKING);
    let signature = blocks[0]["signature"].as_str().expect("signature");
    assert!(signature.len() >= 32);
    assert_eq!(blocks[1], json!({"type": "text", "text": QUESTION}));
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["output_tokens"], est(QUESTION) + est(THINKING));
    let again = json_of(
        mock.addr,
        MESSAGES,
        &[],
        claude_body(messages.clone(), thinking.clone()),
    )
    .await;
    assert_eq!(
        again["content"][0]["signature"], signature,
        "deterministic signature"
    );

    let body = claude_body(messages, with(thinking.clone(), stream()));
    let events = named_events(&text_of(mock.addr, MESSAGES, &[("x-mock-chunks", "3")], body).await);
    assert_eq!(
        names(&events),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        events[1].1["content_block"],
        json!({"type": "thinking", "thinking": "", "signature": ""})
    );
    let kinds: Vec<&str> = events[3..7]
        .iter()
        .map(|(_, d)| d["delta"]["type"].as_str().expect("delta type"))
        .collect();
    assert_eq!(
        kinds,
        [
            "thinking_delta",
            "thinking_delta",
            "thinking_delta",
            "signature_delta"
        ]
    );
    assert_eq!(
        joined(
            &events,
            "content_block_delta",
            "/delta/thinking",
            ("/index", 0)
        ),
        THINKING
    );
    assert_eq!(events[6].1["delta"]["signature"], signature);
    assert_eq!(
        events[8].1["content_block"],
        json!({"type": "text", "text": ""})
    );
    assert_eq!(
        joined(&events, "content_block_delta", "/delta/text", ("/index", 1)),
        QUESTION
    );
    assert_eq!(
        events[13].1["usage"]["output_tokens"],
        est(QUESTION) + est(THINKING)
    );

    // Thinking before tool calls, and adaptive thinking counts as asked.
    let prompt = json!([{"role": "user", "content": PROMPT}]);
    let v = json_of(
        mock.addr,
        MESSAGES,
        &[],
        claude_body(prompt, json!({"thinking": {"type": "adaptive"}})),
    )
    .await;
    let kinds: Vec<&str> = v["content"]
        .as_array()
        .expect("content")
        .iter()
        .map(|b| b["type"].as_str().expect("type"))
        .collect();
    assert_eq!(kinds, ["thinking", "tool_use", "tool_use"]);
    assert_eq!(v["stop_reason"], "tool_use");
    // `display: "omitted"` (Claude Code sends it) keeps the signature and drops the text; the
    // thinking is still billed.
    let omitted =
        json!({"thinking": {"type": "enabled", "budget_tokens": 2048, "display": "omitted"}});
    let question = json!([{"role": "user", "content": QUESTION}]);
    let v = json_of(
        mock.addr,
        MESSAGES,
        &[],
        claude_body(question.clone(), omitted.clone()),
    )
    .await;
    assert_eq!(
        v["content"][0],
        json!({"type": "thinking", "thinking": "", "signature": signature})
    );
    assert_eq!(v["usage"]["output_tokens"], est(QUESTION) + est(THINKING));
    let body = claude_body(question, with(omitted, stream()));
    let events = named_events(&text_of(mock.addr, MESSAGES, &[], body).await);
    let deltas: Vec<&Value> = events
        .iter()
        .filter(|(_, d)| d["index"] == 0 && d["type"] == "content_block_delta")
        .map(|(_, d)| &d["delta"])
        .collect();
    assert_eq!(
        deltas,
        [&json!({"type": "signature_delta", "signature": signature})]
    );
    // Disabled thinking is no thinking.
    let v = json_of(
        mock.addr,
        MESSAGES,
        &[],
        claude_body(
            json!([{"role": "user", "content": QUESTION}]),
            json!({"thinking": {"type": "disabled"}}),
        ),
    )
    .await;
    assert_eq!(v["content"], json!([{"type": "text", "text": QUESTION}]));
}

// ---------------------------------------------------------------------------------------------
// Responses

#[tokio::test]
async fn responses_function_calls_plain_and_streamed() {
    let mock = start().await;
    let input = json!([
        {"role": "developer", "content": "be useful"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": PROMPT}]}
    ]);
    let v = json_of(
        mock.addr,
        RESPONSES,
        &[],
        responses_body(input.clone(), json!({})),
    )
    .await;
    assert_eq!(v["status"], "completed");
    assert_eq!(v["tools"][0]["name"], "get_weather", "tools echoed");
    let output = v["output"].as_array().expect("output");
    assert_eq!(output.len(), 2);
    for (item, (name, args)) in output.iter().zip(CALLS) {
        assert_eq!(item["type"], "function_call");
        assert_eq!(item["status"], "completed");
        let id = item["id"].as_str().expect("id");
        assert!(id.starts_with("fc_") && id.len() == 51, "{id}");
        let call_id = item["call_id"].as_str().expect("call_id");
        assert!(
            call_id.starts_with("call_") && call_id.len() == 29,
            "{call_id}"
        );
        assert_eq!(item["name"], name);
        assert_eq!(item["arguments"], args);
    }
    assert_ne!(output[0]["call_id"], output[1]["call_id"]);
    assert_eq!(v["usage"]["output_tokens"], calls_tokens());
    assert_eq!(
        v["usage"]["input_tokens"],
        est(&format!("be useful{PROMPT}"))
    );
    let again = json_of(
        mock.addr,
        RESPONSES,
        &[],
        responses_body(input.clone(), json!({})),
    )
    .await;
    assert_eq!(again["output"], v["output"]);

    let body = responses_body(input, stream());
    let events =
        named_events(&text_of(mock.addr, RESPONSES, &[("x-mock-chunks", "1")], body).await);
    let call_events = [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ];
    let expected: Vec<&str> = ["response.created", "response.in_progress"]
        .into_iter()
        .chain(call_events)
        .chain(call_events)
        .chain(["response.completed"])
        .collect();
    assert_eq!(names(&events), expected);
    for (i, (_, d)) in events.iter().enumerate() {
        assert_eq!(d["sequence_number"], i);
    }
    for (index, (name, args)) in CALLS.iter().enumerate() {
        let at = 2 + 5 * index;
        let added = &events[at].1;
        assert_eq!(added["output_index"], index);
        assert_eq!(
            added["item"],
            with(
                output[index].clone(),
                json!({"status": "in_progress", "arguments": ""})
            )
        );
        for (_, d) in &events[at + 1..at + 4] {
            assert_eq!(d["item_id"], output[index]["id"]);
            assert_eq!(d["output_index"], index);
        }
        let fragments = joined(
            &events,
            "response.function_call_arguments.delta",
            "/delta",
            ("/output_index", index),
        );
        assert_eq!(fragments, *args);
        let done = &events[at + 3].1;
        assert_eq!(
            (done["name"].as_str(), done["arguments"].as_str()),
            (Some(*name), Some(*args))
        );
        assert_eq!(events[at + 4].1["item"], output[index]);
    }
    let completed = &events.last().expect("completed").1["response"];
    assert_eq!(completed["output"], v["output"]);

    // A string input scripts calls too.
    let v = json_of(
        mock.addr,
        RESPONSES,
        &[],
        responses_body(json!(PROMPT), json!({})),
    )
    .await;
    assert_eq!(v["output"][1]["name"], "get_time");
}

#[tokio::test]
async fn responses_function_call_outputs_round_trip() {
    let mock = start().await;
    let mut input =
        vec![json!({"role": "user", "content": [{"type": "input_text", "text": PROMPT}]})];
    let v = json_of(
        mock.addr,
        RESPONSES,
        &[],
        responses_body(json!(input), json!({})),
    )
    .await;
    let calls = v["output"].as_array().expect("output").clone();
    input.extend(calls.iter().cloned());
    for (call, result) in calls.iter().zip(RESULTS) {
        input.push(
            json!({"type": "function_call_output", "call_id": call["call_id"], "output": result}),
        );
    }

    let v = json_of(
        mock.addr,
        RESPONSES,
        &[],
        responses_body(json!(input), json!({})),
    )
    .await;
    let output = v["output"].as_array().expect("output");
    assert_eq!(output.len(), 1);
    assert_eq!(output[0]["type"], "message");
    assert_eq!(output[0]["content"][0]["text"], RESULT_ANSWER);
    assert_eq!(v["usage"]["input_tokens"], est(&round_trip_chars()));
    assert_eq!(v["usage"]["output_tokens"], est(RESULT_ANSWER));

    let events = named_events(
        &text_of(
            mock.addr,
            RESPONSES,
            &[],
            responses_body(json!(input), stream()),
        )
        .await,
    );
    let text = joined(
        &events,
        "response.output_text.delta",
        "/delta",
        ("/output_index", 0),
    );
    assert_eq!(text, RESULT_ANSWER);
}

#[tokio::test]
async fn responses_reasoning_item_comes_first() {
    let mock = start().await;
    let reasoning = json!({"reasoning": {"effort": "medium", "summary": "auto"},
        "include": ["reasoning.encrypted_content"]});
    let v = json_of(
        mock.addr,
        RESPONSES,
        &[],
        responses_body(json!(QUESTION), reasoning.clone()),
    )
    .await;
    assert_eq!(
        v["reasoning"],
        json!({"effort": "medium", "summary": "auto"})
    );
    let output = v["output"].as_array().expect("output");
    assert_eq!(output.len(), 2);
    let item = &output[0];
    assert_eq!(item["type"], "reasoning");
    assert!(item["id"].as_str().is_some_and(|id| id.starts_with("rs_")));
    assert_eq!(
        item["summary"],
        json!([{"type": "summary_text", "text": THINKING}])
    );
    let encrypted = item["encrypted_content"]
        .as_str()
        .expect("encrypted_content");
    assert!(encrypted.starts_with("gAAAAA") && encrypted.len() > 100);
    assert_eq!(output[1]["content"][0]["text"], QUESTION);
    let usage = &v["usage"];
    assert_eq!(
        usage["output_tokens_details"]["reasoning_tokens"],
        est(THINKING)
    );
    assert_eq!(usage["output_tokens"], est(QUESTION) + est(THINKING));
    assert_eq!(usage["total_tokens"], est(QUESTION) * 2 + est(THINKING));

    // Without the include, no encrypted content; effort alone asks for reasoning.
    let v = json_of(
        mock.addr,
        RESPONSES,
        &[],
        responses_body(json!(QUESTION), json!({"reasoning": {"effort": "low"}})),
    )
    .await;
    assert_eq!(v["output"][0]["type"], "reasoning");
    assert!(v["output"][0].get("encrypted_content").is_none());
    let v = json_of(
        mock.addr,
        RESPONSES,
        &[],
        responses_body(json!(QUESTION), json!({})),
    )
    .await;
    assert_eq!(v["output"][0]["type"], "message");
    assert_eq!(v["usage"]["output_tokens_details"]["reasoning_tokens"], 0);

    let body = responses_body(json!(QUESTION), with(reasoning, stream()));
    let events =
        named_events(&text_of(mock.addr, RESPONSES, &[("x-mock-chunks", "2")], body).await);
    assert_eq!(
        names(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let added = &events[2].1;
    assert_eq!(added["output_index"], 0);
    assert_eq!(added["item"]["summary"], json!([]));
    for (_, d) in &events[3..8] {
        assert_eq!(d["item_id"], item["id"]);
        assert_eq!(
            (d["output_index"].as_u64(), d["summary_index"].as_u64()),
            (Some(0), Some(0))
        );
    }
    assert_eq!(
        events[3].1["part"],
        json!({"type": "summary_text", "text": ""})
    );
    let summary = joined(
        &events,
        "response.reasoning_summary_text.delta",
        "/delta",
        ("/output_index", 0),
    );
    assert_eq!(summary, THINKING);
    assert_eq!(events[6].1["text"], THINKING);
    assert_eq!(
        events[7].1["part"],
        json!({"type": "summary_text", "text": THINKING})
    );
    assert_eq!(events[8].1["item"], *item);
    assert_eq!(events[9].1["output_index"], 1);
    assert_eq!(
        joined(
            &events,
            "response.output_text.delta",
            "/delta",
            ("/output_index", 1)
        ),
        QUESTION
    );
    let completed = &events[16].1["response"];
    assert_eq!(completed["output"][0], *item);
    assert_eq!(
        completed["usage"]["output_tokens_details"]["reasoning_tokens"],
        est(THINKING)
    );
}

// ---------------------------------------------------------------------------------------------
// Every surface

/// The usage object of a reply on `path`, plain or streamed (the final figures).
fn usage_of(path: &str, text: &str, stream: bool) -> Value {
    if !stream {
        return serde_json::from_str::<Value>(text).expect("JSON")["usage"].clone();
    }
    match path {
        CHAT => chat_chunks(text).last().expect("usage chunk")["usage"].clone(),
        MESSAGES => {
            let events = named_events(text);
            let mut usage = events[0].1["message"]["usage"].clone();
            let (_, delta) = events
                .iter()
                .find(|(n, _)| n == "message_delta")
                .expect("message_delta");
            usage["output_tokens"] = delta["usage"]["output_tokens"].clone();
            usage
        }
        _ => named_events(text).last().expect("completed").1["response"]["usage"].clone(),
    }
}

/// A plain or streamed request for `QUESTION` on each surface.
fn question(path: &str, stream: bool) -> Value {
    let extra = if stream { stream_usage() } else { json!({}) };
    let messages = json!([{"role": "user", "content": QUESTION}]);
    match path {
        CHAT => chat_body(messages, extra),
        MESSAGES => claude_body(messages, extra),
        _ => responses_body(json!(QUESTION), extra),
    }
}

#[tokio::test]
async fn cache_tokens_on_every_surface() {
    let mock = start().await;
    let input = est(QUESTION);
    let headers = [("x-mock-cache-read", "1000"), ("x-mock-cache-write", "24")];
    let key = [("authorization", "Bearer sk-cacheread64")];
    for stream in [false, true] {
        for (controls, read, write) in
            [(&headers[..], 1000, 24), (&key[..], 64, 0), (&[][..], 0, 0)]
        {
            let text = text_of(mock.addr, CHAT, controls, question(CHAT, stream)).await;
            let usage = usage_of(CHAT, &text, stream);
            assert_eq!(usage["prompt_tokens"], input + read + write, "{usage}");
            assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], read);
            assert_eq!(usage["total_tokens"], input + read + write + est(QUESTION));

            let text = text_of(mock.addr, RESPONSES, controls, question(RESPONSES, stream)).await;
            let usage = usage_of(RESPONSES, &text, stream);
            assert_eq!(usage["input_tokens"], input + read + write, "{usage}");
            assert_eq!(usage["input_tokens_details"]["cached_tokens"], read);
            assert_eq!(usage["total_tokens"], input + read + write + est(QUESTION));

            let text = text_of(mock.addr, MESSAGES, controls, question(MESSAGES, stream)).await;
            let usage = usage_of(MESSAGES, &text, stream);
            assert_eq!(
                usage["input_tokens"], input,
                "Anthropic leaves cached tokens out: {usage}"
            );
            assert_eq!(usage["cache_read_input_tokens"], read);
            assert_eq!(usage["cache_creation_input_tokens"], write);
            assert_eq!(usage["output_tokens"], est(QUESTION));
        }
    }
    let resp = post(
        mock.addr,
        CHAT,
        &[("x-mock-cache-read", "lots")],
        question(CHAT, false),
    )
    .await;
    assert_eq!(resp.status, 400);
    assert!(resp.text().contains("x-mock-cache-read"));
}

#[tokio::test]
async fn usage_can_still_be_left_out_of_scripted_replies() {
    let mock = start().await;
    let omit = [("x-mock-usage", "omit"), ("x-mock-cache-read", "10")];
    let chat_tools = chat_body(
        json!([{"role": "user", "content": PROMPT}]),
        json!({"reasoning_effort": "low"}),
    );
    let claude_tools = claude_body(
        json!([{"role": "user", "content": PROMPT}]),
        json!({"thinking": {"type": "enabled", "budget_tokens": 1024}}),
    );
    let responses_tools = responses_body(json!(PROMPT), json!({"reasoning": {"effort": "low"}}));
    let cases = [
        (CHAT, chat_tools.clone(), "get_weather"),
        (CHAT, with(chat_tools, stream_usage()), "get_weather"),
        (MESSAGES, claude_tools.clone(), "tool_use"),
        (MESSAGES, with(claude_tools, stream()), "thinking_delta"),
        (RESPONSES, responses_tools.clone(), "function_call"),
        (
            RESPONSES,
            with(responses_tools, stream()),
            "reasoning_summary_text",
        ),
    ];
    for (path, body, marker) in cases {
        let text = text_of(mock.addr, path, &omit, body.clone()).await;
        assert!(!text.contains("\"usage\""), "{path} {body}: {text}");
        assert!(text.contains(marker), "{path}: {text}");
        let key = [("authorization", "Bearer sk-nousage")];
        assert!(!text_of(mock.addr, path, &key, body)
            .await
            .contains("\"usage\""));
    }
}
