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

    /// Adds a header whose value is known to be valid ASCII.
    pub(crate) fn with_header(mut self, name: &'static str, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.push((HeaderName::from_static(name), value));
        }
        self
    }
}

/// What a surface handler needs besides the request body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    /// Number of content chunks for a streamed reply.
    pub(crate) chunks: usize,
    /// Id source of this server.
    pub(crate) ids: &'a crate::text::Ids,
}
