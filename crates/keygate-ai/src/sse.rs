//! An incremental Server-Sent-Events scanner: reads token usage from events as chunks pass, and
//! optionally drops OpenAI's usage-only chunk when the gateway (not the client) asked for it.
//!
//! Without stripping, every chunk is returned unchanged the moment it arrives; only a copy of the
//! current partial line is kept for scanning. With stripping, complete events are released as
//! soon as their terminating blank line arrives and only the unfinished event is held back.
//!
//! To fill in usage a provider left out of a Messages or Responses stream, it can also hold whole
//! events and note where the events that should carry usage (`message_start`, `message_delta`,
//! `response.completed`) arrived without it, for [`fill_usage_event`] to rewrite.
//!
//! It also counts events and notes the surface's final event (`data: [DONE]`, `event:
//! message_stop`, ...), so a stream that ends without it can be told from a complete one, and
//! whether the stream carried an error event.

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use crate::tokens::OutputEstimate;
use crate::usage::TokenUsage;
use crate::Surface;

/// Longest line (or held event) scanned; longer ones are passed on without being read.
const MAX_SCAN: usize = 1 << 20;

/// How a surface's event stream marks its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalEvent {
    /// A `data: [DONE]` line (OpenAI chat and text completions).
    Done,
    /// An `event:` line with one of these names (Responses, Anthropic messages).
    Named(&'static [&'static str]),
}

impl FinalEvent {
    /// Whether `line` (without its line ending) is this final event's marker line.
    fn marks(self, line: &[u8]) -> bool {
        let (prefix, names): (&[u8], &[&str]) = match self {
            FinalEvent::Done => (b"data:", &["[DONE]"]),
            FinalEvent::Named(names) => (b"event:", names),
        };
        line.strip_prefix(prefix)
            .map(|value| value.trim_ascii())
            .is_some_and(|value| names.iter().any(|name| value == name.as_bytes()))
    }
}

/// Scans one upstream SSE stream.
#[derive(Debug, Default)]
pub struct SseScanner {
    strip_usage_chunk: bool,
    /// The marker of a complete stream, when the surface has one.
    final_event: Option<FinalEvent>,
    /// Whether [`Self::final_event`] was seen.
    final_seen: bool,
    /// Whether an error event was seen ([`Self::saw_error_event`]).
    error_seen: bool,
    /// Events completed so far (blank lines ending a non-empty event).
    events: u64,
    /// Pass mode: whether the current event has a line yet.
    in_event: bool,
    /// Pass mode: the current partial line. Strip mode: the current unfinished event.
    pending: BytesMut,
    /// Pass mode: the current line grew past [`MAX_SCAN`]; skip to the next newline.
    skipping: bool,
    usage: TokenUsage,
    /// The generated text of the stream's data lines.
    output: OutputEstimate,
    /// Pass mode: where `data: [DONE]` starts in the chunk just pushed, when it starts there.
    done_at: Option<usize>,
    /// The events that should carry usage, when they are to be noted without it (events are
    /// then held whole).
    usage_events: Option<UsageEvents>,
    /// Where such events, arrived without usage, lie in the bytes just returned.
    unreported: Vec<std::ops::Range<usize>>,
}

/// The events whose usage Messages and Responses clients read (the SDKs fail without it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UsageEvents {
    /// `message_start` (`message.usage`, the SDKs' snapshot) and `message_delta`
    /// (`usage.output_tokens`, the final figures).
    Messages,
    /// `response.completed` (or `response.incomplete`): `response.usage`.
    Responses,
}

impl SseScanner {
    /// A scanner; `strip_usage_chunk` drops the OpenAI chunk that carries only `usage`.
    pub fn new(strip_usage_chunk: bool) -> Self {
        Self {
            strip_usage_chunk,
            ..Self::default()
        }
    }

    /// Also notes whether the stream carries `final_event`.
    pub fn with_final_event(mut self, final_event: Option<FinalEvent>) -> Self {
        self.final_event = final_event;
        self
    }

    /// Also estimates the output tokens of the data lines.
    pub fn with_output_estimate(mut self, output: OutputEstimate) -> Self {
        self.output = output;
        self
    }

