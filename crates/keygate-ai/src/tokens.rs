//! Token estimates: the input of a request (for `max_input_tokens` and budgets) and the output
//! that passes in a response (for budgets while a stream runs, and for usage when the provider
//! reports none).
//!
//! OpenAI models are counted with their own BPE vocabulary ([`Tokenizer::for_model`]:
//! `o200k_base` or `cl100k_base`, shipped in the binary and loaded on first use). Every other
//! model gets a character heuristic: ASCII text costs one token per 4 characters (rounded up),
//! every other character one token (CJK and emoji are close to that in BPE vocabularies), plus 4
//! tokens per message and 3 for the reply primer. It tends to over-count slightly for English,
//! which is the safe side for a limit.
//!
//! Only prompt-bearing fields are counted (`messages`, `system`, `prompt`, `input`,
//! `instructions`, `tools`); image/file payloads (`url`, `image_url`, `data`) are skipped.

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

/// How a model's tokens are counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Tokenizer {
    /// The character heuristic: models whose vocabulary Keygate does not ship (Anthropic,
    /// Gemini, self-hosted models).
    #[default]
    Heuristic,
    /// OpenAI's `o200k_base`: gpt-4o, gpt-4.1, gpt-4.5, gpt-5, the o-series, gpt-oss.
    O200k,
    /// OpenAI's `cl100k_base`: gpt-4, gpt-4-turbo, gpt-3.5-turbo, the text-embedding models.
    Cl100k,
}

impl Tokenizer {
    /// The tokenizer of a model id, read as OpenAI names its models; a routing prefix
    /// (`openai/gpt-4o`) is ignored. Ids it does not know get the heuristic.
    pub fn for_model(model: &str) -> Tokenizer {
        let id = model.rsplit('/').next().unwrap_or(model);
        // A family's id, or one of its versions and sizes (`gpt-4o-mini`, `gpt-5.1`), in any case.
        let of = |families: &[&str]| {
            families.iter().any(|family| {
                id.split_at_checked(family.len())
                    .is_some_and(|(head, rest)| {
                        head.eq_ignore_ascii_case(family)
                            && (rest.is_empty() || rest.starts_with(['-', '.']))
                    })
            })
        };
        const O200K: [&str; 9] = [
            "gpt-4o",
            "chatgpt-4o",
            "gpt-4.1",
            "gpt-4.5",
            "gpt-5",
            "gpt-oss",
            "o1",
            "o3",
            "o4",
        ];
        const CL100K: [&str; 5] = [
            "gpt-4",
            "gpt-3.5",
            "gpt-35",
            "text-embedding-3",
            "text-embedding-ada-002",
        ];
        // `gpt-4` last: `gpt-4.1` and `gpt-4o` are of the newer vocabulary.
        if of(&O200K) {
            Tokenizer::O200k
        } else if of(&CL100K) {
            Tokenizer::Cl100k
        } else {
            Tokenizer::Heuristic
        }
    }

    /// The BPE vocabulary, loaded on first use (o200k_base: ~70 ms and 64 MiB in a release build).
    fn bpe(self) -> Option<&'static bpe_openai::Tokenizer> {
        match self {
            Tokenizer::Heuristic => None,
            Tokenizer::O200k => Some(bpe_openai::o200k_base()),
            Tokenizer::Cl100k => Some(bpe_openai::cl100k_base()),
        }
    }

    /// Tokens of one piece of text.
    pub fn count(self, text: &str) -> u64 {
        match self.bpe() {
            Some(bpe) => bpe.count(text) as u64,
            None => estimate_text_tokens(text),
        }
    }

    /// Tokens each chat message adds besides its text: OpenAI's published 3 for its models, 4
    /// for the heuristic (whose role names cost what BPE charges for the framing).
    fn per_message(self) -> u64 {
        match self {
            Tokenizer::Heuristic => 4,
            Tokenizer::O200k | Tokenizer::Cl100k => 3,
        }
    }
}

/// Tokens of one piece of text by the character heuristic.
pub fn estimate_text_tokens(text: &str) -> u64 {
    let mut chars = CharCount::default();
    chars.add_text(text);
    chars.tokens()
}

