//! The neutral conversation every wire format decodes into and encodes from.
//!
//! Each format module (`messages`, `chat`, `responses`) converts its own JSON to these types and
//! back; a translation from A to B is A's decoder followed by B's encoder. The types hold what
//! at least two of the formats can say; a field only one format has is dropped by its decoder
//! and named in [`Removed`] (never silently).

use serde_json::{Map, Value};

/// A whole request, as the client asked it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    pub model: String,
    /// System (and developer) instructions, in order.
    pub system: Vec<TextPart>,
    /// The conversation, oldest first. System messages in the middle of a conversation are
    /// moved into [`Request::system`].
    pub messages: Vec<Message>,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    /// `false` when the client disabled parallel tool calls.
    pub parallel_tool_calls: Option<bool>,
    /// Output-token limit (`max_tokens`, `max_completion_tokens`, `max_output_tokens`).
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stop: Vec<String>,
    pub stream: bool,
    /// Extended thinking / reasoning asked for.
    pub reasoning: Option<Reasoning>,
    /// The end user the request is made for (`user`, `metadata.user_id`, `safety_identifier`).
    pub user: Option<String>,
}

/// Text with an Anthropic prompt-cache breakpoint (`cache_control`) when `cache` is set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextPart {
    pub text: String,
    pub cache: Option<Value>,
}

/// Who said a message. Tool results are [`Part::ToolResult`] in a `User` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Part>,
}

/// One piece of a message or of a response.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(TextPart),
    Image(Image),
    /// Reasoning the model showed. `signature` is opaque and only valid for the format (and
    /// provider) that produced it: `translate` seals it with its origin in answers and opens
    /// it in requests only for that origin (`SIGNATURE_SEAL` in `translate/mod.rs`); encoders
    /// that need one drop a block without it.
    Thinking {
        text: String,
        signature: Option<String>,
    },
    /// Anthropic's encrypted thinking (`redacted_thinking.data`); Messages only.
    RedactedThinking {
        data: String,
    },
    /// A call the assistant made. `arguments` is JSON text (possibly partial in streams).
    ToolCall {
        id: String,
        name: String,
        arguments: String,
    },
    /// The result of tool call `id`, in a user message.
    ToolResult {
        id: String,
        /// Text and image parts.
        content: Vec<Part>,
        is_error: bool,
    },
}

/// An image given by URL or inline data.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub source: ImageSource,
    pub cache: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// An `http(s)` URL.
    Url(String),
    /// Inline bytes, base64-encoded (`data:` URLs decode into this).
    Base64 { media_type: String, data: String },
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments (an object schema).
    pub parameters: Value,
    /// OpenAI `strict`.
    pub strict: Option<bool>,
    pub cache: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    None,
    /// Some tool must be called (`required`, Anthropic `any`).
    Required,
    /// This tool must be called.
    Tool(String),
}

/// Thinking / reasoning settings. A budget converts to an effort and back by
/// [`Reasoning::effort`] and [`Reasoning::budget`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reasoning {
    /// Anthropic `thinking.budget_tokens`.
    pub budget_tokens: Option<u64>,
    /// OpenAI `reasoning_effort` / `reasoning.effort`: `minimal`, `low`, `medium`, `high`.
    pub effort: Option<String>,
}

impl Reasoning {
    /// The effort to ask an OpenAI model for.
    pub fn effort(&self) -> String {
        if let Some(effort) = &self.effort {
            return effort.clone();
        }
        match self.budget_tokens.unwrap_or(0) {
            0..=4095 => "low",
            4096..=16383 => "medium",
            _ => "high",
        }
        .to_owned()
    }

    /// The thinking budget to ask an Anthropic model for (at least Anthropic's minimum, 1,024).
    pub fn budget(&self) -> u64 {
        if let Some(budget) = self.budget_tokens {
            return budget.max(1024);
        }
        match self.effort.as_deref() {
            Some("minimal") | Some("low") => 1024,
            Some("high") => 16384,
            _ => 4096,
        }
    }
}

/// A whole (non-streamed) answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Response {
    pub id: String,
    pub model: String,
    /// Unix seconds (0 when the format carries no time).
    pub created: u64,
    /// Text, thinking and tool calls, in the order the model produced them.
    pub content: Vec<Part>,
    pub finish: Option<Finish>,
    pub usage: Usage,
}