    /// Holds whole events (as stripping does) so that, on Messages and Responses, the events
    /// that should carry usage can be rewritten when they arrive without it (see
    /// [`Self::take_unreported_usage_events`]). Other surfaces are left in pass mode.
    pub fn holding_usage_events(mut self, surface: Surface) -> Self {
        self.usage_events = match surface {
            Surface::Messages => Some(UsageEvents::Messages),
            Surface::Responses => Some(UsageEvents::Responses),
            _ => None,
        };
        self
    }

    /// Where, in the bytes the last [`Self::push`] returned, the events that should carry usage
    /// lie when they arrived without any (or, a `message_delta`, with 0 output tokens while text
    /// passed), in order.
    pub fn take_unreported_usage_events(&mut self) -> Vec<std::ops::Range<usize>> {
        std::mem::take(&mut self.unreported)
    }

    /// Output tokens estimated from the generated text seen so far.
    pub fn output_estimate(&self) -> u64 {
        self.output.tokens()
    }

    /// Where the `data: [DONE]` line starts in the chunk just pushed (pass mode, and only when
    /// the whole line is in that chunk): the place to put an event before the stream's end.
    pub fn take_done_offset(&mut self) -> Option<usize> {
        self.done_at.take()
    }

    /// Usage seen so far.
    pub fn usage(&self) -> TokenUsage {
        self.usage
    }

    /// Complete events seen so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// False when the surface has a final event and it has not arrived (yet).
    pub fn saw_final_event(&self) -> bool {
        self.final_event.is_none() || self.final_seen
    }

    /// Whether the stream carried an error event, in any surface's shape: an `event: error` or
    /// `event: response.failed` line (Messages, Responses), or a `data:` line whose JSON holds
    /// `error` (Chat Completions, Completions).
    pub fn saw_error_event(&self) -> bool {
        self.error_seen
    }

    /// Feeds one chunk; returns the bytes to forward now.
    pub fn push(&mut self, chunk: Bytes) -> Bytes {
        if self.holds_events() {
            self.push_events(&chunk)
        } else {
            self.scan_lines(&chunk);
            chunk
        }
    }

    /// The stream ended: returns whatever was held back (an unterminated last event).
    pub fn finish(&mut self) -> Bytes {
        if self.holds_events() {
            let rest = self.pending.split().freeze();
            if self.event_is_kept(&rest) {
                return rest;
            }
            return Bytes::new();
        }
        let line = self.pending.split();
        if !self.skipping {
            self.scan_line(&line);
        }
        Bytes::new()
    }

    fn holds_events(&self) -> bool {
        self.strip_usage_chunk || self.usage_events.is_some()
    }

    fn scan_lines(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at(pos);
            if self.skipping {
                // The skipped line was part of an event all the same.
                self.skipping = false;
                self.in_event = true;
            } else if self.pending.is_empty() {
                let seen = self.final_seen;
                self.scan_line(head);
                if !seen && self.final_seen && self.final_event == Some(FinalEvent::Done) {
                    self.done_at = Some(chunk.len() - rest.len());
                }
            } else {
                self.pending.extend_from_slice(head);
                let line = self.pending.split();
                self.scan_line(&line);
            }
            rest = &tail[1..];
        }
        if !self.skipping {
            self.pending.extend_from_slice(rest);
            if self.pending.len() > MAX_SCAN {
                self.pending.clear();
                self.skipping = true;
            }
        }
    }

    fn scan_line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            self.events += u64::from(self.in_event);
            self.in_event = false;
            return;
        }
        self.in_event = true;
        self.note_final(line);
        self.note_error(line);
        if let Some(data) = line.strip_prefix(b"data:") {
            self.output.scan(data);
        }
        if let Some(event) = parse_data_line(line) {
            self.usage.observe_event(&event);
        }
    }

    fn note_final(&mut self, line: &[u8]) {
        if let Some(final_event) = self.final_event.filter(|_| !self.final_seen) {
            self.final_seen = final_event.marks(line);
        }
    }

    fn note_error(&mut self, line: &[u8]) {
        if self.error_seen {
            return;
        }
        self.error_seen = if let Some(name) = line.strip_prefix(b"event:") {
            matches!(name.trim_ascii(), b"error" | b"response.failed")
        } else if let Some(data) = line.strip_prefix(b"data:") {
            holds_error(data)
        } else {
            false
        };
    }

    fn push_events(&mut self, chunk: &[u8]) -> Bytes {
        self.pending.extend_from_slice(chunk);
        let mut out = BytesMut::new();
        while let Some(end) = event_end(&self.pending) {
            let event = self.pending.split_to(end).freeze();
            self.events += 1;
            if self.event_is_kept(&event) {
                if self.lacks_usage(&event) {
                    self.unreported.push(out.len()..out.len() + event.len());
                }
                out.extend_from_slice(&event);
            }
        }
        if self.pending.len() > MAX_SCAN {
            out.extend_from_slice(&self.pending.split());
        }
        out.freeze()
    }

    /// Scans an event's data lines; false for a usage-only OpenAI chunk (dropped).
    fn event_is_kept(&mut self, event: &[u8]) -> bool {
        let mut kept = true;
        for line in event.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            self.note_final(line);
            self.note_error(line);
            if let Some(data) = line.strip_prefix(b"data:") {
                self.output.scan(data);
            }
            if let Some(value) = parse_data_line(line) {
                self.usage.observe_event(&value);
                let usage_only = value
                    .get("choices")
                    .and_then(Value::as_array)
                    .is_some_and(Vec::is_empty)
                    && value.get("usage").is_some_and(Value::is_object);
                kept &= !(usage_only && self.strip_usage_chunk);
            }
        }
        kept
    }
}

