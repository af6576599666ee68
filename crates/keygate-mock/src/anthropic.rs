//! Anthropic surfaces: `POST /v1/messages` (non-streamed and streamed), `count_tokens`, and the
//! model list in Anthropic's shape.

use http::StatusCode;
use serde_json::{json, Value};

use crate::errors::{error_reply, Shape};
use crate::reply::{Ctx, Reply, SseEvent};
use crate::script::{argument_pieces, opaque, Answer, Tokens, ToolCall, Turn};
use crate::text::{content_text, estimate_tokens, messages_chars, split_chunks};

/// Bytes behind a thinking block's `signature`.
const SIGNATURE_BYTES: usize = 48;

/// Models listed by `GET /v1/models` when the request carries `anthropic-version`.
const MODELS: &[(&str, &str)] = &[
    ("claude-sonnet-4-5", "Claude Sonnet 4.5"),
    ("claude-haiku-4-5", "Claude Haiku 4.5"),
    ("claude-opus-4-1", "Claude Opus 4.1"),
];

fn bad_request(message: &str) -> Reply {
    error_reply(Shape::Anthropic, StatusCode::BAD_REQUEST, message)
}

/// Characters of prompt: `system` and every message.
fn input_chars(req: &Value) -> usize {
    let system = req
        .get("system")
        .map_or(0, |s| content_text(s).chars().count());
    system + messages_chars(req.get("messages"))
}

fn messages_field(req: &Value) -> Result<&Vec<Value>, Reply> {
    req.get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad_request("messages: Field required"))
}

/// Whether the request asks for extended thinking (`thinking.type` `enabled` or `adaptive`).
fn wants_thinking(req: &Value) -> bool {
    matches!(
        req.pointer("/thinking/type").and_then(Value::as_str),
        Some("enabled" | "adaptive")
    )
}

/// Whether the thinking text is to be left out of the reply (`thinking.display: "omitted"`):
/// the block keeps only its signature.
fn thinking_omitted(req: &Value) -> bool {
    req.pointer("/thinking/display").and_then(Value::as_str) == Some("omitted")
}

/// `usage` with `output` output tokens; `input_tokens` leaves the cached tokens out, as
/// Anthropic counts them.
fn usage(tokens: &Tokens, output: u64) -> Value {
    json!({
        "input_tokens": tokens.input,
        "cache_creation_input_tokens": tokens.cache.write,
        "cache_read_input_tokens": tokens.cache.read,
        "output_tokens": output
    })
}

/// One content block of a reply.
enum Block<'a> {
    Thinking { text: String, signature: String },
    Text(&'a str),
    ToolUse { id: String, call: &'a ToolCall },
}

impl Block<'_> {
    /// The block as a complete message holds it.
    fn complete(&self) -> Value {
        match self {
            Block::Thinking { text, signature } => {
                json!({"type": "thinking", "thinking": text, "signature": signature})
            }
            Block::Text(text) => json!({"type": "text", "text": text}),
            Block::ToolUse { id, call } => {
                json!({"type": "tool_use", "id": id, "name": call.name, "input": call.input})
            }
        }
    }

    /// The block as `content_block_start` opens it.
    fn opening(&self) -> Value {
        match self {
            Block::Thinking { .. } => json!({"type": "thinking", "thinking": "", "signature": ""}),
            Block::Text(_) => json!({"type": "text", "text": ""}),
            Block::ToolUse { id, call } => {
                json!({"type": "tool_use", "id": id, "name": call.name, "input": {}})
            }
        }
    }

    /// The `delta` objects that stream the block, each with whether it is paced content.
    fn deltas(&self, chunks: usize) -> Vec<(Value, bool)> {
        match self {
            Block::Thinking { text, signature } => split_chunks(text, chunks)
                .into_iter()
                .filter(|piece| !piece.is_empty())
                .map(|piece| (json!({"type": "thinking_delta", "thinking": piece}), true))
                .chain([(
                    json!({"type": "signature_delta", "signature": signature}),
                    false,
                )])
                .collect(),
            Block::Text(text) => split_chunks(text, chunks)
                .into_iter()
                .map(|piece| (json!({"type": "text_delta", "text": piece}), true))
                .collect(),
            Block::ToolUse { call, .. } => argument_pieces(&call.arguments, chunks)
                .into_iter()
                .map(|piece| {
                    let delta = json!({"type": "input_json_delta", "partial_json": piece});
                    (delta, true)
                })
                .collect(),
        }
    }
}