/// Input tokens of a request body, counted with `tokenizer`.
pub fn estimate_input_tokens(body: &Map<String, Value>, tokenizer: Tokenizer) -> u64 {
    let mut total = REPLY_PRIMER;
    for field in PROMPT_FIELDS {
        if let Some(value) = body.get(field) {
            if field == "messages" {
                total += tokenizer.per_message() * value.as_array().map_or(0, |m| m.len() as u64);
            }
            total += count(value, tokenizer);
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

/// The generated text seen in a response so far, counted with the answering model's
/// [`Tokenizer`].
///
/// Only string values of the keys that carry generated text on the surface are counted: a
/// stream's deltas, or a whole body's content. Whole-text repeats (`response.output_text.done`,
/// `response.completed`) carry other keys, so nothing is counted twice.
#[derive(Debug, Clone, Default)]
pub struct OutputEstimate {
    keys: &'static [&'static [u8]],
    counter: Counter,
}

#[derive(Debug, Clone)]
enum Counter {
    Chars(CharCount),
    Bpe(BpeText),
}

impl Default for Counter {
    fn default() -> Self {
        Counter::Chars(CharCount::default())
    }
}

impl OutputEstimate {
    /// For the events of a stream on `surface`.
    pub fn for_stream(surface: Surface, tokenizer: Tokenizer) -> Self {
        let keys: &'static [&'static [u8]] = match surface {
            Surface::ChatCompletions => {
                &[b"content", b"refusal", b"arguments", b"reasoning_content"]
            }
            Surface::Completions => &[b"text"],
            Surface::Responses => &[b"delta"],
            Surface::Messages => &[b"text", b"thinking", b"partial_json"],
            Surface::Embeddings | Surface::CountTokens | Surface::Models => &[],
        };
        Self::with_keys(keys, tokenizer)
    }

    /// For a whole (non-streamed) response body on `surface`.
    pub fn for_body(surface: Surface, tokenizer: Tokenizer) -> Self {
        let keys: &'static [&'static [u8]] = match surface {
            Surface::ChatCompletions => {
                &[b"content", b"refusal", b"arguments", b"reasoning_content"]
            }
            Surface::Completions | Surface::Messages => &[b"text", b"thinking"],
            Surface::Responses => &[b"text", b"arguments"],
            Surface::Embeddings | Surface::CountTokens | Surface::Models => &[],
        };
        Self::with_keys(keys, tokenizer)
    }

    /// Scans nothing; [`Self::count_text`] counts with the heuristic.
    pub fn none() -> Self {
        Self::default()
    }

    fn with_keys(keys: &'static [&'static [u8]], tokenizer: Tokenizer) -> Self {
        let counter = match tokenizer {
            Tokenizer::Heuristic => Counter::default(),
            bpe => Counter::Bpe(BpeText {
                tokenizer: bpe,
                running: false,
                counted: 0,
                tail: String::new(),
            }),
        };
        Self { keys, counter }
    }

    /// Keeps a BPE count current at every piece of text, for a caller that reads it after each
    /// chunk (a budget). Otherwise up to 8 KiB of text wait until the count is asked for, so a
    /// stream whose count is never needed loads no vocabulary and counts its text at most once.
    pub fn running(mut self) -> Self {
        if let Counter::Bpe(text) = &mut self.counter {
            text.running = true;
        }
        self
    }

    /// Estimated output tokens so far.
    pub fn tokens(&self) -> u64 {
        match &self.counter {
            Counter::Chars(chars) => chars.tokens(),
            Counter::Bpe(text) => text.tokens(),
        }
    }

    /// Counts a piece of generated text itself (not a JSON document holding it).
    pub fn count_text(&mut self, text: &str) {
        match &mut self.counter {
            Counter::Chars(chars) => chars.add_text(text),
            Counter::Bpe(bpe) => bpe.push(text),
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
                match &mut self.counter {
                    Counter::Chars(chars) => chars.add_json_string(contents),
                    Counter::Bpe(bpe) => bpe.push(&unescape(contents)),
                }
                counted_key = false;
            }
            at = end.min(json.len());
        }
    }
}

/// Text counted by the character heuristic.
#[derive(Debug, Clone, Copy, Default)]
struct CharCount {
    ascii: u64,
    other: u64,
}

impl CharCount {
    fn tokens(&self) -> u64 {
        self.ascii.div_ceil(4) + self.other
    }

    fn add_text(&mut self, text: &str) {
        // Counted over bytes: ASCII bytes are ASCII characters, and every other character has
        // one lead byte (0xC0 and up) besides its continuation bytes (0x80..0xC0).
        for &byte in text.as_bytes() {
            self.ascii += u64::from(byte < 0x80);
            self.other += u64::from(byte >= 0xC0);
        }
    }

