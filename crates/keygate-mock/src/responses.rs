//! OpenAI Responses API: `POST /v1/responses`, non-streamed and streamed (named events with
//! `sequence_number`).

use http::StatusCode;
use serde_json::{json, Value};

use crate::errors::{error_reply, Shape};
use crate::reply::{Ctx, Reply, SseEvent};
use crate::text::{content_text, estimate_tokens, split_chunks, unix_now};

/// The text to echo from `input`: a string, or the last user item of an array of items.
fn input_text(input: &Value) -> Option<String> {
    match input {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => Some(
            items
                .iter()
                .rev()
                .find(|item| item.get("role").and_then(Value::as_str) == Some("user"))
                .and_then(|item| item.get("content"))
                .map(content_text)
                .unwrap_or_default(),
        ),
        _ => None,
    }
}

/// Characters across every item's content in `input` (plus `instructions`).
fn input_chars(req: &Value) -> usize {
    let input = match req.get("input") {
        Some(Value::String(s)) => s.chars().count(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.get("content"))
            .map(|c| content_text(c).chars().count())
            .sum(),
        _ => 0,
    };
    let instructions = req
        .get("instructions")
        .and_then(Value::as_str)
        .map_or(0, |s| s.chars().count());
    input + instructions
}

fn message_item(id: &str, status: &str, text: Option<&str>) -> Value {
    let content = match text {
        Some(t) => json!([{"type": "output_text", "text": t, "annotations": []}]),
        None => json!([]),
    };
    json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
}

/// `POST /v1/responses`.
pub(crate) fn create(req: &Value, ctx: Ctx<'_>) -> Reply {
    let Some(model) = req.get("model").and_then(Value::as_str) else {
        return error_reply(
            Shape::OpenAi,
            StatusCode::BAD_REQUEST,
            "Missing required parameter: 'model'.",
        );
    };
    let Some(text) = req.get("input").and_then(input_text) else {
        return error_reply(
            Shape::OpenAi,
            StatusCode::BAD_REQUEST,
            "Missing required parameter: 'input'.",
        );
    };
    let input_tokens = estimate_tokens(input_chars(req));
    let output_tokens = estimate_tokens(text.chars().count());
    let resp_id = ctx.ids.next("resp_");
    let msg_id = ctx.ids.next("msg_");
    let response = |status: &str, output: Value, usage: Value| {
        json!({
            "id": resp_id,
            "object": "response",
            "created_at": unix_now(),
            "status": status,
            "error": null,
            "incomplete_details": null,
            "instructions": req.get("instructions").cloned().unwrap_or(Value::Null),
            "max_output_tokens": req.get("max_output_tokens").cloned().unwrap_or(Value::Null),
            "model": model,
            "output": output,
            "parallel_tool_calls": true,
            "previous_response_id": req.get("previous_response_id").cloned().unwrap_or(Value::Null),
            "reasoning": {"effort": null, "summary": null},
            "store": true,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": usage,
            "user": null,
            "metadata": {}
        })
    };
    let usage = json!({
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens
    });
    let done_item = message_item(&msg_id, "completed", Some(&text));
    let completed = response("completed", json!([done_item]), usage);
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
    push(
        "response.output_item.added",
        json!({"output_index": 0, "item": message_item(&msg_id, "in_progress", None)}),
        false,
    );
    let part = |t: &str| json!({"type": "output_text", "text": t, "annotations": []});
    let at = json!({"item_id": msg_id, "output_index": 0, "content_index": 0});
    let with = |extra: Value| {
        let mut v = at.clone();
        if let (Some(obj), Value::Object(more)) = (v.as_object_mut(), extra) {
            obj.extend(more);
        }
        v
    };
    push(
        "response.content_part.added",
        with(json!({"part": part("")})),
        false,
    );
    for piece in split_chunks(&text, ctx.chunks) {
        push(
            "response.output_text.delta",
            with(json!({"delta": piece, "logprobs": []})),
            true,
        );
    }
    push(
        "response.output_text.done",
        with(json!({"text": text, "logprobs": []})),
        false,
    );
    push(
        "response.content_part.done",
        with(json!({"part": part(&text)})),
        false,
    );
    push(
        "response.output_item.done",
        json!({"output_index": 0, "item": done_item}),
        false,
    );
    push("response.completed", json!({"response": completed}), false);
    Reply::sse(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_forms() {
        assert_eq!(input_text(&json!("hi")), Some("hi".into()));
        let items = json!([
            {"role": "user", "content": "old"},
            {"role": "user", "content": [{"type": "input_text", "text": "new"}]}
        ]);
        assert_eq!(input_text(&items), Some("new".into()));
        assert_eq!(input_text(&json!(3)), None);
        assert_eq!(
            input_chars(&json!({"input": items, "instructions": "ab"})),
            3 + 3 + 2
        );
    }
}
