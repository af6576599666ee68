//! A stream's events with their text deltas redacted: Chat Completions
//! `choices[].delta.content`, Completions `choices[].text`, Messages `content_block_delta`
//! `delta.text` (text deltas) and Responses `response.output_text.delta` `delta`, each choice or
//! block read as one text ([`HeldText`]).
//!
//! Only the text fields change: they are rewritten in place in the event's JSON ([`json`]), every
//! other byte, field, event and line passes as it came. What a block still holds is sent in one
//! more delta event just before the event that ends it (a Chat chunk with its `finish_reason`,
//! `content_block_stop`, `response.output_text.done`), or before the stream's end (`[DONE]`,
//! `message_delta`, `response.completed`) for a block never ended. The whole texts Responses
//! repeats in its `.done` and `response.completed` events are redacted whole, so they match the
//! deltas; the `sequence_number` of the events after an added one moves up by one per added
//! event.
//!
//! Tool-call arguments, thinking and refusals are not rewritten.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

use super::{answer, into_string, json, HeldText, Redaction};
use crate::sse::{event_end, single_data};
use crate::Surface;

/// Longest unfinished event held; a longer one is passed on unread.
const MAX_EVENT: usize = 1 << 20;

/// Rewrites one stream.
#[derive(Debug)]
pub struct StreamRedactor {
    redaction: Arc<Redaction>,
    format: Format,
    /// The unfinished event.
    pending: BytesMut,
    /// The open blocks, in the order they opened (few: one per choice or content block).
    blocks: Vec<Block>,
    /// Chat: the first chunk's members but `choices` and `usage` (raw JSON, comma-separated),
    /// for the chunks added.
    header: Option<Vec<u8>>,
    /// Responses: events added so far.
    added: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// Chat Completions (`delta.content`) or, `text`, Completions (`text`).
    Chat {
        text: bool,
    },
    Messages,
    Responses,
}

impl Format {
    fn of(surface: Surface) -> Option<Format> {
        match surface {
            Surface::ChatCompletions => Some(Format::Chat { text: false }),
            Surface::Completions => Some(Format::Chat { text: true }),
            Surface::Messages => Some(Format::Messages),
            Surface::Responses => Some(Format::Responses),
            _ => None,
        }
    }
}

/// Which choice or block a delta belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    /// A Chat or Completions choice, a Messages content block: its `index`.
    Index(u64),
    /// A Responses output text: `item_id`, `output_index`, `content_index`.
    Output(String, u64, u64),
}

#[derive(Debug)]
struct Block {
    key: Key,
    text: HeldText,
}

/// The changes to one event's data: ranges of it and what replaces them, in order.
type Edits = Vec<(Range<usize>, Vec<u8>)>;

impl StreamRedactor {
    /// A redactor for a stream on `surface`; `None` for a surface without generated text.
    pub fn new(redaction: Arc<Redaction>, surface: Surface) -> Option<Self> {
        Some(Self {
            redaction,
            format: Format::of(surface)?,
            pending: BytesMut::new(),
            blocks: Vec::new(),
            header: None,
            added: 0,
        })
    }

    /// Whether answers on `surface` carry generated text to redact (Chat Completions,
    /// Completions, Messages, Responses).
    pub fn covers(surface: Surface) -> bool {
        Format::of(surface).is_some()
    }

    /// Bytes held back over all open blocks.
    pub fn held(&self) -> usize {
        self.blocks.iter().map(|b| b.text.held()).sum()
    }

