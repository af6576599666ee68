//! OpenAI surfaces: chat completions, legacy completions, embeddings and the model list.

use base64::Engine as _;
use http::StatusCode;
use serde::Serialize;
use serde_json::{json, Value};

use crate::errors::{error_reply, Shape};
use crate::reply::{Ctx, Reply, SseEvent};
use crate::script::{argument_pieces, Answer, Tokens, ToolCall, Turn};
use crate::text::{estimate_tokens, item_chars, split_chunks, unix_now};

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

/// `usage` of a chat completion, with OpenAI's detail objects.
#[derive(Serialize)]
struct ChatUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptTokensDetails,
    completion_tokens_details: CompletionTokensDetails,
}

#[derive(Serialize, Default)]
struct PromptTokensDetails {
    cached_tokens: u64,
    audio_tokens: u64,
}

#[derive(Serialize, Default)]
struct CompletionTokensDetails {
    reasoning_tokens: u64,
    audio_tokens: u64,
    accepted_prediction_tokens: u64,
    rejected_prediction_tokens: u64,
}

impl ChatUsage {
    fn new(tokens: Tokens) -> Self {
        Self {
            prompt_tokens: tokens.prompt(),
            completion_tokens: tokens.completion(),
            total_tokens: tokens.prompt() + tokens.completion(),
            prompt_tokens_details: PromptTokensDetails {
                cached_tokens: tokens.cache.read,
                ..PromptTokensDetails::default()
            },
            completion_tokens_details: CompletionTokensDetails {
                reasoning_tokens: tokens.reasoning,
                ..CompletionTokensDetails::default()
            },
        }
    }
}

/// A `chat.completion` or `chat.completion.chunk` object. Serialized from borrowed fields (no
/// JSON tree), so a reply costs one pass over its bytes.
#[derive(Serialize)]
struct ChatObject<'a, C> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: C,
    /// Absent (`None`), `null` (`Some(None)`, a chunk before the last when usage is included) or
    /// the figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<ChatUsage>>,
    service_tier: &'static str,
    system_fingerprint: &'static str,
}

/// `choices[i]` of a complete reply.
#[derive(Serialize)]
struct MessageChoice<'a> {
    index: u32,
    message: AssistantMessage<'a>,
    /// Always `null`.
    logprobs: (),
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    /// `null` when the reply is tool calls.
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<ToolCallObject<'a>>>,
    /// Always `null`.
    refusal: (),
    annotations: [(); 0],
}

/// A tool call: complete in a message (`id`, `type`, `function`), or a stream delta of one
/// (`index`, then `id`, `type` and the name in the call's first delta only).
#[derive(Serialize)]
struct ToolCallObject<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionCall<'a>,
}

#[derive(Serialize)]
struct FunctionCall<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

impl<'a> ToolCallObject<'a> {
    /// The head of call `index` of `turn` (its id, type and name) with `arguments`.
    fn head(turn: &Turn, index: usize, call: &'a ToolCall, arguments: &'a str) -> Self {
        Self {
            index: None,
            id: Some(turn.id("call_", index)),
            kind: Some("function"),
            function: FunctionCall {
                name: Some(&call.name),
                arguments,
            },
        }
    }

    /// A stream delta of call `index` carrying only an arguments fragment.
    fn fragment(index: usize, arguments: &'a str) -> Self {
        Self {
            index: Some(index),
            id: None,
            kind: None,
            function: FunctionCall {
                name: None,
                arguments,
            },
        }
    }
}

/// `choices[i]` of a stream chunk.
#[derive(Serialize)]
struct DeltaChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    /// Always `null`.
    logprobs: (),
    finish_reason: Option<&'static str>,
}

/// A chunk's `delta`: `{"role":"assistant","content":"","refusal":null}` first (`"content":null`
/// and the first tool call when the reply is tool calls), then `{"content":...}` or
/// `{"tool_calls":[...]}`, and `{}` with the finish reason.
#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    /// `Some(None)` writes `"content": null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallObject<'a>; 1]>,
    /// `Some(())` writes `"refusal": null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<()>,
}

/// The fields every object of one chat reply shares.
struct ChatHead<'a> {
    id: &'a str,
    created: u64,
    model: &'a str,
}

