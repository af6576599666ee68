//! Whole JSON answers: the text a streamed answer would carry in deltas, redacted in place —
//! Chat Completions `choices[].message.content`, Completions `choices[].text`, Messages `text`
//! blocks, Responses `output_text` parts of `message` items.

use serde_json::Value;

use super::Redaction;
use crate::Surface;

impl Redaction {
    /// The JSON answer `body` on `surface` with its text redacted; `None` when nothing changed
    /// (nothing matched, or not a JSON answer of that surface).
    pub fn answer(&self, surface: Surface, body: &[u8]) -> Option<Vec<u8>> {
        let mut value: Value = serde_json::from_slice(body).ok()?;
        let changed = match surface {
            Surface::ChatCompletions => self.choices(&mut value, "/message/content"),
            Surface::Completions => self.choices(&mut value, "/text"),
            Surface::Messages => self.blocks(&mut value, "content", "text"),
            Surface::Responses => redact_responses(self, &mut value),
            _ => false,
        };
        changed.then(|| value.to_string().into_bytes())
    }

    /// Redacts the string at `pointer` in every `choices[]` entry.
    fn choices(&self, answer: &mut Value, pointer: &str) -> bool {
        let mut changed = false;
        for choice in array_mut(answer, "choices") {
            if let Some(Value::String(text)) = choice.pointer_mut(pointer) {
                changed |= self.replace(text);
            }
        }
        changed
    }

    /// Redacts the `text` of the entries of `field` whose `type` is `kind`.
    fn blocks(&self, parent: &mut Value, field: &str, kind: &str) -> bool {
        let mut changed = false;
        for block in array_mut(parent, field) {
            if block.get("type").and_then(Value::as_str) == Some(kind) {
                changed |= redact_field(self, block, "text");
            }
        }
        changed
    }

    /// Redacts `text` in place; whether it changed.
    fn replace(&self, text: &mut String) -> bool {
        match self.text(text) {
            std::borrow::Cow::Owned(redacted) => {
                *text = redacted;
                true
            }
            std::borrow::Cow::Borrowed(_) => false,
        }
    }
}

/// Redacts the string `object[field]`, if it is one.
pub(super) fn redact_field(redaction: &Redaction, object: &mut Value, field: &str) -> bool {
    match object.get_mut(field) {
        Some(Value::String(text)) => redaction.replace(text),
        _ => false,
    }
}

/// Redacts a Responses output item: the `output_text` parts of a `message`.
pub(super) fn redact_output_item(redaction: &Redaction, item: &mut Value) -> bool {
    item.get("type").and_then(Value::as_str) == Some("message")
        && redaction.blocks(item, "content", "output_text")
}

/// Redacts a Responses `response` object's `output`.
pub(super) fn redact_responses(redaction: &Redaction, response: &mut Value) -> bool {
    let mut changed = false;
    for item in array_mut(response, "output") {
        changed |= redact_output_item(redaction, item);
    }
    changed
}

/// The entries of the array `parent[field]` (none when it is not one).
fn array_mut<'v>(parent: &'v mut Value, field: &str) -> impl Iterator<Item = &'v mut Value> {
    parent
        .get_mut(field)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}
