//! The built-in `mock` provider: answers locally in the OpenAI and Anthropic formats, streaming
//! included, by echoing the last user message. A pure function of the (already prepared) upstream
//! body, so the quickstart works offline and golden files pin its output.

use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::tokens::{estimate_input_tokens, estimate_text_tokens, Tokenizer};
use crate::Surface;

/// Dimensions of the mock's embeddings.
const EMBEDDING_DIMENSIONS: usize = 8;

/// A complete mock answer: status, content type and the body as the chunks to send.
#[derive(Debug, Clone, PartialEq)]
pub struct MockResponse {
    pub status: u16,
    pub content_type: &'static str,
    /// One chunk for JSON answers; one chunk per SSE event for streams.
    pub chunks: Vec<Bytes>,
}

/// Answers `body` (the prepared upstream body) on `surface`. `created` is the Unix time stamped
/// into the answer.
pub fn respond(surface: Surface, body: &Map<String, Value>, created: u64) -> MockResponse {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-echo")
        .to_owned();
    let stream =
        body.get("stream").and_then(Value::as_bool).unwrap_or(false) && surface.can_stream();
    let input_tokens = estimate_input_tokens(body, Tokenizer::Heuristic);
    let id = format!(
        "mock-{:016x}",
        fnv1a(serde_json::to_string(body).unwrap_or_default().as_bytes())
    );
    let ctx = Ctx {
        model,
        id,
        created,
        input_tokens,
    };
    match surface {
        Surface::Embeddings => json_response(embeddings(&ctx, body)),
        Surface::CountTokens => json_response(json!({"input_tokens": input_tokens})),
        Surface::Models => json_response(json!({"object": "list", "data": []})),
        Surface::ChatCompletions
        | Surface::Completions
        | Surface::Responses
        | Surface::Messages => {
            let text = echo_text(surface, body);
            let output_tokens = estimate_text_tokens(&text);
            let include_usage = body
                .get("stream_options")
                .and_then(|o| o.get("include_usage"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let answer = Answer {
                ctx: &ctx,
                text: &text,
                output_tokens,
            };
            match (surface, stream) {
                (Surface::ChatCompletions, false) => json_response(answer.chat()),
                (Surface::ChatCompletions, true) => sse_response(answer.chat_stream(include_usage)),
                (Surface::Completions, false) => json_response(answer.completion()),
                (Surface::Completions, true) => {
                    sse_response(answer.completion_stream(include_usage))
                }
                (Surface::Responses, false) => json_response(answer.response("completed", true)),
                (Surface::Responses, true) => sse_response(answer.response_stream()),
                (_, false) => json_response(answer.message()),
                (_, true) => sse_response(answer.message_stream()),
            }
        }
    }
}

struct Ctx {
    model: String,
    id: String,
    created: u64,
    input_tokens: u64,
}

struct Answer<'a> {
    ctx: &'a Ctx,
    text: &'a str,
    output_tokens: u64,
}

impl Answer<'_> {
    fn openai_usage(&self) -> Value {
        let (i, o) = (self.ctx.input_tokens, self.output_tokens);
        json!({"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o})
    }

    fn chat(&self) -> Value {
        json!({
            "id": format!("chatcmpl-{}", self.ctx.id), "object": "chat.completion", "created": self.ctx.created,
            "model": self.ctx.model, "system_fingerprint": "keygate-mock",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": self.text, "refusal": null},
                         "logprobs": null, "finish_reason": "stop"}],
            "usage": self.openai_usage(),
        })
    }

    fn chat_chunk(&self, delta: Value, finish: Value, include_usage: bool) -> Value {
        let mut chunk = json!({
            "id": format!("chatcmpl-{}", self.ctx.id), "object": "chat.completion.chunk", "created": self.ctx.created,
            "model": self.ctx.model, "system_fingerprint": "keygate-mock",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    }

    fn chat_stream(&self, include_usage: bool) -> Vec<Bytes> {
        let mut events = vec![data(&self.chat_chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
            include_usage,
        ))];
        for piece in pieces(self.text) {
            events.push(data(&self.chat_chunk(
                json!({"content": piece}),
                Value::Null,
                include_usage,
            )));
        }
        events.push(data(&self.chat_chunk(
            json!({}),
            json!("stop"),
            include_usage,
        )));
        if include_usage {
            let mut last = self.chat_chunk(json!({}), Value::Null, false);
            last["choices"] = json!([]);
            last["usage"] = self.openai_usage();
            events.push(data(&last));
        }
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        events
    }

    fn completion_value(&self, text: &str, finish: Value) -> Value {
        json!({
            "id": format!("cmpl-{}", self.ctx.id), "object": "text_completion", "created": self.ctx.created,
            "model": self.ctx.model,
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}],
        })
    }

    fn completion(&self) -> Value {
        let mut value = self.completion_value(self.text, json!("stop"));
        value["usage"] = self.openai_usage();
        value
    }

    fn completion_stream(&self, include_usage: bool) -> Vec<Bytes> {
        let mut events: Vec<Bytes> = pieces(self.text)
            .map(|p| data(&self.completion_value(p, Value::Null)))
            .collect();
        events.push(data(&self.completion_value("", json!("stop"))));
        if include_usage {
            let mut last = self.completion_value("", Value::Null);
            last["choices"] = json!([]);
            last["usage"] = self.openai_usage();
            events.push(data(&last));
        }
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        events
    }

    fn response(&self, status: &str, with_output: bool) -> Value {
        let (i, o) = (self.ctx.input_tokens, self.output_tokens);
        let output = if with_output {
            json!([{"type": "message", "id": format!("msg_{}", self.ctx.id), "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": self.text, "annotations": []}]}])
        } else {
            json!([])
        };
        let usage = if with_output {
            json!({"input_tokens": i, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": o,
                   "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": i + o})
        } else {
            Value::Null
        };
        json!({
            "id": format!("resp_{}", self.ctx.id), "object": "response", "created_at": self.ctx.created,
            "status": status, "model": self.ctx.model, "output": output, "parallel_tool_calls": true,
            "tool_choice": "auto", "tools": [], "error": null, "incomplete_details": null, "usage": usage,
        })
    }

    fn response_stream(&self) -> Vec<Bytes> {
        let item_id = format!("msg_{}", self.ctx.id);
        let mut seq = 0u64;
        let mut next = |mut value: Value| {
            value["sequence_number"] = json!(seq);
            seq += 1;
            value
        };
        let mut events = vec![named(
            "response.created",
            &next(
                json!({"type": "response.created", "response": self.response("in_progress", false)}),
            ),
        )];
        for piece in pieces(self.text) {
            events.push(named(
                "response.output_text.delta",
                &next(json!({"type": "response.output_text.delta", "item_id": item_id, "output_index": 0,
                             "content_index": 0, "delta": piece})),
            ));
        }
        events.push(named(
            "response.output_text.done",
            &next(
                json!({"type": "response.output_text.done", "item_id": item_id, "output_index": 0,
                         "content_index": 0, "text": self.text}),
            ),
        ));
        events.push(named(
            "response.completed",
            &next(
                json!({"type": "response.completed", "response": self.response("completed", true)}),
            ),
        ));
        events
    }

    fn message_value(&self, content: Value, stop: Value, output_tokens: u64) -> Value {
        json!({
            "id": format!("msg_{}", self.ctx.id), "type": "message", "role": "assistant", "model": self.ctx.model,
            "content": content, "stop_reason": stop, "stop_sequence": null,
            "usage": {"input_tokens": self.ctx.input_tokens, "output_tokens": output_tokens},
        })
    }

    fn message(&self) -> Value {
        self.message_value(
            json!([{"type": "text", "text": self.text}]),
            json!("end_turn"),
            self.output_tokens,
        )
    }

    fn message_stream(&self) -> Vec<Bytes> {
        let mut events = vec![
            named(
                "message_start",
                &json!({"type": "message_start", "message": self.message_value(json!([]), Value::Null, 1)}),
            ),
            named(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            named("ping", &json!({"type": "ping"})),
        ];
        for piece in pieces(self.text) {
            events.push(named(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
            ));
        }
        events.push(named(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 0}),
        ));
        events.push(named(
            "message_delta",
            &json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                    "usage": {"output_tokens": self.output_tokens}}),
        ));
        events.push(named("message_stop", &json!({"type": "message_stop"})));
        events
    }
}

