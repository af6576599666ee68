//! Translation between the Anthropic Messages, OpenAI Chat Completions and OpenAI Responses
//! formats: requests, whole answers, errors and SSE streams, both ways. Pure: no I/O.
//!
//! Every format decodes into the neutral types of [`ir`] and encodes from them, so a
//! translation is one format's decoder followed by another's encoder. What the target format
//! cannot carry is dropped and named ([`ir::Removed`]). `docs/translation.md` has the
//! conformance matrix.

mod chat;
mod events;
pub mod ir;
mod messages;
mod responses;
mod sse_write;

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use bytes::Bytes;
use serde::de::{Deserialize, Deserializer, Visitor};
use serde_json::{Map, Value};

use crate::tokens::OutputEstimate;
use crate::{error_body, Surface, TokenUsage};
use chat::{Chat, ChatDecoder, ChatEncoder};
use events::EventSplitter;
use ir::{Codec, Delta, Invalid, Part, Removed, StreamDecoder, StreamEncoder, Usage};
use messages::{Messages, MessagesDecoder, MessagesEncoder};
use responses::{Responses, ResponsesDecoder, ResponsesEncoder};

/// The surfaces a request on `surface` can be translated to, best first: Chat Completions is
/// what most servers speak, and Messages and Responses carry reasoning, which Chat does not.
pub fn targets(surface: Surface) -> &'static [Surface] {
    match surface {
        Surface::Messages => &[Surface::ChatCompletions, Surface::Responses],
        Surface::ChatCompletions => &[Surface::Messages, Surface::Responses],
        Surface::Responses => &[Surface::ChatCompletions, Surface::Messages],
        _ => &[],
    }
}

/// A request rewritten for another format.
#[derive(Debug, Clone, PartialEq)]
pub struct TranslatedRequest {
    pub body: Map<String, Value>,
    /// Client fields the target format has no place for.
    pub removed: Removed,
}

/// Rewrites a client request on `from` for a provider on `to`. `max_tokens` fills the output
/// limit when the client set none and the target requires one (Messages).
pub fn request(
    from: Surface,
    to: Surface,
    body: &Map<String, Value>,
    max_tokens: u64,
) -> Result<TranslatedRequest, Invalid> {
    let mut removed = Removed::default();
    let mut request = match from {
        Surface::Messages => Messages::decode_request(body, &mut removed),
        Surface::ChatCompletions => Chat::decode_request(body, &mut removed),
        Surface::Responses => Responses::decode_request(body, &mut removed),
        other => return Err(untranslatable(other)),
    }?;
    if to == Surface::Messages {
        request.max_tokens.get_or_insert(max_tokens);
    }
    open_signatures(&mut request, to);
    let body = match to {
        Surface::Messages => Messages::encode_request(&request, &mut removed),
        Surface::ChatCompletions => Chat::encode_request(&request, &mut removed),
        Surface::Responses => Responses::encode_request(&request, &mut removed),
        other => return Err(untranslatable(other)),
    };
    Ok(TranslatedRequest { body, removed })
}

/// A whole answer rewritten for the client.
#[derive(Debug, Clone, PartialEq)]
pub struct TranslatedResponse {
    pub body: Vec<u8>,
    /// The provider reported no usage: the body carries an estimate (the input estimate given,
    /// the output counted from the answer's text).
    pub estimated: bool,
}

/// Rewrites a provider's whole answer on `from` for the client on `to`; `input_estimate` is
/// the client request's, used when the provider reports no usage.
pub fn response(
    from: Surface,
    to: Surface,
    body: &[u8],
    input_estimate: u64,
) -> Result<TranslatedResponse, Invalid> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Invalid::new(format!("the answer is not JSON: {e}")))?;
    let mut response = match from {
        Surface::Messages => Messages::decode_response(&value),
        Surface::ChatCompletions => Chat::decode_response(&value),
        Surface::Responses => Responses::decode_response(&value),
        other => return Err(untranslatable(other)),
    }?;
    for part in &mut response.content {
        if let Part::Thinking { signature, .. } = part {
            // An empty signature (Messages' mark of thinking without one) is none: sealed, it
            // would read as a signature.
            *signature = signature
                .take()
                .filter(|signature| !signature.is_empty())
                .map(|signature| seal(from, &signature));
        }
    }
    let reported = value
        .get("usage")
        .is_some_and(|usage| TokenUsage::from_usage_object(usage).output.is_some());
    if !reported {
        let mut output = OutputEstimate::none();
        for part in &response.content {
            count_part(&mut output, part);
        }
        response.usage = Usage {
            input: input_estimate,
            output: output.tokens(),
            ..Usage::default()
        };
    }
    let value = match to {
        Surface::Messages => Messages::encode_response(&response),
        Surface::ChatCompletions => Chat::encode_response(&response),
        Surface::Responses => Responses::encode_response(&response),
        other => return Err(untranslatable(other)),
    };
    Ok(TranslatedResponse {
        body: value.to_string().into_bytes(),
        estimated: !reported,
    })
}

