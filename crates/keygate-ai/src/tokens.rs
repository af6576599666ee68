//! Token estimates without downloading a tokenizer: the input of a request (for
//! `max_input_tokens` and budgets) and the output that passes in a response (for budgets while a
//! stream runs, and for usage when the provider reports none).
//!
//! Heuristic: ASCII text costs one token per 4 characters (rounded up), every other character one
//! token (CJK and emoji are close to that in BPE vocabularies), plus 4 tokens per message and 3
//! for the reply primer. Only prompt-bearing fields are counted (`messages`, `system`, `prompt`,
//! `input`, `instructions`, `tools`); image/file payloads (`url`, `image_url`, `data`) are skipped.
//! It tends to over-count slightly for English, which is the safe side for a limit.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::Surface;

const PROMPT_FIELDS: [&str; 7] = [
    "messages",
    "system",
    "prompt",
    "input",
    "instructions",
    "tools",
    "functions",
];
const SKIPPED_KEYS: [&str; 4] = ["url", "image_url", "data", "file_data"];

/// Estimated tokens of one piece of text.
pub fn estimate_text_tokens(text: &str) -> u64 {
    let mut estimate = OutputEstimate::none();
    estimate.count_text(text);
    estimate.tokens()
}

/// Estimated input tokens of a request body.
pub fn estimate_input_tokens(body: &Map<String, Value>) -> u64 {
    let mut total = REPLY_PRIMER;
    for field in PROMPT_FIELDS {
        if let Some(value) = body.get(field) {
            if field == "messages" {
                total += 4 * value.as_array().map_or(0, |m| m.len() as u64);
            }
            total += count(value);
        }
    }
    total
}

/// The tokens the reply primer adds to every prompt.
const REPLY_PRIMER: u64 = 3;

/// Whether `key` is a top-level prompt field, and if so whether it is `messages` (whose entries
/// cost 4 tokens each besides their text).
pub(crate) fn prompt_field(key: &str) -> Option<bool> {
    PROMPT_FIELDS.contains(&key).then(|| key == "messages")
}

/// The estimate of one value read straight from the request bytes (no JSON tree): its strings'
/// tokens, and its element count when it is a list. Counts as [`estimate_input_tokens`] does.
///
/// Every value is read in full and checked exactly as `serde_json::Value` parses one (string
/// escapes and surrogates, UTF-8, number range), so a body accepted with it can always be turned
/// into a tree later, when it must be rewritten.
#[derive(Default)]
pub(crate) struct Text {
    tokens: u64,
    items: u64,
}

impl Text {
    /// The tokens of this value as prompt field `messages` (or another prompt field).
    pub(crate) fn prompt_tokens(&self, messages: bool) -> u64 {
        self.tokens + if messages { 4 * self.items } else { 0 }
    }