impl SseScanner {
    /// Whether `event` is one that should carry usage, arrived without it.
    fn lacks_usage(&self, event: &[u8]) -> bool {
        let names: &[&str] = match self.usage_events {
            None => return false,
            Some(UsageEvents::Messages) => &["message_start", "message_delta"],
            Some(UsageEvents::Responses) => &["response.completed", "response.incomplete"],
        };
        // Only the few events that name such a type are parsed.
        let named = |name: &&str| memchr::memmem::find(event, name.as_bytes()).is_some();
        if !names.iter().any(named) {
            return false;
        }
        let Some(value) = single_data(event)
            .and_then(|data| serde_json::from_slice::<Value>(data.trim_ascii_start()).ok())
        else {
            return false;
        };
        let has_usage = |pointer| value.pointer(pointer).is_some_and(Value::is_object);
        match value.get("type").and_then(Value::as_str) {
            Some(kind) if !names.contains(&kind) => false,
            Some("message_start") => !has_usage("/message/usage"),
            Some("message_delta") => {
                match value
                    .pointer("/usage/output_tokens")
                    .and_then(Value::as_u64)
                {
                    None => true,
                    Some(reported) => reported == 0 && self.output.tokens() > 0,
                }
            }
            Some(_) => !has_usage("/response/usage"),
            None => false,
        }
    }
}

/// The payload of an event's only `data:` line (`None` with none or several).
pub(crate) fn single_data(event: &[u8]) -> Option<&[u8]> {
    let mut data = event
        .split(|&b| b == b'\n')
        .filter_map(|line| line.strip_prefix(b"data:"));
    let first = data.next()?;
    data.next()
        .is_none()
        .then(|| first.strip_suffix(b"\r").unwrap_or(first))
}

