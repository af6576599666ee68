//! OpenAI surfaces: chat completions, legacy completions, embeddings and the model list.

use base64::Engine as _;
use http::StatusCode;
use serde_json::{json, Value};

use crate::errors::{error_reply, Shape};
use crate::reply::{Ctx, Reply, SseEvent};
use crate::text::{estimate_tokens, last_user_text, messages_chars, split_chunks, unix_now};

/// `system_fingerprint` reported on chat and completion objects.
const FINGERPRINT: &str = "fp_keygate_mock";
/// Embedding length when the request gives no `dimensions` (text-embedding-3-small's).
const DEFAULT_DIMENSIONS: usize = 1536;
/// Largest `dimensions` accepted.
const MAX_DIMENSIONS: usize = 4096;

/// Models listed by `GET /v1/models` in OpenAI's shape.
const MODELS: &[&str] = &[
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "o3-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
];

fn bad_request(message: &str) -> Reply {
    error_reply(Shape::OpenAi, StatusCode::BAD_REQUEST, message)
}

/// The `model` field, required by every OpenAI surface.
fn model(req: &Value) -> Result<&str, Reply> {
    req.get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("you must provide a model parameter"))
}

fn wants_stream(req: &Value) -> bool {
    req.get("stream").and_then(Value::as_bool) == Some(true)
}

fn wants_usage(req: &Value) -> bool {
    req.pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true)
}

fn chat_usage(prompt: u64, completion: u64) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0
        }
    })
}

/// `POST /v1/chat/completions`: echoes the last user message, streamed or not.
pub(crate) fn chat(req: &Value, ctx: Ctx<'_>) -> Reply {
    let model = match model(req) {
        Ok(m) => m,
        Err(reply) => return reply,
    };
    let Some(messages) = req.get("messages").filter(|m| m.is_array()) else {
        return bad_request("you must provide a messages parameter");
    };
    let text = last_user_text(Some(messages));
    let prompt_tokens = estimate_tokens(messages_chars(Some(messages)));
    let completion_tokens = estimate_tokens(text.chars().count());
    let id = ctx.ids.next("chatcmpl-");
    let created = unix_now();
    if !wants_stream(req) {
        return Reply::json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": null, "annotations": []},
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": chat_usage(prompt_tokens, completion_tokens),
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT
        }));
    }
    let include_usage = wants_usage(req);
    let chunk = |choices: Value, usage: Option<Value>| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
            "choices": choices
        });
        if include_usage {
            c["usage"] = usage.unwrap_or(Value::Null);
        }
        c
    };
    let choice = |delta: Value, finish: Value| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
    let mut events = vec![SseEvent::data(
        &chunk(
            choice(
                json!({"role": "assistant", "content": "", "refusal": null}),
                Value::Null,
            ),
            None,
        ),
        false,
    )];
    events.extend(split_chunks(&text, ctx.chunks).into_iter().map(|piece| {
        SseEvent::data(
            &chunk(choice(json!({"content": piece}), Value::Null), None),
            true,
        )
    }));
    events.push(SseEvent::data(
        &chunk(choice(json!({}), json!("stop")), None),
        false,
    ));
    if include_usage {
        events.push(SseEvent::data(
            &chunk(
                json!([]),
                Some(chat_usage(prompt_tokens, completion_tokens)),
            ),
            false,
        ));
    }
    events.push(SseEvent::done());
    Reply::sse(events)
}