    /// Counts the characters of a JSON string's raw contents, an escape as one character.
    fn add_json_string(&mut self, raw: &[u8]) {
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

/// Text a [`BpeText`] lets wait uncounted before it counts what it can: so a stream whose count
/// is never asked for (its provider reported usage) never loads the vocabulary, unless it is long.
const BPE_WAITING: usize = 8 << 10;

/// Longest tail a [`BpeText`] keeps once it has counted what it can (a piece can be arbitrarily
/// long, e.g. a run of base64): past it the tail is counted as it stands, which can only
/// over-count by a token at that cut.
const MAX_BPE_TAIL: usize = 4 << 10;

/// Text counted with a BPE vocabulary as it grows, exactly as the whole text would count.
///
/// The vocabulary's pre-tokenizer splits text into pieces that no token crosses, and text added
/// later can only extend or re-split the last pieces (a word grows, trailing spaces join the next
/// word). So counting what can be counted takes the pieces before the last two once and keeps
/// only those two. That happens at every delta when the count is read after each one (`running`,
/// for a budget), else when [`BPE_WAITING`] bytes wait; a count asked for counts the tail.
#[derive(Debug, Clone)]
struct BpeText {
    tokenizer: Tokenizer,
    running: bool,
    counted: u64,
    tail: String,
}

impl BpeText {
    fn push(&mut self, text: &str) {
        self.tail.push_str(text);
        if self.running || self.tail.len() > BPE_WAITING {
            self.count_finished_pieces();
        }
    }

    fn count_finished_pieces(&mut self) {
        let Some(bpe) = self.tokenizer.bpe() else {
            return;
        };
        let base = self.tail.as_ptr() as usize;
        let (mut counted, mut done) = (0, 0);
        let mut last: [Option<&str>; 2] = [None, None];
        for piece in bpe.split(&self.tail) {
            if let Some(finished) = last[0] {
                counted += bpe.bpe.count(finished.as_bytes()) as u64;
                done = finished.as_ptr() as usize - base + finished.len();
            }
            last = [last[1], Some(piece)];
        }
        self.counted += counted;
        self.tail.drain(..done);
        if self.tail.len() > MAX_BPE_TAIL {
            self.counted += bpe.count(self.tail.as_str()) as u64;
            self.tail.clear();
        }
    }

    fn tokens(&self) -> u64 {
        let tail = match self.tokenizer.bpe() {
            Some(bpe) if !self.tail.is_empty() => bpe.count(self.tail.as_str()) as u64,
            _ => 0,
        };
        self.counted + tail
    }
}

/// The text of a JSON string's raw contents (as much as arrived, when cut off).
fn unescape(raw: &[u8]) -> std::borrow::Cow<'_, str> {
    if !raw.contains(&b'\\') {
        return String::from_utf8_lossy(raw);
    }
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    match serde_json::from_slice::<String>(&quoted) {
        Ok(text) => text.into(),
        Err(_) => String::from_utf8_lossy(raw).into_owned().into(),
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

fn count(value: &Value, tokenizer: Tokenizer) -> u64 {
    match value {
        Value::String(s) => tokenizer.count(s),
        Value::Array(items) => items.iter().map(|item| count(item, tokenizer)).sum(),
        Value::Object(map) => map
            .iter()
            .filter(|(k, _)| !SKIPPED_KEYS.contains(&k.as_str()))
            .map(|(_, v)| count(v, tokenizer))
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
        let mut estimate = OutputEstimate::for_stream(surface, Tokenizer::Heuristic);
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
        let mut body = OutputEstimate::for_body(Surface::Messages, Tokenizer::Heuristic);
        body.scan(br#"{"content":[{"type":"text","text":"abcd"}],"usage":{}}"#);
        assert_eq!(body.tokens(), 1);
    }

    #[test]
    fn output_counts_escapes_and_other_scripts_as_characters() {
        let mut estimate =
            OutputEstimate::for_stream(Surface::ChatCompletions, Tokenizer::Heuristic);
        estimate.scan(r#"{"content":"\u65e5\u672c語\ud83d\ude00"}"#.as_bytes());
        // Three CJK characters and one emoji (a surrogate pair).
        assert_eq!(estimate.tokens(), 4);
        // A document cut off mid-string counts what arrived.
        let mut cut = OutputEstimate::for_stream(Surface::ChatCompletions, Tokenizer::Heuristic);
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
                estimate_input_tokens(body.as_object().unwrap(), Tokenizer::Heuristic),
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
            estimate_input_tokens(body.as_object().unwrap(), Tokenizer::Heuristic),
            3 + 8 + 2 + 2 + 3 + 1
        );
        let big = json!({"input": "x".repeat(4000)});
        assert_eq!(
            estimate_input_tokens(big.as_object().unwrap(), Tokenizer::Heuristic),
            1003
        );
    }

    #[test]
    fn openai_models_get_their_vocabulary_and_others_the_heuristic() {
        for model in [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4o-2024-11-20",
            "chatgpt-4o-latest",
            "gpt-4.1-nano",
            "gpt-5",
            "gpt-5.1",
            "gpt-5-mini",
            "o1",
            "o3-mini",
            "o4-mini",
            "openai/gpt-oss-20b",
            "openai/gpt-5",
            "GPT-4o",
        ] {
            assert_eq!(Tokenizer::for_model(model), Tokenizer::O200k, "{model}");
        }
        for model in [
            "gpt-4",
            "gpt-4-turbo",
            "gpt-4-0613",
            "gpt-3.5-turbo",
            "gpt-3.5-turbo-instruct",
            "gpt-35-turbo",
            "text-embedding-3-small",
            "text-embedding-ada-002",
        ] {
            assert_eq!(Tokenizer::for_model(model), Tokenizer::Cl100k, "{model}");
        }
        for model in [
            "claude-sonnet-4-6",
            "gemini-2.5-pro",
            "llama-3.3-70b-versatile",
            "smollm2",
            "o1x",
            "gpt-4oops",
            "mistral-embed",
            "deepseek-chat",
            "",
        ] {
            assert_eq!(Tokenizer::for_model(model), Tokenizer::Heuristic, "{model}");
        }
    }

    #[test]
    fn bpe_counts_are_the_vocabulary_s() {
        // Counts as OpenAI's tiktoken gives them.
        assert_eq!(Tokenizer::O200k.count("Hello, world!"), 4);
        assert_eq!(Tokenizer::Cl100k.count("Hello, world!"), 4);
        assert_eq!(Tokenizer::O200k.count("日本語のテキスト"), 6);
        assert_eq!(Tokenizer::Cl100k.count("日本語のテキスト"), 8);
        let body = json!({"messages": [{"role": "user", "content": "Hello, world!"}]});
        // 3 primer + 3 per message + "user" (1) + the text (4).
        assert_eq!(
            estimate_input_tokens(body.as_object().unwrap(), Tokenizer::O200k),
            11
        );
    }

    #[test]
    fn streamed_bpe_counts_as_the_whole_text_at_any_split() {
        let text = "fn main() {\n    let answer = 42; // the answer\n    println!(\"{answer}\");\n}\n\n\
            The  quick brown fox — naïve café — 日本語のテキスト 12345678 don't   stop\t\r\n  end   ";
        // Long enough that a waiting text is counted on the way too.
        let text = text.repeat(80);
        for tokenizer in [Tokenizer::O200k, Tokenizer::Cl100k] {
            let whole = tokenizer.count(&text);
            let chars: Vec<char> = text.chars().collect();
            for (size, running) in [(1, true), (7, true), (1, false), (3, false), (64, false)] {
                let mut estimate = OutputEstimate::for_stream(Surface::ChatCompletions, tokenizer);
                if running {
                    estimate = estimate.running();
                }
                for piece in chars.chunks(size) {
                    estimate.count_text(&piece.iter().collect::<String>());
                }
                assert_eq!(
                    estimate.tokens(),
                    whole,
                    "{tokenizer:?} in pieces of {size}, running {running}"
                );
            }
            // Deltas inside JSON, escapes included.
            let mut estimate =
                OutputEstimate::for_stream(Surface::ChatCompletions, tokenizer).running();
            for piece in chars.chunks(5) {
                let delta =
                    json!({"choices": [{"delta": {"content": piece.iter().collect::<String>()}}]});
                estimate.scan(delta.to_string().as_bytes());
            }
            assert_eq!(estimate.tokens(), whole, "{tokenizer:?} in JSON deltas");
        }
    }
}
