//! What a surface handler returns: a status, headers and either a JSON document or a list of SSE
//! events; and the SSE framing helpers.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use serde::Serialize;

/// `content-type` of JSON replies.
pub(crate) const JSON: &str = "application/json";
/// `content-type` of streamed replies (as OpenAI and Anthropic send it).
pub(crate) const EVENT_STREAM: &str = "text/event-stream; charset=utf-8";

/// Room reserved for a serialized reply: a chat completion fits, so it is written without
/// growing the buffer.
const INITIAL_CAPACITY: usize = 1024;

/// `head`, then `value` as JSON.
fn to_json(head: &[u8], value: &impl Serialize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(INITIAL_CAPACITY);
    bytes.extend_from_slice(head);
    // Serializing plain data into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut bytes, value);
    bytes
}

/// One SSE event as written on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The full event text, ending with a blank line.
    pub(crate) bytes: Bytes,
    /// Whether the chunk delay applies before this event (content deltas); framing events go
    /// out at once.
    pub(crate) paced: bool,
}

impl SseEvent {
    /// `data: {json}` (OpenAI chat and completions framing).
    pub(crate) fn data(value: &impl Serialize, paced: bool) -> Self {
        Self::framed(b"data: ", value, paced)
    }

    /// `event: NAME` + `data: {json}` (Anthropic and Responses framing).
    pub(crate) fn named(name: &str, value: &impl Serialize, paced: bool) -> Self {
        let head = format!("event: {name}\ndata: ");
        Self::framed(head.as_bytes(), value, paced)
    }

    fn framed(head: &[u8], value: &impl Serialize, paced: bool) -> Self {
        let mut bytes = to_json(head, value);
        bytes.extend_from_slice(b"\n\n");
        Self {
            bytes: Bytes::from(bytes),
            paced,
        }
    }

    /// OpenAI's end-of-stream marker `data: [DONE]`.
    pub(crate) fn done() -> Self {
        Self {
            bytes: Bytes::from_static(b"data: [DONE]\n\n"),
            paced: false,
        }
    }
}

/// The body of a reply.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Payload {
    /// A JSON document, serialized.
    Json(Bytes),
    /// A server-sent event stream.
    Sse(Vec<SseEvent>),
}

/// A complete reply, before timing controls are applied.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) payload: Payload,
}

impl Reply {
    /// A `200 OK` JSON reply.
    pub(crate) fn json(value: &impl Serialize) -> Self {
        Self {
            status: StatusCode::OK,
            headers: Vec::new(),
            payload: Payload::Json(Bytes::from(to_json(b"", value))),
        }
    }

    /// A `200 OK` event-stream reply.
    pub(crate) fn sse(events: Vec<SseEvent>) -> Self {
        Self {
            status: StatusCode::OK,
            headers: Vec::new(),
            payload: Payload::Sse(events),
        }
    }

    /// The same reply with every `usage` object left out (top level, and in Anthropic's
    /// `message` and the Responses `response`), and OpenAI's usage-only stream chunk dropped:
    /// what a server that reports no usage sends.
    pub(crate) fn without_usage(mut self) -> Self {
        self.payload = match self.payload {
            Payload::Json(bytes) => Payload::Json(strip_usage(&bytes).unwrap_or(bytes)),
            Payload::Sse(events) => Payload::Sse(
                events
                    .into_iter()
                    .filter_map(|event| {
                        let text = std::str::from_utf8(&event.bytes).ok()?;
                        let Some(at) = text.find("data: {") else {
                            return Some(event);
                        };
                        let data = text[at + 6..].trim_end();
                        let mut value: serde_json::Value = serde_json::from_str(data).ok()?;
                        let usage_only = value["choices"].as_array().is_some_and(Vec::is_empty)
                            && value.get("usage").is_some_and(|u| u.is_object());
                        if usage_only {
                            return None;
                        }
                        remove_usage(&mut value);
                        let bytes = format!("{}{value}\n\n", &text[..at + 6]);
                        Some(SseEvent {
                            bytes: Bytes::from(bytes),
                            paced: event.paced,
                        })
                    })
                    .collect(),
            ),
        };
        self
    }

    /// Adds a header whose value is known to be valid ASCII.
    pub(crate) fn with_header(mut self, name: &'static str, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.push((HeaderName::from_static(name), value));
        }
        self
    }
}

/// A JSON document without its `usage` objects (`None` when it is not JSON).
fn strip_usage(bytes: &[u8]) -> Option<Bytes> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    remove_usage(&mut value);
    Some(Bytes::from(value.to_string()))
}

fn remove_usage(value: &mut serde_json::Value) {
    for holder in [None, Some("message"), Some("response")] {
        let object = match holder {
            None => value.as_object_mut(),
            Some(key) => value.get_mut(key).and_then(|v| v.as_object_mut()),
        };
        if let Some(object) = object {
            object.remove("usage");
        }
    }
}

/// What a surface handler needs besides the request body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    /// Number of content chunks for a streamed reply.
    pub(crate) chunks: usize,
    /// Id source of this server.
    pub(crate) ids: &'a crate::text::Ids,
    /// Prompt-cache usage to report.
    pub(crate) cache: crate::controls::Cache,
}