/// Why generation stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// Natural end (`end_turn`, `stop`, `completed`).
    Stop,
    /// The output-token limit (`max_tokens`, `length`, `incomplete: max_output_tokens`).
    Length,
    /// The model called tools (`tool_use`, `tool_calls`).
    ToolUse,
    /// A stop sequence matched; Anthropic names it.
    StopSequence(Option<String>),
    /// Refused or filtered (`refusal`, `content_filter`).
    ContentFilter,
    /// Anthropic `pause_turn` (a server tool paused the turn); OpenAI formats read it as `Stop`.
    Pause,
}

/// Token counts, normalized: `input` includes cache reads and writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    /// Input tokens read from the prompt cache (part of `input`).
    pub cache_read: u64,
    /// Input tokens written to the prompt cache (part of `input`; Anthropic, OpenAI Responses).
    pub cache_write: u64,
    /// Output tokens spent reasoning (part of `output`; OpenAI formats only).
    pub reasoning: u64,
}

/// One step of a streamed answer, in the order the model produced it.
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    /// The stream opened (always first).
    Start {
        id: String,
        model: String,
        created: u64,
    },
    Text(String),
    Thinking(String),
    /// The signature of the thinking just streamed (format-specific, see [`Part::Thinking`]).
    ThinkingSignature(String),
    /// Tool call number `index` (0, 1, ... within this answer) starts.
    ToolCall {
        index: usize,
        id: String,
        name: String,
    },
    /// More JSON text of tool call `index`'s arguments.
    ToolArguments {
        index: usize,
        fragment: String,
    },
    /// Usage so far; a later `Usage` replaces an earlier one (fields the provider left out are
    /// carried over by the decoder).
    Usage(Usage),
    Finish(Finish),
    /// The provider reported an error in the stream; nothing follows.
    Error {
        kind: String,
        message: String,
    },
    /// The upstream stream completed (its final event arrived). A stream that breaks off
    /// never sends it, and its translation then has no final event either.
    Done,
}

/// Names of client fields that could not be carried into the target format.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed(Vec<String>);

impl Removed {
    /// Notes that field `name` (a top-level key, or a dotted path such as `tools[2].type`)
    /// was dropped. Repeats are kept once.
    pub fn note(&mut self, name: impl Into<String>) {
        let name = name.into();
        if !self.0.contains(&name) {
            self.0.push(name);
        }
    }

    /// Notes every key of `object` not in `known`.
    pub fn note_unknown(&mut self, object: &Map<String, Value>, known: &[&str]) {
        for key in object.keys() {
            if !known.contains(&key.as_str()) {
                self.note(key.clone());
            }
        }
    }

    /// Takes back a name noted by mistake (a gateway field such as `models`).
    pub fn forget(&mut self, name: &str) {
        self.0.retain(|n| n != name);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The names, in the order they were noted.
    pub fn names(&self) -> &[String] {
        &self.0
    }
}

/// A body that is not a valid request or answer of its format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    pub fn new(message: impl Into<String>) -> Self {
        Invalid(message.into())
    }
}

/// One wire format's conversions of whole bodies.
pub trait Codec {
    /// Reads a client request. Fields with no place in [`Request`] are noted in `removed`.
    fn decode_request(body: &Map<String, Value>, removed: &mut Removed)
        -> Result<Request, Invalid>;
    /// Writes a request for a provider of this format. Parts this format cannot carry
    /// (e.g. another format's thinking) are noted in `removed`.
    fn encode_request(request: &Request, removed: &mut Removed) -> Map<String, Value>;
    /// Reads a provider's whole answer.
    fn decode_response(body: &Value) -> Result<Response, Invalid>;
    /// Writes a whole answer for a client of this format.
    fn encode_response(response: &Response) -> Value;
}

/// Reads one format's SSE events into [`Delta`]s.
pub trait StreamDecoder: Default {
    /// One event: its `event:` name (if any) and its `data:` text. Events that carry nothing
    /// (pings, keep-alives) produce no delta.
    fn event(&mut self, name: Option<&str>, data: &str, out: &mut Vec<Delta>);
}

/// Writes [`Delta`]s as one format's SSE events.
pub trait StreamEncoder {
    /// Appends the events for `delta` to `out` (complete events, each ending in a blank line).
    fn delta(&mut self, delta: Delta, out: &mut Vec<u8>);
}