/// `POST /v1/messages`: echoes the last user message, or makes the tool calls its
/// `mock-tool:` lines script, or acknowledges tool results; a thinking block first when asked;
/// streamed or not.
pub(crate) fn messages(req: &Value, ctx: Ctx<'_>) -> Reply {
    let Some(model) = req.get("model").and_then(Value::as_str) else {
        return bad_request("model: Field required");
    };
    let messages = match messages_field(req) {
        Ok(m) => m,
        Err(reply) => return reply,
    };
    let turn = Turn::of_items(messages);
    let thinking = wants_thinking(req);
    let tokens = turn.tokens(input_chars(req), ctx.cache, thinking);
    let mut blocks = Vec::new();
    if thinking {
        let mut text = turn.thinking();
        let signature = opaque(&text, "signature", SIGNATURE_BYTES);
        if thinking_omitted(req) {
            text.clear();
        }
        blocks.push(Block::Thinking { text, signature });
    }
    let stop_reason = match &turn.answer {
        Answer::Text(text) => {
            blocks.push(Block::Text(text));
            "end_turn"
        }
        Answer::Tools(calls) => {
            blocks.extend(calls.iter().enumerate().map(|(i, call)| Block::ToolUse {
                id: turn.id("toolu_", i),
                call,
            }));
            "tool_use"
        }
    };
    let id = ctx.ids.next("msg_");
    let message = |content: Value, stop: Value, usage: Value| {
        json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": null,
            "usage": usage
        })
    };
    if req.get("stream").and_then(Value::as_bool) != Some(true) {
        let content: Vec<Value> = blocks.iter().map(Block::complete).collect();
        return Reply::json(&message(
            json!(content),
            json!(stop_reason),
            usage(&tokens, tokens.completion()),
        ))
        .with_header("request-id", &ctx.ids.next("req_"));
    }
    let start = message(json!([]), Value::Null, usage(&tokens, 1));
    let mut events = vec![SseEvent::named(
        "message_start",
        &json!({"type": "message_start", "message": start}),
        false,
    )];
    for (index, block) in blocks.iter().enumerate() {
        events.push(SseEvent::named(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block.opening()}),
            false,
        ));
        if index == 0 {
            events.push(SseEvent::named("ping", &json!({"type": "ping"}), false));
        }
        events.extend(block.deltas(ctx.chunks).into_iter().map(|(delta, paced)| {
            SseEvent::named(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": delta}),
                paced,
            )
        }));
        events.push(SseEvent::named(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
            false,
        ));
    }
    events.push(SseEvent::named(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": tokens.completion()}
        }),
        false,
    ));
    events.push(SseEvent::named(
        "message_stop",
        &json!({"type": "message_stop"}),
        false,
    ));
    Reply::sse(events).with_header("request-id", &ctx.ids.next("req_"))
}

/// `POST /v1/messages/count_tokens`.
pub(crate) fn count_tokens(req: &Value) -> Reply {
    if req.get("model").and_then(Value::as_str).is_none() {
        return bad_request("model: Field required");
    }
    match messages_field(req) {
        Ok(_) => Reply::json(&json!({"input_tokens": estimate_tokens(input_chars(req))})),
        Err(reply) => reply,
    }
}

/// `GET /v1/models` in Anthropic's paginated shape: `ids` (named after themselves), else the
/// built-in list.
pub(crate) fn models(ids: Option<&[String]>) -> Reply {
    let listed: Vec<(&str, &str)> = match ids {
        Some(ids) => ids.iter().map(|id| (id.as_str(), id.as_str())).collect(),
        None => MODELS.to_vec(),
    };
    let data: Vec<Value> = listed
        .iter()
        .map(|(id, name)| {
            json!({"type": "model", "id": id, "display_name": name, "created_at": "2025-01-01T00:00:00Z"})
        })
        .collect();
    let first = listed.first().map(|(id, _)| *id);
    let last = listed.last().map(|(id, _)| *id);
    Reply::json(&json!({"data": data, "has_more": false, "first_id": first, "last_id": last}))
}