/// Counts the generated text of an answer's part.
fn count_part(output: &mut OutputEstimate, part: &Part) {
    match part {
        Part::Text(text) => output.count_text(&text.text),
        Part::Thinking { text, .. } => output.count_text(text),
        Part::ToolCall { arguments, .. } => output.count_text(arguments),
        Part::Image(_) | Part::RedactedThinking { .. } | Part::ToolResult { .. } => {}
    }
}

/// A provider's error body (either format's shape, or not JSON at all) in the shape `to`'s
/// SDKs read.
pub fn error(to: Surface, body: &[u8]) -> Vec<u8> {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = value.get("error").unwrap_or(&Value::Null);
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let message = error
        .get("message")
        .and_then(text)
        .or_else(|| error.as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    let kind = error
        .get("type")
        .and_then(text)
        .unwrap_or_else(|| "api_error".to_owned());
    let code = error
        .get("code")
        .and_then(|c| text(c).or_else(|| c.as_i64().map(|n| n.to_string())))
        .unwrap_or_default();
    error_body(to.format(), &kind, &message, &code)
}

/// Marks a thinking signature the gateway translated: `kg-sig:<surface>:<signature>`.
///
/// A signature (Anthropic's `signature`, OpenAI's `encrypted_content`) is valid only for the
/// format that made it. A translated answer hands the client the provider's signature sealed
/// with the provider's surface ([`seal`]); when the client sends the block back, the request's
/// translation opens it for that same surface and drops every other signature
/// ([`open_signatures`]), so a Claude signature reaches Claude again through a Responses
/// client, and never OpenAI. Encoders drop (and name) thinking left without one.
const SIGNATURE_SEAL: &str = "kg-sig:";

/// `signature` sealed as made by a provider on `surface`.
fn seal(surface: Surface, signature: &str) -> String {
    format!("{SIGNATURE_SEAL}{}:{signature}", surface.name())
}

/// Keeps the signatures sealed for `to`, opened; drops the others.
fn open_signatures(request: &mut ir::Request, to: Surface) {
    for message in &mut request.messages {
        for part in &mut message.content {
            if let Part::Thinking { signature, .. } = part {
                *signature = signature.as_deref().and_then(|sealed| {
                    let rest = sealed.strip_prefix(SIGNATURE_SEAL)?;
                    let inner = rest.strip_prefix(to.name())?.strip_prefix(':')?;
                    Some(inner.to_owned())
                });
            }
        }
    }
}

fn untranslatable(surface: Surface) -> Invalid {
    Invalid::new(format!("the {surface} surface is not translated"))
}

enum Decoder {
    Messages(MessagesDecoder),
    Chat(ChatDecoder),
    Responses(ResponsesDecoder),
}

enum Encoder {
    Messages(MessagesEncoder),
    Chat(ChatEncoder),
    Responses(ResponsesEncoder),
}

/// Re-encodes a provider's SSE stream on one surface as another surface's stream, event by
/// event as the chunks arrive. Output is only ever whole events.
///
/// A provider that reports no usage (llama.cpp ignores `stream_options.include_usage`) still
/// gives the client usage where its format has it: the request's input estimate and the output
/// counted from the deltas, added before the end ([`StreamTranslator::estimated`]).
pub struct StreamTranslator {
    splitter: EventSplitter,
    decoder: Decoder,
    encoder: Encoder,
    /// The deltas of the events a chunk completed, and their encoding (both reused).
    deltas: Vec<Delta>,
    out: Vec<u8>,
    /// The provider's surface, which seals its thinking signatures.
    from: Surface,
    input_estimate: u64,
    output: OutputEstimate,
    usage_seen: bool,
    estimated: bool,
}

impl StreamTranslator {
    /// A translator from `from` to `to`; `include_usage`: a Chat Completions client asked for
    /// the usage chunk; `input_estimate`: the request's, for a provider that reports no usage.
    /// `None` when either surface does not stream.
    pub fn new(
        from: Surface,
        to: Surface,
        include_usage: bool,
        input_estimate: u64,
    ) -> Option<Self> {
        let decoder = match from {
            Surface::Messages => Decoder::Messages(MessagesDecoder::default()),
            Surface::ChatCompletions => Decoder::Chat(ChatDecoder::default()),
            Surface::Responses => Decoder::Responses(ResponsesDecoder::default()),
            _ => return None,
        };
        let encoder = match to {
            Surface::Messages => Encoder::Messages(MessagesEncoder::new()),
            Surface::ChatCompletions => Encoder::Chat(ChatEncoder::new(include_usage)),
            Surface::Responses => Encoder::Responses(ResponsesEncoder::new()),
            _ => return None,
        };
        Some(Self {
            splitter: EventSplitter::default(),
            decoder,
            encoder,
            deltas: Vec::new(),
            out: Vec::new(),
            from,
            input_estimate,
            output: OutputEstimate::none(),
            usage_seen: false,
            estimated: false,
        })
    }

    /// Whether the usage the client got was estimated (the provider reported none).
    pub fn estimated(&self) -> bool {
        self.estimated
    }

    /// The translation of the events `chunk` completes (empty while an event is unfinished).
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        let Self {
            splitter,
            decoder,
            deltas,
            ..
        } = self;
        splitter.feed(chunk, &mut |name, data| decode(decoder, name, data, deltas));
        self.encode()
    }

    /// The upstream stream ended: translates an event left without its blank line.
    pub fn finish(&mut self) -> Bytes {
        let Self {
            splitter,
            decoder,
            deltas,
            ..
        } = self;
        splitter.end(&mut |name, data| decode(decoder, name, data, deltas));
        self.encode()
    }

    fn encode(&mut self) -> Bytes {
        if self.deltas.is_empty() {
            return Bytes::new();
        }
        let mut out = std::mem::take(&mut self.out);
        let mut deltas = std::mem::take(&mut self.deltas);
        for delta in deltas.drain(..) {
            match &delta {
                Delta::Text(text) | Delta::Thinking(text) => self.output.count_text(text),
                Delta::ToolArguments { fragment, .. } => self.output.count_text(fragment),
                Delta::Usage(_) => self.usage_seen = true,
                Delta::ThinkingSignature(signature) => {
                    // An empty one is none, as in whole answers.
                    if !signature.is_empty() {
                        let sealed = seal(self.from, signature);
                        self.encoder
                            .delta(Delta::ThinkingSignature(sealed), &mut out);
                    }
                    continue;
                }
                Delta::Done if !self.usage_seen => {
                    self.estimated = true;
                    let usage = Usage {
                        input: self.input_estimate,
                        output: self.output.tokens(),
                        ..Usage::default()
                    };
                    self.encoder.delta(Delta::Usage(usage), &mut out);
                }
                _ => {}
            }
            self.encoder.delta(delta, &mut out);
        }
        let bytes = Bytes::copy_from_slice(&out);
        out.clear();
        (self.out, self.deltas) = (out, deltas);
        bytes
    }
}