/// `event` (one [`SseScanner::take_unreported_usage_events`] found) with the estimated usage
/// filled in, every other line unchanged: a `message_start` gets `message.usage` (the input, 0
/// output tokens so far), a `message_delta` `usage.output_tokens` (and `usage.input_tokens` when
/// the stream reported no input), a `response.completed` or `response.incomplete`
/// `response.usage` as OpenAI shapes it. `input` is the input the stream reported,
/// `input_estimate` counts it otherwise; `output` counts the output that passed (both are called
/// only when the event needs them). `None` when the event is not of that shape.
pub fn fill_usage_event(
    event: &[u8],
    input: Option<u64>,
    input_estimate: impl FnOnce() -> u64,
    output: impl FnOnce() -> u64,
) -> Option<Vec<u8>> {
    let data = single_data(event)?;
    let mut value: Value = serde_json::from_slice(data.trim_ascii_start()).ok()?;
    match value.get("type").and_then(Value::as_str)? {
        "message_start" => {
            let usage = serde_json::json!({
                "input_tokens": input.unwrap_or_else(input_estimate), "output_tokens": 0,
            });
            value
                .get_mut("message")?
                .as_object_mut()?
                .insert("usage".into(), usage);
        }
        "message_delta" => {
            let object = value.as_object_mut()?;
            let usage = object
                .entry("usage")
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            if !usage.is_object() {
                *usage = Value::Object(serde_json::Map::new());
            }
            let usage = usage.as_object_mut()?;
            usage.insert("output_tokens".into(), output().into());
            if input.is_none() {
                usage.insert("input_tokens".into(), input_estimate().into());
            }
        }
        "response.completed" | "response.incomplete" => {
            let (input, output) = (input.unwrap_or_else(input_estimate), output());
            let usage = serde_json::json!({
                "input_tokens": input, "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input + output,
            });
            value
                .get_mut("response")?
                .as_object_mut()?
                .insert("usage".into(), usage);
        }
        _ => return None,
    }
    let mut out = Vec::with_capacity(event.len() + 160);
    for line in event.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"data:") {
            out.extend_from_slice(b"data: ");
            serde_json::to_writer(&mut out, &value).ok()?;
            out.extend_from_slice(if line.ends_with(b"\r\n") {
                b"\r\n"
            } else {
                b"\n"
            });
        } else {
            out.extend_from_slice(line);
        }
    }
    Some(out)
}

/// An event that ends a stream with an error, as the surface's SDKs raise it: OpenAI chat and
/// completions a `data:` chunk holding `error`; Responses an `error` event (whose payload also
/// carries `error`, which the OpenAI SDKs look for); Anthropic an `error` event with its error
/// body.
pub fn error_event(surface: Surface, kind: &str, message: &str, code: &str) -> Bytes {
    let error = serde_json::json!({"type": kind, "message": message, "code": code});
    let event = match surface {
        Surface::Responses => {
            let data = serde_json::json!({"type": "error", "code": code, "message": message,
                "param": null, "error": error});
            format!("event: error\ndata: {data}\n\n")
        }
        Surface::Messages => {
            let data = serde_json::json!({"type": "error", "error": error});
            format!("event: error\ndata: {data}\n\n")
        }
        _ => format!("data: {}\n\n", serde_json::json!({ "error": error })),
    };
    Bytes::from(event)
}

/// The byte index just past the first complete event (after its blank line), if any.
pub(crate) fn event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(pos) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + pos;
        let next = &buf[nl + 1..];
        if next.first() == Some(&b'\n') {
            return Some(nl + 2);
        }
        if next.starts_with(b"\r\n") {
            return Some(nl + 3);
        }
        i = nl + 1;
    }
    None
}

/// The JSON of a `data:` line that carries a `usage` object; `None` for other lines (most
/// chunks, which carry `"usage": null` or none) without parsing them.
fn parse_data_line(line: &[u8]) -> Option<Value> {
    let data = line.strip_prefix(b"data:")?;
    if !has_usage_object(data) {
        return None;
    }
    serde_json::from_slice(data.trim_ascii_start()).ok()
}

/// Whether a `data:` line's JSON holds a non-null top-level `error`. Only lines with an
/// `"error":` key whose value is not `null` are parsed: a generated text's quotes are escaped, so
/// it never has one, and Responses events carry `"error":null` in every `response` object.
fn holds_error(data: &[u8]) -> bool {
    const KEY: &[u8] = b"\"error\"";
    let candidate = memchr::memmem::find_iter(data, KEY).any(|at| {
        let after = data[at + KEY.len()..].trim_ascii_start();
        after
            .strip_prefix(b":")
            .is_some_and(|value| !value.trim_ascii_start().starts_with(b"null"))
    });
    candidate
        && serde_json::from_slice::<Value>(data.trim_ascii_start())
            .is_ok_and(|value| value.get("error").is_some_and(|error| !error.is_null()))
}