/// The prompt to echo from a completions `prompt`: a string or the last of an array of strings.
fn prompt_text(prompt: &Value) -> Option<String> {
    match prompt {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => Some(
            items
                .iter()
                .rev()
                .find_map(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        ),
        _ => None,
    }
}

/// `POST /v1/completions`: echoes the prompt, streamed or not.
pub(crate) fn completions(req: &Value, ctx: Ctx<'_>) -> Reply {
    let model = match model(req) {
        Ok(m) => m,
        Err(reply) => return reply,
    };
    let Some(text) = req.get("prompt").and_then(prompt_text) else {
        return bad_request("you must provide a prompt parameter");
    };
    let tokens = estimate_tokens(text.chars().count());
    let usage =
        json!({"prompt_tokens": tokens, "completion_tokens": tokens, "total_tokens": 2 * tokens});
    let id = ctx.ids.next("cmpl-");
    let created = unix_now();
    let object = |choices: Value| {
        json!({
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": choices
        })
    };
    let choice = |text: &str, finish: Value| json!([{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}]);
    if !wants_stream(req) {
        let mut body = object(choice(&text, json!("stop")));
        body["usage"] = usage;
        return Reply::json(body);
    }
    let mut events: Vec<SseEvent> = split_chunks(&text, ctx.chunks)
        .into_iter()
        .map(|piece| SseEvent::data(&object(choice(piece, Value::Null)), true))
        .collect();
    events.push(SseEvent::data(&object(choice("", json!("stop"))), false));
    if wants_usage(req) {
        let mut last = object(json!([]));
        last["usage"] = usage;
        events.push(SseEvent::data(&last, false));
    }
    events.push(SseEvent::done());
    Reply::sse(events)
}

/// The inputs of an embeddings request as texts (token arrays are rendered as their numbers).
fn embedding_inputs(input: &Value) -> Option<Vec<String>> {
    let as_text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(tokens) if tokens.iter().all(Value::is_u64) => Some(
            tokens
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => None,
    };
    match input {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) if items.iter().all(Value::is_u64) => as_text(input).map(|t| vec![t]),
        Value::Array(items) => items.iter().map(as_text).collect(),
        _ => None,
    }
}

/// A deterministic unit vector derived from `text` (FNV-1a seeded xorshift).
fn embedding_vector(text: &str, dimensions: usize) -> Vec<f32> {
    let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) | 1;
    let raw: Vec<f32> = (0..dimensions)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // The top 24 bits fit an f32 mantissa exactly.
            let unit = (state >> 40) as f32 / (1u64 << 24) as f32;
            unit * 2.0 - 1.0
        })
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        raw.into_iter().map(|x| x / norm).collect()
    } else {
        raw
    }
}

/// `POST /v1/embeddings`: one deterministic unit vector per input, as floats or base64.
pub(crate) fn embeddings(req: &Value) -> Reply {
    let model = match model(req) {
        Ok(m) => m,
        Err(reply) => return reply,
    };
    let Some(inputs) = req.get("input").and_then(embedding_inputs) else {
        return bad_request(
            "'input' must be a non-empty string, array of strings or array of token arrays",
        );
    };
    let dimensions = match req.get("dimensions") {
        None | Some(Value::Null) => DEFAULT_DIMENSIONS,
        Some(v) => match v.as_u64().and_then(|d| usize::try_from(d).ok()) {
            Some(d) if (1..=MAX_DIMENSIONS).contains(&d) => d,
            _ => return bad_request("'dimensions' must be an integer from 1 to 4096"),
        },
    };
    let base64 = match req.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => return bad_request("'encoding_format' must be 'float' or 'base64'"),
    };
    let tokens: u64 = inputs
        .iter()
        .map(|t| estimate_tokens(t.chars().count()))
        .sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let vector = embedding_vector(text, dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Reply::json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    }))
}

/// `GET /v1/models` in OpenAI's list shape.
pub(crate) fn models() -> Reply {
    let created = unix_now();
    let data: Vec<Value> = MODELS
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": created, "owned_by": "keygate-mock"}))
        .collect();
    Reply::json(json!({"object": "list", "data": data}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_vectors_are_deterministic_unit_vectors() {
        let a = embedding_vector("hello", 64);
        assert_eq!(a, embedding_vector("hello", 64));
        assert_ne!(a, embedding_vector("hellp", 64));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }

    #[test]
    fn embedding_input_forms() {
        assert_eq!(embedding_inputs(&json!("a")), Some(vec!["a".to_owned()]));
        assert_eq!(
            embedding_inputs(&json!(["a", "b"])).map(|v| v.len()),
            Some(2)
        );
        assert_eq!(
            embedding_inputs(&json!([1, 2, 3])).map(|v| v.len()),
            Some(1)
        );
        assert_eq!(
            embedding_inputs(&json!([[1, 2], [3]])).map(|v| v.len()),
            Some(2)
        );
        assert_eq!(embedding_inputs(&json!([])), None);
        assert_eq!(embedding_inputs(&json!([{"x": 1}])), None);
        assert_eq!(embedding_inputs(&json!(5)), None);
    }
}