    /// The whole prompt's estimate from the sum of its fields' tokens.
    pub(crate) fn prompt_total(fields: u64) -> u64 {
        REPLY_PRIMER + fields
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Text, E> {
        Ok(Text {
            tokens: estimate_text_tokens(text),
            items: 0,
        })
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Text, E> {
        Ok(Text::default())
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Text, E> {
        Ok(Text::default())
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Text, E> {
        Ok(Text::default())
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Text, E> {
        Ok(Text::default())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Text, E> {
        Ok(Text::default())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Text, A::Error> {
        let mut out = Text::default();
        while let Some(item) = seq.next_element::<Text>()? {
            out.tokens += item.tokens;
            out.items += 1;
        }
        Ok(out)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Text, A::Error> {
        let mut out = Text::default();
        while let Some(counted) = map.next_key::<Counted>()? {
            // A skipped value is still read in full: only then is it checked as a JSON tree
            // would check it (`IgnoredAny` lets a lone surrogate through).
            let value = map.next_value::<Text>()?;
            if counted.0 {
                out.tokens += value.tokens;
            }
        }
        Ok(out)
    }
}

/// A nested key: counted unless it is one of [`SKIPPED_KEYS`].
struct Counted(bool);

impl<'de> Deserialize<'de> for Counted {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Name;
        impl Visitor<'_> for Name {
            type Value = Counted;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Counted, E> {
                Ok(Counted(!SKIPPED_KEYS.contains(&key)))
            }
        }
        deserializer.deserialize_str(Name)
    }
}

/// The generated text seen in a response so far, counted as [`estimate_text_tokens`] counts.
///
/// Only string values of the keys that carry generated text on the surface are counted: a
/// stream's deltas, or a whole body's content. Whole-text repeats (`response.output_text.done`,
/// `response.completed`) carry other keys, so nothing is counted twice.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutputEstimate {
    keys: &'static [&'static [u8]],
    ascii: u64,
    other: u64,
}

impl OutputEstimate {
    /// For the events of a stream on `surface`.
    pub fn for_stream(surface: Surface) -> Self {
        let keys: &'static [&'static [u8]] = match surface {
            Surface::ChatCompletions => {
                &[b"content", b"refusal", b"arguments", b"reasoning_content"]
            }
            Surface::Completions => &[b"text"],
            Surface::Responses => &[b"delta"],
            Surface::Messages => &[b"text", b"thinking", b"partial_json"],
            Surface::Embeddings | Surface::CountTokens | Surface::Models => &[],
        };
        Self::with_keys(keys)
    }

    /// For a whole (non-streamed) response body on `surface`.
    pub fn for_body(surface: Surface) -> Self {
        let keys: &'static [&'static [u8]] = match surface {
            Surface::ChatCompletions => {
                &[b"content", b"refusal", b"arguments", b"reasoning_content"]
            }
            Surface::Completions | Surface::Messages => &[b"text", b"thinking"],
            Surface::Responses => &[b"text", b"arguments"],
            Surface::Embeddings | Surface::CountTokens | Surface::Models => &[],
        };
        Self::with_keys(keys)
    }

    /// Counts nothing (a response with no generated text, or none wanted).
    pub fn none() -> Self {
        Self::default()
    }

    fn with_keys(keys: &'static [&'static [u8]]) -> Self {
        Self {
            keys,
            ascii: 0,
            other: 0,
        }
    }

    /// Estimated output tokens so far.
    pub fn tokens(&self) -> u64 {
        self.ascii.div_ceil(4) + self.other
    }

    /// Counts a piece of generated text itself (not a JSON document holding it).
    pub fn count_text(&mut self, text: &str) {
        // Counted over bytes: ASCII bytes are ASCII characters, and every other character has
        // one lead byte (0xC0 and up) besides its continuation bytes (0x80..0xC0).
        for &byte in text.as_bytes() {
            self.ascii += u64::from(byte < 0x80);
            self.other += u64::from(byte >= 0xC0);
        }
    }

    /// Counts the generated text in one JSON document (a `data:` payload or a whole body). A
    /// document cut off counts what it holds.
    pub fn scan(&mut self, json: &[u8]) {
        if self.keys.is_empty() {
            return;
        }
        let mut at = 0;
        // Whether the string value that comes next belongs to one of `keys`.
        let mut counted_key = false;
        while let Some(offset) = json[at..].iter().position(|&b| b == b'"') {
            let start = at + offset + 1;
            let end = string_end(json, start);
            let contents = &json[start..end.saturating_sub(1).max(start)];
            let is_key = json
                .get(end..)
                .and_then(|rest| rest.iter().find(|b| !b.is_ascii_whitespace()))
                == Some(&b':');
            if is_key {
                counted_key = self.keys.contains(&contents);
            } else if counted_key {
                self.count_string(contents);
                counted_key = false;
            }
            at = end.min(json.len());
        }
    }

    /// Counts the characters of a JSON string's raw contents, an escape as one character.
    fn count_string(&mut self, raw: &[u8]) {
        let mut i = 0;
        while i < raw.len() {
            match raw[i] {
                b'\\' if raw.get(i + 1) == Some(&b'u') => {
                    let code = raw
                        .get(i + 2..i + 6)
                        .and_then(|hex| std::str::from_utf8(hex).ok())
                        .and_then(|hex| u16::from_str_radix(hex, 16).ok());
                    match code {
                        Some(c) if c < 0x80 => self.ascii += 1,
                        // A surrogate pair is one character: its low half adds nothing.
                        Some(0xDC00..=0xDFFF) => {}
                        _ => self.other += 1,
                    }
                    i += 6;
                }
                b'\\' => {
                    self.ascii += 1;
                    i += 2;
                }
                b if b < 0x80 => {
                    self.ascii += 1;
                    i += 1;
                }
                b => {
                    // A UTF-8 lead byte starts a character; continuation bytes do not.
                    if b >= 0xC0 {
                        self.other += 1;
                    }
                    i += 1;
                }
            }
        }
    }
}

/// The index just past the closing quote of the JSON string whose contents start at `start`
/// (one past the document's end when it is cut off).
fn string_end(json: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < json.len() {
        match json[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    json.len() + 1
}

fn count(value: &Value) -> u64 {
    match value {
        Value::String(s) => estimate_text_tokens(s),
        Value::Array(items) => items.iter().map(count).sum(),
        Value::Object(map) => map
            .iter()
            .filter(|(k, _)| !SKIPPED_KEYS.contains(&k.as_str()))
            .map(|(_, v)| count(v))
            .sum(),
        Value::Number(_) | Value::Bool(_) | Value::Null => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_estimate() {
        assert_eq!(estimate_text_tokens(""), 0);
        assert_eq!(estimate_text_tokens("abcd"), 1);
        assert_eq!(estimate_text_tokens("abcde"), 2);
        assert_eq!(estimate_text_tokens("日本語"), 3);
    }

    fn stream_tokens(surface: Surface, events: &[&str]) -> u64 {
        let mut estimate = OutputEstimate::for_stream(surface);
        for event in events {
            estimate.scan(event.as_bytes());
        }
        estimate.tokens()
    }

    #[test]
    fn output_counts_generated_text_only() {
        let chat = [
            r#"{"id":"chatcmpl-1","model":"gpt-4o","choices":[{"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"id":"chatcmpl-1","choices":[{"delta":{"content":"Hello wor"},"finish_reason":null}]}"#,
            r#"{"id":"chatcmpl-1","choices":[{"delta":{"content":"ld, \"hi\"\n"}}],"usage":null}"#,
        ];
        // `Hello world, "hi"` and a newline: 18 characters.
        assert_eq!(stream_tokens(Surface::ChatCompletions, &chat), 5);
        let messages = [
            r#"{"type":"message_start","message":{"id":"msg_1","content":[],"model":"claude"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"abcdefgh"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":1}"}}"#,
        ];
        assert_eq!(stream_tokens(Surface::Messages, &messages), 4);
        let responses = [
            r#"{"type":"response.output_text.delta","item_id":"msg_1","delta":"abcd"}"#,
            r#"{"type":"response.output_text.done","item_id":"msg_1","text":"abcd"}"#,
            r#"{"type":"response.completed","response":{"output":[{"content":[{"text":"abcd"}]}]}}"#,
        ];
        assert_eq!(stream_tokens(Surface::Responses, &responses), 1);
        let mut body = OutputEstimate::for_body(Surface::Messages);
        body.scan(br#"{"content":[{"type":"text","text":"abcd"}],"usage":{}}"#);
        assert_eq!(body.tokens(), 1);
    }

    #[test]
    fn output_counts_escapes_and_other_scripts_as_characters() {
        let mut estimate = OutputEstimate::for_stream(Surface::ChatCompletions);
        estimate.scan(r#"{"content":"\u65e5\u672c語\ud83d\ude00"}"#.as_bytes());
        // Three CJK characters and one emoji (a surrogate pair).
        assert_eq!(estimate.tokens(), 4);
        // A document cut off mid-string counts what arrived.
        let mut cut = OutputEstimate::for_stream(Surface::ChatCompletions);
        cut.scan(br#"{"content":"abcdefgh"#);
        assert_eq!(cut.tokens(), 2);
    }

    #[test]
    fn the_request_estimate_counts_as_the_tree_estimate_does() {
        let bodies = [
            json!({"input": "abcd"}),
            json!({"model": "x", "messages": [{"role": "user", "content": "abc\u{e9} \"q\""},
                {"role": "assistant", "content": [{"type": "text", "text": "日本語"},
                    {"type": "image_url", "image_url": {"url": "data:AAAA"}}], "n": 3, "ok": true}],
                "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
                "tools": [{"name": "f", "input_schema": {"type": "object", "data": "skipped"}}],
                "temperature": 0.5, "metadata": {"user": "not prompt"}}),
            json!({"prompt": ["a", "bcdef"], "instructions": null}),
            json!({}),
        ];
        for body in bodies {
            let raw = body.to_string();
            let request = crate::ClientRequest::parse(raw.clone().into()).unwrap();
            assert_eq!(
                request.input_estimate,
                estimate_input_tokens(body.as_object().unwrap()),
                "{raw}"
            );
        }
    }

    #[test]
    fn body_estimate_counts_prompt_fields_only() {
        let body = json!({
            "model": "a-very-long-model-name-that-is-not-prompt",
            "messages": [{"role": "user", "content": "abcdabcd"},
                         {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:AAAA"}}]}],
            "system": "abcd"
        });
        // 3 primer + 2*4 per message + "user"x2 (1 each) + 8 chars (2) + "image_url" type (3) + system (1)
        assert_eq!(
            estimate_input_tokens(body.as_object().unwrap()),
            3 + 8 + 2 + 2 + 3 + 1
        );
        let big = json!({"input": "x".repeat(4000)});
        assert_eq!(estimate_input_tokens(big.as_object().unwrap()), 1003);
    }
}
