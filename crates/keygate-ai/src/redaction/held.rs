//! One streamed block's text: deltas in, redacted text out, the tail that may still be part of
//! a match held back.

use super::{next_boundary, starts_char, Redaction};

/// The state of one choice or content block.
///
/// `buf[..start]` is the last character already sent, kept so that `\b` and other assertions
/// see the text before the held part; `buf[start..]` is the held text, never more than the
/// redaction's hold-back once [`Self::push`] returns, and always whole characters.
#[derive(Debug, Default)]
pub struct HeldText {
    buf: Vec<u8>,
    start: usize,
}

impl HeldText {
    /// Bytes held back.
    pub fn held(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Adds a delta; appends to `out` the text that can no longer be part of a match, with
    /// the matches found in it replaced.
    pub fn push(&mut self, redaction: &Redaction, delta: &str, out: &mut Vec<u8>) {
        if delta.is_empty() {
            return;
        }
        self.buf.extend_from_slice(delta.as_bytes());
        let keep = self.buf.len().saturating_sub(redaction.hold_back);
        let cut = char_start_at_or_after(&self.buf, keep.max(self.start));
        self.send(redaction, cut, out);
    }

    /// The block ended: appends everything held, redacted, and starts over.
    pub fn flush(&mut self, redaction: &Redaction, out: &mut Vec<u8>) {
        self.send(redaction, self.buf.len(), out);
        self.buf.clear();
        self.start = 0;
    }

    /// Sends the text before `cut` (and any match starting there), keeping the rest and one
    /// character of context.
    fn send(&mut self, redaction: &Redaction, cut: usize, out: &mut Vec<u8>) {
        let (sent, _) = redaction.rewrite(&self.buf, self.start, cut, out);
        let context = char_start_before(&self.buf, sent);
        self.buf.drain(..context);
        self.start = sent - context;
    }
}

/// The first character start at `at` or after (the end of `text` at most).
fn char_start_at_or_after(text: &[u8], at: usize) -> usize {
    match text.get(at) {
        Some(&byte) if !starts_char(byte) => next_boundary(text, at).unwrap_or(text.len()),
        _ => at.min(text.len()),
    }
}

/// The start of the character that ends at `end` (0 when `end` is 0).
fn char_start_before(text: &[u8], end: usize) -> usize {
    let mut at = end.saturating_sub(1);
    while at > 0 && !starts_char(text[at]) {
        at -= 1;
    }
    at
}