fn embeddings(ctx: &Ctx, body: &Map<String, Value>) -> Value {
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(other) => vec![other.to_string()],
        None => Vec::new(),
    };
    let base64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let vector = embed(text);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    json!({"object": "list", "data": data, "model": ctx.model,
           "usage": {"prompt_tokens": ctx.input_tokens, "total_tokens": ctx.input_tokens}})
}

/// A deterministic unit vector derived from the text.
fn embed(text: &str) -> Vec<f32> {
    let mut seed = fnv1a(text.as_bytes());
    let mut vector: Vec<f32> = (0..EMBEDDING_DIMENSIONS)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let norm = vector
        .iter()
        .map(|v| v * v)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    vector.iter_mut().for_each(|v| *v /= norm);
    vector
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The text of the last user turn (chat, Responses, Anthropic) or the prompt (completions).
fn echo_text(surface: Surface, body: &Map<String, Value>) -> String {
    let text = match surface {
        Surface::Completions => match body.get("prompt") {
            Some(Value::Array(items)) => items.first().map(content_text).unwrap_or_default(),
            Some(prompt) => content_text(prompt),
            None => String::new(),
        },
        Surface::Responses => match body.get("input") {
            Some(Value::Array(items)) => last_user(items),
            Some(input) => content_text(input),
            None => String::new(),
        },
        _ => body
            .get("messages")
            .and_then(Value::as_array)
            .map(|m| last_user(m))
            .unwrap_or_default(),
    };
    if text.is_empty() {
        "(no user message)".to_owned()
    } else {
        text
    }
}

fn last_user(items: &[Value]) -> String {
    items
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content"))
        .map(content_text)
        .unwrap_or_default()
}

/// Text of a content value: a string, or the `text` of its parts joined.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// The text in word-sized pieces (each keeps its trailing space).
fn pieces(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive(' ')
}

fn json_response(value: Value) -> MockResponse {
    MockResponse {
        status: 200,
        content_type: "application/json",
        chunks: vec![Bytes::from(value.to_string())],
    }
}

fn sse_response(chunks: Vec<Bytes>) -> MockResponse {
    MockResponse {
        status: 200,
        content_type: "text/event-stream",
        chunks,
    }
}

fn data(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

fn named(event: &str, value: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {value}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseScanner;
    use crate::usage::TokenUsage;

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    fn joined(response: &MockResponse) -> String {
        response
            .chunks
            .iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect()
    }

    #[test]
    fn chat_echoes_the_last_user_message() {
        let req = body(json!({"model": "mock-echo", "messages": [
            {"role": "user", "content": "first"}, {"role": "assistant", "content": "x"},
            {"role": "user", "content": [{"type": "text", "text": "hello "}, {"type": "text", "text": "world"}]}]}));
        let res = respond(Surface::ChatCompletions, &req, 1);
        assert_eq!(res.content_type, "application/json");
        let value: Value = serde_json::from_slice(&res.chunks[0]).unwrap();
        assert_eq!(value["choices"][0]["message"]["content"], "hello world");
        assert_eq!(
            TokenUsage::from_response_body(&res.chunks[0]).output,
            Some(3)
        );
    }

    #[test]
    fn streams_carry_text_and_usage() {
        let req = body(
            json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
                              "messages": [{"role": "user", "content": "one two three"}]}),
        );
        let res = respond(Surface::ChatCompletions, &req, 1);
        assert_eq!(res.content_type, "text/event-stream");
        let text = joined(&res);
        assert!(text.ends_with("data: [DONE]\n\n"));
        let final_event = Surface::ChatCompletions.final_event();
        let mut scanner = SseScanner::new(false).with_final_event(final_event);
        res.chunks
            .iter()
            .for_each(|c| drop(scanner.push(c.clone())));
        assert_eq!(scanner.usage().output, Some(4));
        assert!(scanner.saw_final_event());
        let deltas: String = res.chunks[1..4]
            .iter()
            .map(|c| {
                let v: Value = serde_json::from_slice(&c[6..]).unwrap();
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(deltas, "one two three");

        let claude = respond(
            Surface::Messages,
            &body(json!({"model": "m", "stream": true, "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi there"}]})),
            1,
        );
        let final_event = Surface::Messages.final_event();
        let mut scanner = SseScanner::new(false).with_final_event(final_event);
        claude
            .chunks
            .iter()
            .for_each(|c| drop(scanner.push(c.clone())));
        assert!(scanner.usage().input.is_some());
        assert!(scanner.saw_final_event());
        assert_eq!(scanner.usage().output, Some(2));
        assert!(joined(&claude).contains("event: message_stop"));
    }

    #[test]
    fn other_surfaces() {
        let emb = respond(
            Surface::Embeddings,
            &body(json!({"model": "mock-embed", "input": ["a", "b"]})),
            1,
        );
        let value: Value = serde_json::from_slice(&emb.chunks[0]).unwrap();
        assert_eq!(value["data"].as_array().unwrap().len(), 2);
        let v: Vec<f32> = serde_json::from_value(value["data"][0]["embedding"].clone()).unwrap();
        assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4);
        let b64 = respond(
            Surface::Embeddings,
            &body(json!({"input": "a", "encoding_format": "base64"})),
            1,
        );
        let value: Value = serde_json::from_slice(&b64.chunks[0]).unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(value["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        assert_eq!(raw.len(), EMBEDDING_DIMENSIONS * 4);
        let count = respond(
            Surface::CountTokens,
            &body(json!({"messages": [{"role": "user", "content": "abcd"}]})),
            1,
        );
        let value: Value = serde_json::from_slice(&count.chunks[0]).unwrap();
        assert_eq!(value["input_tokens"], 3 + 4 + 1 + 1);
        let resp = respond(
            Surface::Responses,
            &body(json!({"input": "ping", "stream": true})),
            1,
        );
        assert!(joined(&resp).contains("\"delta\":\"ping\""));
        let completion = respond(Surface::Completions, &body(json!({"prompt": ["say"]})), 1);
        assert!(joined(&completion).contains("\"text\":\"say\""));
    }
}