/// Whether `"usage"` followed by `:` and `{` (whitespace allowed) occurs in `data`.
fn has_usage_object(data: &[u8]) -> bool {
    const KEY: &[u8] = b"\"usage\"";
    let mut rest = data;
    while let Some(pos) = rest.windows(KEY.len()).position(|w| w == KEY) {
        let after = rest[pos + KEY.len()..].trim_ascii_start();
        if let Some(value) = after.strip_prefix(b":") {
            if value.trim_ascii_start().first() == Some(&b'{') {
                return true;
            }
        }
        rest = &rest[pos + KEY.len()..];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENAI: &str = concat!(
        "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n",
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n",
        "data: [DONE]\n\n"
    );

    const ANTHROPIC: &str = concat!(
        "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":11,\"output_tokens\":1}}}\r\n\r\n",
        "event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"usage\"}}\r\n\r\n",
        "event: message_delta\r\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":7}}\r\n\r\n",
        "event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n"
    );

    /// Feeds `input` in chunks of `size` bytes and returns (forwarded bytes, usage).
    fn run(input: &str, size: usize, strip: bool) -> (String, TokenUsage) {
        let mut scanner = SseScanner::new(strip);
        let mut out = Vec::new();
        for chunk in input.as_bytes().chunks(size) {
            out.extend_from_slice(&scanner.push(Bytes::copy_from_slice(chunk)));
        }
        out.extend_from_slice(&scanner.finish());
        (String::from_utf8(out).unwrap(), scanner.usage())
    }

    #[test]
    fn finds_where_done_starts_in_the_chunk_that_holds_it() {
        let stream = "data: {\"choices\":[]}\n\ndata: [DONE]\n\n";
        let mut scanner = SseScanner::new(false).with_final_event(Some(FinalEvent::Done));
        scanner.push(Bytes::from_static(stream.as_bytes()));
        assert_eq!(
            scanner.take_done_offset(),
            Some(stream.find("data: [DONE]").unwrap())
        );
        assert_eq!(scanner.take_done_offset(), None, "taken once");
        // A marker split across chunks began in an earlier chunk: nowhere to insert.
        let mut scanner = SseScanner::new(false).with_final_event(Some(FinalEvent::Done));
        scanner.push(Bytes::from_static(b"data: [DO"));
        scanner.push(Bytes::from_static(b"NE]\n\n"));
        assert!(scanner.saw_final_event());
        assert_eq!(scanner.take_done_offset(), None);
    }

    #[test]
    fn error_events_in_each_surface_shape() {
        let data = |event: &Bytes| -> Value {
            let text = std::str::from_utf8(event).unwrap();
            assert!(text.ends_with("\n\n"));
            let line = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            serde_json::from_str(line).unwrap()
        };
        let chat = error_event(Surface::ChatCompletions, "rate_limit_error", "spent", "E1");
        assert!(chat.starts_with(b"data: "));
        assert_eq!(data(&chat)["error"]["message"], "spent");
        let messages = error_event(Surface::Messages, "rate_limit_error", "spent", "E1");
        assert!(messages.starts_with(b"event: error\n"));
        assert_eq!(data(&messages)["type"], "error");
        assert_eq!(data(&messages)["error"]["type"], "rate_limit_error");
        let responses = error_event(Surface::Responses, "rate_limit_error", "spent", "E1");
        assert!(responses.starts_with(b"event: error\n"));
        assert_eq!(data(&responses)["code"], "E1");
        assert_eq!(data(&responses)["error"]["message"], "spent");
    }

    #[test]
    fn notes_error_events_of_every_surface_at_any_chunk_boundary() {
        let with_error = |surface| {
            let error = error_event(surface, "overloaded_error", "Overloaded", "E1");
            format!(
                "{}{}",
                &OPENAI[..OPENAI.find("\n\n").unwrap() + 2],
                std::str::from_utf8(&error).unwrap()
            )
        };
        let failed = "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\",\"error\":{\"code\":\"server_error\"}}}\n\n";
        let errors = [
            with_error(Surface::ChatCompletions),
            with_error(Surface::Messages),
            with_error(Surface::Responses),
            failed.to_owned(),
        ];
        // Text about errors, an `error: null` and a `"type":"error"` string are no error event.
        let clean = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"an \\\"error\\\" event: error\"}}],\"error\":null}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}],\"kind\":\"error\"}\n\n",
        );
        for size in [1, 3, 64, 4096] {
            for strip in [false, true] {
                let scan = |text: &str| {
                    let mut scanner = SseScanner::new(strip);
                    for chunk in text.as_bytes().chunks(size) {
                        scanner.push(Bytes::copy_from_slice(chunk));
                    }
                    scanner.finish();
                    scanner.saw_error_event()
                };
                for stream in &errors {
                    assert!(scan(stream), "{size} {strip}: {stream}");
                }
                for stream in [OPENAI, ANTHROPIC, clean] {
                    assert!(!scan(stream), "{size} {strip}: {stream}");
                }
            }
        }
    }

    #[test]
    fn estimates_output_at_any_chunk_boundary_in_both_modes() {
        for strip in [false, true] {
            for size in [1, 5, 4096] {
                let mut scanner = SseScanner::new(strip).with_output_estimate(
                    OutputEstimate::for_stream(Surface::Messages, crate::Tokenizer::Heuristic),
                );
                for chunk in ANTHROPIC.as_bytes().chunks(size) {
                    scanner.push(Bytes::copy_from_slice(chunk));
                }
                scanner.finish();
                // The one text delta, "usage": 5 characters.
                assert_eq!(scanner.output_estimate(), 2, "strip {strip}, size {size}");
            }
        }
    }

    #[test]
    fn reads_usage_at_any_chunk_boundary() {
        for size in [1, 2, 3, 7, 64, 4096] {
            let (out, usage) = run(OPENAI, size, false);
            assert_eq!(out, OPENAI);
            assert_eq!(
                usage,
                TokenUsage {
                    input: Some(5),
                    output: Some(2),
                    ..TokenUsage::default()
                },
                "size {size}"
            );
            let (out, usage) = run(ANTHROPIC, size, false);
            assert_eq!(out, ANTHROPIC);
            assert_eq!(
                usage,
                TokenUsage {
                    input: Some(11),
                    output: Some(7),
                    ..TokenUsage::default()
                },
                "size {size}"
            );
        }
    }

    #[test]
    fn counts_events_and_notes_the_final_one_at_any_chunk_boundary() {
        let cases = [
            (OPENAI, Surface::ChatCompletions, 4, "data: [DONE]"),
            (ANTHROPIC, Surface::Messages, 4, "event: message_stop"),
        ];
        for (input, surface, events, last) in cases {
            let cut = &input[..input.rfind(last).unwrap()];
            for size in [1, 3, 64, 4096] {
                for strip in [false, true] {
                    let scan = |text: &str| {
                        let mut scanner =
                            SseScanner::new(strip).with_final_event(surface.final_event());
                        for chunk in text.as_bytes().chunks(size) {
                            scanner.push(Bytes::copy_from_slice(chunk));
                        }
                        scanner.finish();
                        (scanner.events(), scanner.saw_final_event())
                    };
                    assert_eq!(scan(input), (events, true), "{surface} {size} {strip}");
                    let (_, complete) = scan(cut);
                    assert!(!complete, "{surface} {size} {strip}: {cut}");
                }
            }
        }
        let mut embeddings = SseScanner::new(false).with_final_event(None);
        embeddings.push(Bytes::from_static(b"data: {}\n\n"));
        assert!(embeddings.saw_final_event());
    }

    #[test]
    fn strips_only_the_usage_chunk() {
        let expected = OPENAI.replace(
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n",
            "",
        );
        for size in [1, 5, 4096] {
            let (out, usage) = run(OPENAI, size, true);
            assert_eq!(out, expected, "size {size}");
            assert_eq!(usage.output, Some(2));
        }
        let (out, _) = run(ANTHROPIC, 3, true);
        assert_eq!(out, ANTHROPIC);
    }

    #[test]
    fn strip_mode_releases_complete_events_immediately() {
        let mut scanner = SseScanner::new(true);
        let first = scanner.push(Bytes::from_static(
            b"data: {\"choices\":[{}]}\n\ndata: {\"cho",
        ));
        assert_eq!(&first[..], b"data: {\"choices\":[{}]}\n\n");
        let second = scanner.push(Bytes::from_static(b"ices\":[{}]}\n\n"));
        assert_eq!(&second[..], b"data: {\"choices\":[{}]}\n\n");
        assert!(scanner.finish().is_empty());
    }

    #[test]
    fn only_usage_objects_are_parsed() {
        assert!(has_usage_object(br#"{"usage":{"a":1}}"#));
        assert!(has_usage_object(br#"{"usage" : {"a":1}}"#));
        assert!(has_usage_object(br#"{"x":"usage","usage":{"a":1}}"#));
        assert!(!has_usage_object(br#"{"usage":null}"#));
        assert!(!has_usage_object(br#"{"text":"the \"usage\": {x}"}"#));
    }

    #[test]
    fn unterminated_tail_and_oversized_lines() {
        let (out, usage) = run(
            "data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}",
            4,
            false,
        );
        assert_eq!(usage.input, Some(1));
        assert!(out.starts_with("data:"));
        let huge = format!(
            "data: {}\n\ndata: {{\"usage\":{{\"prompt_tokens\":3}}}}\n\n",
            "x".repeat(MAX_SCAN + 10)
        );
        let (out, usage) = run(&huge, 8192, false);
        assert_eq!(out.len(), huge.len());
        assert_eq!(usage.input, Some(3));
        let (out, _) = run(&huge, 8192, true);
        assert_eq!(out.len(), huge.len());
    }

    /// Feeds `input` in chunks of `size` to a scanner holding `surface`'s usage events; returns
    /// the forwarded bytes with the unreported usage events filled (input estimate 9).
    fn fill(input: &str, size: usize, surface: Surface) -> String {
        let mut scanner = SseScanner::new(false)
            .with_output_estimate(OutputEstimate::for_stream(
                surface,
                crate::Tokenizer::Heuristic,
            ))
            .holding_usage_events(surface);
        let mut out = Vec::new();
        for chunk in input.as_bytes().chunks(size) {
            let mut bytes = scanner.push(Bytes::copy_from_slice(chunk)).to_vec();
            for range in scanner.take_unreported_usage_events().into_iter().rev() {
                let (reported, output) = (scanner.usage().input, || scanner.output_estimate());
                let event = fill_usage_event(&bytes[range.clone()], reported, || 9, output);
                bytes.splice(range, event.unwrap());
            }
            out.extend_from_slice(&bytes);
        }
        out.extend_from_slice(&scanner.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn fills_only_the_usage_events_a_provider_left_without_usage() {
        let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\"}}\n\n";
        let text = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"abcdefgh\"}}\n\n";
        let delta = "event: message_delta\r\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"}}\r\n\r\n";
        let stop = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let stream = [start, text, delta, stop].concat();
        let started = "event: message_start\ndata: {\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":9,\"output_tokens\":0}},\"type\":\"message_start\"}\n\n";
        let filled = "event: message_delta\r\ndata: {\"delta\":{\"stop_reason\":\"end_turn\"},\"type\":\"message_delta\",\"usage\":{\"input_tokens\":9,\"output_tokens\":2}}\r\n\r\n";
        for size in [1, 7, 4096] {
            let out = fill(&stream, size, Surface::Messages);
            assert_eq!(out, [started, text, filled, stop].concat(), "size {size}");
        }
        // Reported usage is left alone; a reported 0 while text passed is filled, without input
        // when the stream reported some.
        let reported = stream
            .replace(
                "{\"id\":\"m\"}",
                "{\"id\":\"m\",\"usage\":{\"input_tokens\":4}}",
            )
            .replace(
                "\"end_turn\"}}",
                "\"end_turn\"},\"usage\":{\"output_tokens\":5}}",
            );
        assert_eq!(fill(&reported, 5, Surface::Messages), reported);
        let zero = reported.replace("\"output_tokens\":5", "\"output_tokens\":0");
        let out = fill(&zero, 5, Surface::Messages);
        assert!(out.starts_with(&reported[..reported.find("event: message_delta").unwrap()]));
        assert!(out.contains("\"usage\":{\"output_tokens\":2}}"), "{out}");

        let delta = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"abcd\"}\n\n";
        let done = "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\",\"usage\":null}}\n\n";
        let out = fill(&[delta, done].concat(), 3, Surface::Responses);
        let data = out
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap();
        let usage = &serde_json::from_str::<Value>(data).unwrap()["response"]["usage"];
        assert_eq!(
            *usage,
            serde_json::json!({"input_tokens": 9, "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 1, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 10})
        );
        assert!(out.starts_with(delta));
        // Chat streams stay in pass mode: their usage chunk is added before `[DONE]`.
        assert_eq!(fill(OPENAI, 3, Surface::ChatCompletions), OPENAI);
    }
}
