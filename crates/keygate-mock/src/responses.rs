//! OpenAI Responses API: `POST /v1/responses`, non-streamed and streamed (named events with
//! `sequence_number`).

use http::StatusCode;
use serde_json::{json, Value};

use crate::errors::{error_reply, Shape};
use crate::reply::{Ctx, Reply, SseEvent};
use crate::script::{argument_pieces, opaque, Answer, ToolCall, Turn};
use crate::text::{messages_chars, split_chunks, unix_now};

/// Bytes behind a reasoning item's `encrypted_content`.
const ENCRYPTED_BYTES: usize = 96;

/// The turn answering `input`: a string, or an array of items (`None` for anything else).
fn input_turn(input: &Value) -> Option<Turn> {
    match input {
        Value::String(_) => Some(Turn::of_text(input)),
        Value::Array(items) => Some(Turn::of_items(items)),
        _ => None,
    }
}

/// Characters across `input` (a string, or every item's text and tool traffic) and
/// `instructions`.
fn input_chars(req: &Value) -> usize {
    let input = match req.get("input") {
        Some(Value::String(s)) => s.chars().count(),
        items => messages_chars(items),
    };
    let instructions = req
        .get("instructions")
        .and_then(Value::as_str)
        .map_or(0, |s| s.chars().count());
    input + instructions
}

/// Whether the request asks for reasoning: `reasoning.effort` (other than `none`) or
/// `reasoning.summary`.
fn wants_reasoning(req: &Value) -> bool {
    let field = |name: &str| {
        req.get("reasoning")
            .and_then(|r| r.get(name))
            .and_then(Value::as_str)
    };
    match field("effort") {
        Some("none") => false,
        Some(_) => true,
        None => field("summary").is_some(),
    }
}

/// Whether `include` asks for `reasoning.encrypted_content`.
fn wants_encrypted_reasoning(req: &Value) -> bool {
    req.get("include")
        .and_then(Value::as_array)
        .is_some_and(|list| list.iter().any(|i| i == "reasoning.encrypted_content"))
}

/// `request[name]`, or `default` when the request has none.
fn echo(req: &Value, name: &str, default: Value) -> Value {
    req.get(name)
        .filter(|v| !v.is_null())
        .cloned()
        .unwrap_or(default)
}

/// One output item of a response.
enum Item<'a> {
    Reasoning {
        id: String,
        summary: String,
        encrypted: Option<String>,
    },
    Message {
        id: String,
        text: &'a str,
    },
    Call {
        id: String,
        call_id: String,
        call: &'a ToolCall,
    },
}

impl Item<'_> {
    fn id(&self) -> &str {
        match self {
            Item::Reasoning { id, .. } | Item::Message { id, .. } | Item::Call { id, .. } => id,
        }
    }

    /// The item complete (`done`) or as `response.output_item.added` announces it.
    fn render(&self, done: bool) -> Value {
        match self {
            Item::Reasoning {
                id,
                summary,
                encrypted,
            } => {
                let summary = if done {
                    json!([{"type": "summary_text", "text": summary}])
                } else {
                    json!([])
                };
                let mut item = json!({"id": id, "type": "reasoning", "summary": summary});
                if let Some(encrypted) = encrypted {
                    item["encrypted_content"] = json!(encrypted);
                }
                item
            }
            Item::Message { id, text } => {
                let (status, content) = if done {
                    ("completed", json!([output_text(text)]))
                } else {
                    ("in_progress", json!([]))
                };
                json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
            }
            Item::Call { id, call_id, call } => {
                let (status, arguments) = if done {
                    ("completed", call.arguments.as_str())
                } else {
                    ("in_progress", "")
                };
                json!({
                    "id": id,
                    "type": "function_call",
                    "status": status,
                    "arguments": arguments,
                    "call_id": call_id,
                    "name": call.name
                })
            }
        }
    }

    /// The events between the item's `added` and `done`: name, data (without `item_id` and
    /// `output_index`) and whether it is paced content.
    fn events(&self, chunks: usize) -> Vec<(&'static str, Value, bool)> {
        let mut events = Vec::new();
        match self {
            Item::Reasoning { summary, .. } => {
                let part = |text: &str| json!({"type": "summary_text", "text": text});
                let at = |mut extra: Value| {
                    extra["summary_index"] = json!(0);
                    extra
                };
                events.push((
                    "response.reasoning_summary_part.added",
                    at(json!({"part": part("")})),
                    false,
                ));
                for piece in split_chunks(summary, chunks) {
                    events.push((
                        "response.reasoning_summary_text.delta",
                        at(json!({"delta": piece})),
                        true,
                    ));
                }
                events.push((
                    "response.reasoning_summary_text.done",
                    at(json!({"text": summary})),
                    false,
                ));
                events.push((
                    "response.reasoning_summary_part.done",
                    at(json!({"part": part(summary)})),
                    false,
                ));
            }
            Item::Message { text, .. } => {
                let at = |mut extra: Value| {
                    extra["content_index"] = json!(0);
                    extra
                };
                events.push((
                    "response.content_part.added",
                    at(json!({"part": output_text("")})),
                    false,
                ));
                for piece in split_chunks(text, chunks) {
                    events.push((
                        "response.output_text.delta",
                        at(json!({"delta": piece, "logprobs": []})),
                        true,
                    ));
                }
                events.push((
                    "response.output_text.done",
                    at(json!({"text": text, "logprobs": []})),
                    false,
                ));
                events.push((
                    "response.content_part.done",
                    at(json!({"part": output_text(text)})),
                    false,
                ));
            }
            Item::Call { call, .. } => {
                for piece in argument_pieces(&call.arguments, chunks) {
                    events.push((
                        "response.function_call_arguments.delta",
                        json!({"delta": piece}),
                        true,
                    ));
                }
                events.push((
                    "response.function_call_arguments.done",
                    json!({"name": call.name, "arguments": call.arguments}),
                    false,
                ));
            }
        }
        events
    }
}

fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": []})
}

/// `POST /v1/responses`: echoes the last user input, or makes the function calls its
/// `mock-tool:` lines script, or acknowledges function call outputs; a reasoning item first
/// when asked; streamed or not.
pub(crate) fn create(req: &Value, ctx: Ctx<'_>) -> Reply {
    let Some(model) = req.get("model").and_then(Value::as_str) else {
        return error_reply(
            Shape::OpenAi,
            StatusCode::BAD_REQUEST,
            "Missing required parameter: 'model'.",
        );
    };
    let Some(turn) = req.get("input").and_then(input_turn) else {
        return error_reply(
            Shape::OpenAi,
            StatusCode::BAD_REQUEST,
            "Missing required parameter: 'input'.",
        );
    };
    let reasoning = wants_reasoning(req);
    let tokens = turn.tokens(input_chars(req), ctx.cache, reasoning);
    let resp_id = ctx.ids.next("resp_");
    let mut items = Vec::new();
    if reasoning {
        let summary = turn.thinking();
        let encrypted = wants_encrypted_reasoning(req).then(|| {
            format!(
                "gAAAAA{}",
                opaque(&summary, "encrypted_content", ENCRYPTED_BYTES)
            )
        });
        items.push(Item::Reasoning {
            id: turn.id("rs_", 0),
            summary,
            encrypted,
        });
    }
    match &turn.answer {
        Answer::Text(text) => items.push(Item::Message {
            id: ctx.ids.next("msg_"),
            text,
        }),
        Answer::Tools(calls) => {
            items.extend(calls.iter().enumerate().map(|(i, call)| Item::Call {
                id: turn.id("fc_", i),
                call_id: turn.id("call_", i),
                call,
            }));
        }
    }
    let requested_reasoning = req.get("reasoning");
    let reasoning_field = |name: &str| {
        requested_reasoning
            .and_then(|r| r.get(name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let response = |status: &str, output: Value, usage: Value| {
        json!({
            "id": resp_id,
            "object": "response",
            "created_at": unix_now(),
            "status": status,
            "error": null,
            "incomplete_details": null,
            "instructions": echo(req, "instructions", Value::Null),
            "max_output_tokens": echo(req, "max_output_tokens", Value::Null),
            "model": model,
            "output": output,
            "parallel_tool_calls": echo(req, "parallel_tool_calls", json!(true)),
            "previous_response_id": echo(req, "previous_response_id", Value::Null),
            "reasoning": {"effort": reasoning_field("effort"), "summary": reasoning_field("summary")},
            "store": echo(req, "store", json!(true)),
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": echo(req, "tool_choice", json!("auto")),
            "tools": echo(req, "tools", json!([])),
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": usage,
            "user": null,
            "metadata": {}
        })
    };
    let usage = json!({
        "input_tokens": tokens.prompt(),
        "input_tokens_details": {"cached_tokens": tokens.cache.read},
        "output_tokens": tokens.completion(),
        "output_tokens_details": {"reasoning_tokens": tokens.reasoning},
        "total_tokens": tokens.prompt() + tokens.completion()
    });
    let output: Vec<Value> = items.iter().map(|item| item.render(true)).collect();
    let completed = response("completed", json!(output), usage);
    if req.get("stream").and_then(Value::as_bool) != Some(true) {
        return Reply::json(&completed);
    }

    let mut events = Vec::new();
    let mut push = |name: &str, mut data: Value, paced: bool| {
        data["type"] = json!(name);
        data["sequence_number"] = json!(events.len());
        events.push(SseEvent::named(name, &data, paced));
    };
    let in_progress = response("in_progress", json!([]), Value::Null);
    push("response.created", json!({"response": in_progress}), false);
    push(
        "response.in_progress",
        json!({"response": in_progress}),
        false,
    );
    for (index, item) in items.iter().enumerate() {
        push(
            "response.output_item.added",
            json!({"output_index": index, "item": item.render(false)}),
            false,
        );
        for (name, mut data, paced) in item.events(ctx.chunks) {
            data["item_id"] = json!(item.id());
            data["output_index"] = json!(index);
            push(name, data, paced);
        }
        push(
            "response.output_item.done",
            json!({"output_index": index, "item": output[index]}),
            false,
        );
    }
    push("response.completed", json!({"response": completed}), false);
    Reply::sse(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_forms() {
        assert_eq!(
            input_turn(&json!("hi")).and_then(|t| t.text().map(str::to_owned)),
            Some("hi".into())
        );
        let items = json!([
            {"role": "user", "content": "old"},
            {"role": "user", "content": [{"type": "input_text", "text": "new"}]}
        ]);
        assert_eq!(
            input_turn(&items).and_then(|t| t.text().map(str::to_owned)),
            Some("new".into())
        );
        assert!(input_turn(&json!(3)).is_none());
        assert_eq!(
            input_chars(&json!({"input": items, "instructions": "ab"})),
            3 + 3 + 2
        );
    }

    #[test]
    fn reasoning_requests() {
        let asks = |v: Value| wants_reasoning(&json!({"reasoning": v}));
        assert!(asks(json!({"effort": "low"})));
        assert!(asks(json!({"summary": "auto"})));
        assert!(asks(json!({"effort": "high", "summary": "detailed"})));
        assert!(!asks(json!({"effort": "none", "summary": "auto"})));
        assert!(!asks(json!({})));
        assert!(!asks(json!(null)));
        assert!(!wants_reasoning(&json!({})));
    }
}