impl Encoder {
    fn delta(&mut self, delta: Delta, out: &mut Vec<u8>) {
        match self {
            Encoder::Messages(e) => e.delta(delta, out),
            Encoder::Chat(e) => e.delta(delta, out),
            Encoder::Responses(e) => e.delta(delta, out),
        }
    }
}

fn decode(decoder: &mut Decoder, name: Option<&str>, data: &str, out: &mut Vec<Delta>) {
    match decoder {
        Decoder::Messages(d) => d.event(name, data, out),
        Decoder::Chat(d) => d.event(name, data, out),
        Decoder::Responses(d) => d.event(name, data, out),
    }
}

// ---------------------------------------------------------------------------------------------
// Typed reading of stream events.
//
// Each stream decoder reads the events most of a stream is made of (text, thinking and argument
// deltas) straight from the event's text into a small struct whose strings borrow from it
// ([`parse_object`], [`Str`]); an event of another kind, or with a field of an unexpected type,
// is parsed into a `Value`, from which the decoder reads the same struct for the shared code.

/// `data` as a `T`, when it is a JSON object that reads as one. (A derived struct also reads a
/// JSON array, its fields in order; no event is one, and the `Value` path ignores them.)
fn parse_object<'a, T: Deserialize<'a>>(data: &'a str) -> Option<T> {
    let object = data
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{');
    object.then(|| serde_json::from_str(data).ok()).flatten()
}

/// A string field of an event as the decoders read it (`Value::as_str`, empty when absent or
/// `null`), borrowed from the event's text unless it has escapes. Any other type fails the typed
/// read, and the event is read from a `Value` instead.
#[derive(Default)]
struct Str<'a>(Cow<'a, str>);

impl<'a> Str<'a> {
    /// The field `key` of `value`, read as [`Str`] reads it.
    fn at(value: &'a Value, key: &str) -> Self {
        Str::from(value.get(key).and_then(Value::as_str).unwrap_or_default())
    }
}

impl<'a> From<&'a str> for Str<'a> {
    fn from(text: &'a str) -> Self {
        Str(Cow::Borrowed(text))
    }
}

impl From<Str<'_>> for String {
    fn from(text: Str<'_>) -> Self {
        text.0.into_owned()
    }
}

impl Deref for Str<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;

        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Str<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or null")
            }

            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(text)))
            }

            fn visit_str<E>(self, text: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(text.to_owned())))
            }

            fn visit_string<E>(self, text: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(text)))
            }

            fn visit_unit<E>(self) -> Result<Str<'de>, E> {
                Ok(Str::default())
            }
        }

        deserializer.deserialize_any(StrVisitor)
    }
}

#[cfg(test)]
mod tests;