impl<'a> ChatHead<'a> {
    fn object<C>(
        &self,
        object: &'static str,
        choices: C,
        usage: Option<Option<ChatUsage>>,
    ) -> ChatObject<'a, C> {
        ChatObject {
            id: self.id,
            object,
            created: self.created,
            model: self.model,
            choices,
            usage,
            service_tier: "default",
            system_fingerprint: FINGERPRINT,
        }
    }

    /// One `data:` event of a stream; `usage: null` is written when the stream includes usage.
    fn chunk(
        &self,
        delta: Delta<'_>,
        finish_reason: Option<&'static str>,
        include_usage: bool,
        paced: bool,
    ) -> SseEvent {
        let choice = DeltaChoice {
            index: 0,
            delta,
            logprobs: (),
            finish_reason,
        };
        let usage = include_usage.then_some(None);
        SseEvent::data(
            &self.object("chat.completion.chunk", [choice], usage),
            paced,
        )
    }
}

/// `POST /v1/chat/completions`: echoes the last user message, or makes the tool calls its
/// `mock-tool:` lines script, or acknowledges tool results; streamed or not.
pub(crate) fn chat(req: &Value, ctx: Ctx<'_>) -> Reply {
    let model = match model(req) {
        Ok(m) => m,
        Err(reply) => return reply,
    };
    let Some(messages) = req.get("messages").and_then(Value::as_array) else {
        return bad_request("you must provide a messages parameter");
    };
    let turn = Turn::of_items(messages);
    let reasoning = req
        .get("reasoning_effort")
        .and_then(Value::as_str)
        .is_some_and(|effort| effort != "none");
    let input_chars = messages.iter().map(item_chars).sum();
    let usage = ChatUsage::new(turn.tokens(input_chars, ctx.cache, reasoning));
    let id = ctx.ids.next("chatcmpl-");
    let head = ChatHead {
        id: &id,
        created: unix_now(),
        model,
    };
    let finish_reason = match turn.answer {
        Answer::Text(_) => "stop",
        Answer::Tools(_) => "tool_calls",
    };
    if !wants_stream(req) {
        let tool_calls = match &turn.answer {
            Answer::Text(_) => None,
            Answer::Tools(calls) => Some(
                calls
                    .iter()
                    .enumerate()
                    .map(|(i, call)| ToolCallObject::head(&turn, i, call, &call.arguments))
                    .collect(),
            ),
        };
        let choice = MessageChoice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content: turn.text(),
                tool_calls,
                refusal: (),
                annotations: [],
            },
            logprobs: (),
            finish_reason,
        };
        return Reply::json(&head.object("chat.completion", [choice], Some(Some(usage))));
    }
    let include_usage = wants_usage(req);
    let mut events = Vec::new();
    match &turn.answer {
        Answer::Text(text) => {
            let opening = Delta {
                role: Some("assistant"),
                content: Some(Some("")),
                refusal: Some(()),
                ..Delta::default()
            };
            events.push(head.chunk(opening, None, include_usage, false));
            events.extend(split_chunks(text, ctx.chunks).into_iter().map(|piece| {
                let delta = Delta {
                    content: Some(Some(piece)),
                    ..Delta::default()
                };
                head.chunk(delta, None, include_usage, true)
            }));
        }
        Answer::Tools(calls) => {
            for (i, call) in calls.iter().enumerate() {
                let mut call_head = ToolCallObject::head(&turn, i, call, "");
                call_head.index = Some(i);
                let opening = if i == 0 {
                    Delta {
                        role: Some("assistant"),
                        content: Some(None),
                        tool_calls: Some([call_head]),
                        refusal: Some(()),
                    }
                } else {
                    Delta {
                        tool_calls: Some([call_head]),
                        ..Delta::default()
                    }
                };
                events.push(head.chunk(opening, None, include_usage, false));
                for piece in argument_pieces(&call.arguments, ctx.chunks) {
                    let delta = Delta {
                        tool_calls: Some([ToolCallObject::fragment(i, piece)]),
                        ..Delta::default()
                    };
                    events.push(head.chunk(delta, None, include_usage, true));
                }
            }
        }
    }
    events.push(head.chunk(Delta::default(), Some(finish_reason), include_usage, false));
    if include_usage {
        let last: ChatObject<'_, [DeltaChoice<'_>; 0]> =
            head.object("chat.completion.chunk", [], Some(Some(usage)));
        events.push(SseEvent::data(&last, false));
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
        return Reply::json(&body);
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
    Reply::json(&json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    }))
}

/// `GET /v1/models` in OpenAI's list shape: `ids`, else the built-in list.
pub(crate) fn models(ids: Option<&[String]>) -> Reply {
    let created = unix_now();
    let listed: Vec<&str> = match ids {
        Some(ids) => ids.iter().map(String::as_str).collect(),
        None => MODELS.to_vec(),
    };
    let data: Vec<Value> = listed
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": created, "owned_by": "keygate-mock"}))
        .collect();
    Reply::json(&json!({"object": "list", "data": data}))
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
