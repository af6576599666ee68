//! Anthropic surfaces: `POST /v1/messages` (non-streamed and streamed), `count_tokens`, and the
//! model list in Anthropic's shape.

use http::StatusCode;
use serde_json::{json, Value};

use crate::errors::{error_reply, Shape};
use crate::reply::{Ctx, Reply, SseEvent};
use crate::text::{content_text, estimate_tokens, last_user_text, messages_chars, split_chunks};

/// Models listed by `GET /v1/models` when the request carries `anthropic-version`.
const MODELS: &[(&str, &str)] = &[
    ("claude-sonnet-4-5", "Claude Sonnet 4.5"),
    ("claude-haiku-4-5", "Claude Haiku 4.5"),
    ("claude-opus-4-1", "Claude Opus 4.1"),
];

fn bad_request(message: &str) -> Reply {
    error_reply(Shape::Anthropic, StatusCode::BAD_REQUEST, message)
}

/// Input token estimate over `system` and every message.
fn input_tokens(req: &Value) -> u64 {
    let system = req
        .get("system")
        .map_or(0, |s| content_text(s).chars().count());
    estimate_tokens(system + messages_chars(req.get("messages")))
}

fn messages_field(req: &Value) -> Result<&Value, Reply> {
    req.get("messages")
        .filter(|m| m.is_array())
        .ok_or_else(|| bad_request("messages: Field required"))
}

fn usage(input: u64, output: u64) -> Value {
    json!({
        "input_tokens": input,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output
    })
}

/// `POST /v1/messages`: echoes the last user message, streamed or not.
pub(crate) fn messages(req: &Value, ctx: Ctx<'_>) -> Reply {
    let Some(model) = req.get("model").and_then(Value::as_str) else {
        return bad_request("model: Field required");
    };
    let messages = match messages_field(req) {
        Ok(m) => m,
        Err(reply) => return reply,
    };
    let text = last_user_text(Some(messages));
    let input = input_tokens(req);
    let output = estimate_tokens(text.chars().count());
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
        return Reply::json(&message(
            json!([{"type": "text", "text": text}]),
            json!("end_turn"),
            usage(input, output),
        ))
        .with_header("request-id", &ctx.ids.next("req_"));
    }
    let mut events = vec![
        SseEvent::named(
            "message_start",
            &json!({"type": "message_start", "message": message(json!([]), Value::Null, usage(input, 1))}),
            false,
        ),
        SseEvent::named(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            false,
        ),
        SseEvent::named("ping", &json!({"type": "ping"}), false),
    ];
    events.extend(split_chunks(&text, ctx.chunks).into_iter().map(|piece| {
        SseEvent::named(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
            true,
        )
    }));
    events.push(SseEvent::named(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
        false,
    ));
    events.push(SseEvent::named(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": output}
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
        Ok(_) => Reply::json(&json!({"input_tokens": input_tokens(req)})),
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