    /// Feeds a chunk of the stream; returns the bytes to send now.
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = event_end(&self.pending) {
            let event = self.pending.split_to(end);
            self.event(&event, &mut out);
        }
        if self.pending.len() > MAX_EVENT {
            out.extend_from_slice(&self.pending.split());
        }
        Bytes::from(out)
    }

    /// The stream ended: returns an unterminated last event, rewritten. Text still held (the
    /// stream broke off before its blocks ended) is dropped with the stream.
    pub fn finish(&mut self) -> Bytes {
        let rest = self.pending.split();
        let mut out = Vec::new();
        if !rest.is_empty() {
            self.event(&rest, &mut out);
        }
        Bytes::from(out)
    }

    /// Appends `event` (one whole event, blank line included) to `out`, rewritten; the events
    /// added before it go first.
    fn event(&mut self, event: &[u8], out: &mut Vec<u8>) {
        let Some(data) = single_data(event).map(<[u8]>::trim_ascii) else {
            out.extend_from_slice(event);
            return;
        };
        let mut edits = Edits::new();
        match self.format {
            Format::Chat { .. } if data == b"[DONE]" => self.end_chat_blocks(out),
            Format::Chat { text } => self.chat(data, text, &mut edits, out),
            Format::Messages => self.messages(data, &mut edits, out),
            Format::Responses => self.responses(data, &mut edits, out),
        }
        // `data` lies within `event`: its offset is where the edits apply.
        let data_at = data.as_ptr() as usize - event.as_ptr() as usize;
        let mut at = 0;
        for (range, replacement) in edits {
            out.extend_from_slice(&event[at..data_at + range.start]);
            out.extend_from_slice(&replacement);
            at = data_at + range.end;
        }
        out.extend_from_slice(&event[at..]);
    }

    /// A Chat or Completions chunk: its choices' text redacted; a choice that finishes has its
    /// held text sent in a chunk added before this one.
    fn chat(&mut self, data: &[u8], text: bool, edits: &mut Edits, out: &mut Vec<u8>) {
        let Some([Some(choices)]) = json::object(data, 0, ["choices"]) else {
            return;
        };
        let Some(choices) = json::elements(data, &choices) else {
            return;
        };
        if self.header.is_none() {
            self.header = chat_header(data);
        }
        let mut finished = Vec::new();
        for choice in choices {
            let fields = [
                "index",
                "finish_reason",
                if text { "text" } else { "delta" },
            ];
            let Some([index, finish, field]) = json::object(data, choice.start, fields) else {
                continue;
            };
            let index = index.and_then(|i| json::number(data, &i));
            let key = Key::Index(index.unwrap_or(0));
            let ends = json::is_set(data, finish.as_ref());
            let field = match field {
                Some(delta) if !text => {
                    json::object(data, delta.start, ["content"]).and_then(|[c]| c)
                }
                field => field,
            };
            let mut sent = Vec::new();
            if let Some((range, delta)) =
                field.and_then(|r| Some((r.clone(), json::string(data, &r)?)))
            {
                self.push_text(key.clone(), &delta, &mut sent);
                // A finishing choice's text goes in the chunk added before this one.
                let now = if ends {
                    String::new()
                } else {
                    into_string(std::mem::take(&mut sent))
                };
                edits.push((range, json::encode(&now)));
            }
            if ends {
                self.end_block(&key, &mut sent);
                if let (Key::Index(index), false) = (key, sent.is_empty()) {
                    finished.push((index, into_string(sent)));
                }
            }
        }
        if !finished.is_empty() {
            self.add_chat_chunk(finished, out);
        }
    }

    /// `[DONE]`: the choices that never finished send what they hold.
    fn end_chat_blocks(&mut self, out: &mut Vec<u8>) {
        let mut ended = Vec::new();
        for mut block in std::mem::take(&mut self.blocks) {
            let mut sent = Vec::new();
            block.text.flush(&self.redaction, &mut sent);
            if let (Key::Index(index), false) = (block.key, sent.is_empty()) {
                ended.push((index, into_string(sent)));
            }
        }
        if !ended.is_empty() {
            self.add_chat_chunk(ended, out);
        }
    }

    /// Appends a chunk carrying `texts` (choice index, text) in the stream's shape.
    fn add_chat_chunk(&self, texts: Vec<(u64, String)>, out: &mut Vec<u8>) {
        let Format::Chat { text } = self.format else {
            return;
        };
        out.extend_from_slice(b"data: {");
        if let Some(header) = self.header.as_ref().filter(|h| !h.is_empty()) {
            out.extend_from_slice(header);
            out.push(b',');
        }
        out.extend_from_slice(b"\"choices\":[");
        for (i, (index, content)) in texts.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let field: &[u8] = if text {
                b"\"text\":"
            } else {
                b"\"delta\":{\"content\":"
            };
            out.extend_from_slice(format!("{{\"index\":{index},").as_bytes());
            out.extend_from_slice(field);
            out.extend_from_slice(&json::encode(&content));
            out.extend_from_slice(if text { b"" } else { b"}" });
            out.extend_from_slice(b",\"finish_reason\":null,\"logprobs\":null}");
        }
        out.extend_from_slice(b"]}\n\n");
    }

    /// A Messages event: a text delta (or a text block's opening text) redacted; a block's
    /// held text sent before its `content_block_stop` (or before `message_delta` /
    /// `message_stop` if it never stopped).
    fn messages(&mut self, data: &[u8], edits: &mut Edits, out: &mut Vec<u8>) {
        const FIELDS: [&str; 4] = ["type", "index", "delta", "content_block"];
        let Some([kind, index, delta, block]) = json::object(data, 0, FIELDS) else {
            return;
        };
        let index = index.and_then(|i| json::number(data, &i));
        let key = Key::Index(index.unwrap_or(0));
        let (text_kind, part) = match kind.and_then(|t| json::string(data, &t)).as_deref() {
            Some("content_block_delta") => ("text_delta", delta),
            Some("content_block_start") => ("text", block),
            Some("content_block_stop") => return self.add_messages_delta(&key, out),
            Some("message_delta" | "message_stop") => {
                let keys: Vec<Key> = self.blocks.iter().map(|b| b.key.clone()).collect();
                for key in &keys {
                    self.add_messages_delta(key, out);
                }
                return;
            }
            _ => return,
        };
        let fields = part.and_then(|p| json::object(data, p.start, ["type", "text"]));
        let Some([kind, Some(text)]) = fields else {
            return;
        };
        let kind = kind.and_then(|t| json::string(data, &t));
        if kind.is_none_or(|kind| kind == text_kind) {
            self.rewrite_delta(key, data, text, edits);
        }
    }

    /// Ends the block `key`, sending what it held in a `content_block_delta`.
    fn add_messages_delta(&mut self, key: &Key, out: &mut Vec<u8>) {
        let mut sent = Vec::new();
        self.end_block(key, &mut sent);
        if let (Key::Index(index), false) = (key, sent.is_empty()) {
            let delta = json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "text_delta", "text": into_string(sent)}});
            add_event(out, Some("content_block_delta"), &delta);
        }
    }

    /// A Responses event: a text delta redacted; the events that repeat whole texts redacted
    /// whole (parsed: there are a few per answer), a held text sent before its
    /// `response.output_text.done`; `sequence_number` moved past the events added.
    fn responses(&mut self, data: &[u8], edits: &mut Edits, out: &mut Vec<u8>) {
        const FIELDS: [&str; 6] = [
            "type",
            "sequence_number",
            "item_id",
            "output_index",
            "content_index",
            "delta",
        ];
        let Some([kind, sequence, item_id, output, content, delta]) = json::object(data, 0, FIELDS)
        else {
            return;
        };
        let number = |range: Option<Range<usize>>| range.and_then(|n| json::number(data, &n));
        match kind.and_then(|t| json::string(data, &t)).as_deref() {
            Some("response.output_text.delta") => {
                let (Some(output), Some(delta)) = (number(output), delta) else {
                    return;
                };
                let item_id = item_id
                    .and_then(|i| json::string(data, &i))
                    .unwrap_or_default();
                let key = Key::Output(item_id, output, number(content).unwrap_or(0));
                self.rewrite_delta(key, data, delta, edits);
            }
            Some(
                "response.output_text.done"
                | "response.content_part.done"
                | "response.output_item.done"
                | "response.completed"
                | "response.incomplete",
            ) => {
                let Ok(mut value) = serde_json::from_slice::<Value>(data) else {
                    return;
                };
                if self.responses_whole(&mut value, out) {
                    edits.push((0..data.len(), value.to_string().into_bytes()));
                }
                return;
            }
            _ => {}
        }
        if let (Some(range), true) = (sequence, self.added > 0) {
            if let Some(number) = json::number(data, &range) {
                edits.push((range, (number + self.added).to_string().into_bytes()));
            }
        }
        edits.sort_by_key(|(range, _)| range.start);
    }

    /// A Responses event that repeats whole texts, parsed: its texts redacted, its
    /// `sequence_number` moved; whether it changed.
    fn responses_whole(&mut self, event: &mut Value, out: &mut Vec<u8>) -> bool {
        let sequence = event.get("sequence_number").and_then(Value::as_u64);
        let changed = match event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
        {
            "response.output_text.done" => {
                if let Some(key) = output_key(event) {
                    self.add_responses_delta(&key, sequence, out);
                }
                answer::redact_field(&self.redaction, event, "text")
            }
            "response.content_part.done" => event
                .get_mut("part")
                .is_some_and(|part| answer::redact_field(&self.redaction, part, "text")),
            "response.output_item.done" => event
                .get_mut("item")
                .is_some_and(|item| answer::redact_output_item(&self.redaction, item)),
            _ => {
                let keys: Vec<Key> = self.blocks.iter().map(|b| b.key.clone()).collect();
                for key in &keys {
                    self.add_responses_delta(key, sequence, out);
                }
                event
                    .get_mut("response")
                    .is_some_and(|response| answer::redact_responses(&self.redaction, response))
            }
        };
        match (event.get_mut("sequence_number"), sequence) {
            (Some(number), Some(n)) if self.added > 0 => {
                *number = (n + self.added).into();
                true
            }
            _ => changed,
        }
    }

    /// Ends the block `key`, sending what it held in a `response.output_text.delta` numbered
    /// `sequence` (the event it comes before, which moves up by one).
    fn add_responses_delta(&mut self, key: &Key, sequence: Option<u64>, out: &mut Vec<u8>) {
        let mut sent = Vec::new();
        self.end_block(key, &mut sent);
        let Key::Output(item_id, output_index, content_index) = key else {
            return;
        };
        if sent.is_empty() {
            return;
        }
        let mut delta = json!({"type": "response.output_text.delta", "item_id": item_id,
            "output_index": output_index, "content_index": content_index,
            "delta": into_string(sent), "logprobs": []});
        if let Some(sequence) = sequence {
            delta["sequence_number"] = (sequence + self.added).into();
        }
        add_event(out, Some("response.output_text.delta"), &delta);
        self.added += 1;
    }

    /// Replaces the delta string at `range` of `data` with what block `key` sends of it.
    fn rewrite_delta(&mut self, key: Key, data: &[u8], range: Range<usize>, edits: &mut Edits) {
        if let Some(delta) = json::string(data, &range) {
            let mut sent = Vec::new();
            self.push_text(key, &delta, &mut sent);
            edits.push((range, json::encode(&into_string(sent))));
        }
    }

    /// Adds `delta` to the block `key` (opened if new), appending what it sends to `out`.
    fn push_text(&mut self, key: Key, delta: &str, out: &mut Vec<u8>) {
        let at = match self.blocks.iter().position(|b| b.key == key) {
            Some(at) => at,
            None => {
                self.blocks.push(Block {
                    key,
                    text: HeldText::default(),
                });
                self.blocks.len() - 1
            }
        };
        self.blocks[at].text.push(&self.redaction, delta, out);
    }

    /// Closes the block `key`, appending what it held to `out`.
    fn end_block(&mut self, key: &Key, out: &mut Vec<u8>) {
        if let Some(at) = self.blocks.iter().position(|b| b.key == *key) {
            let mut block = self.blocks.swap_remove(at);
            block.text.flush(&self.redaction, out);
        }
    }
}

/// A chunk's members but `choices` and `usage`, raw and comma-separated.
fn chat_header(data: &[u8]) -> Option<Vec<u8>> {
    let mut header = Vec::new();
    json::members(data, 0, |key, value| {
        if !matches!(&data[key.clone()], b"\"choices\"" | b"\"usage\"") {
            if !header.is_empty() {
                header.push(b',');
            }
            header.extend_from_slice(&data[key]);
            header.push(b':');
            header.extend_from_slice(&data[value]);
        }
    })?;
    Some(header)
}

/// A parsed Responses text event's block.
fn output_key(event: &Value) -> Option<Key> {
    let number = |name| event.get(name).and_then(Value::as_u64);
    let item_id = event
        .get("item_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Some(Key::Output(
        item_id.to_owned(),
        number("output_index")?,
        number("content_index").unwrap_or(0),
    ))
}

/// Appends an event the redactor adds.
fn add_event(out: &mut Vec<u8>, name: Option<&str>, data: &Value) {
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}
