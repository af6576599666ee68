//! Find-and-replace on the text an LLM answers (PII redaction), alike for whole answers and for
//! streams whose text comes in deltas: a match split over several events is found all the same.
//!
//! A stream's text is read per choice / content block as one logical text ([`HeldText`]): what
//! can no longer be part of a match is sent, the last `hold_back` bytes wait for the next delta
//! (or the block's end). A match up to `hold_back` bytes long is therefore always found whole; a
//! longer one may be found in parts. Memory stays bounded by `hold_back` per open block, and the
//! text reaches the client at most `hold_back` bytes later than it would have.
//!
//! The rules run together over the text: at each point the earliest match wins (the first rule
//! listed on a tie), and replaced text is never matched again. `to` expands `$1`, `$name`,
//! `${name}` and `$$` from the match's groups. Empty matches are ignored.
//!
//! [`StreamRedactor`] rewrites the events of a Chat Completions, Completions, Messages or
//! Responses stream; [`Redaction::answer`] a whole JSON answer.

mod answer;
mod held;
mod json;
mod stream;

use std::borrow::Cow;

use regex::bytes::{Match, Regex};

pub use held::HeldText;
pub use stream::StreamRedactor;

/// The hold-back when none is configured: longer than any e-mail address (254 bytes at most).
pub const DEFAULT_HOLD_BACK: usize = 256;
/// The largest hold-back accepted: a longer one delays text by too much to stream.
pub const MAX_HOLD_BACK: usize = 64 * 1024;

/// One rule: a pattern and what replaces its matches.
#[derive(Debug)]
pub struct Rule {
    pattern: Regex,
    to: Vec<u8>,
    /// Whether `to` refers to the match's groups (then they are captured).
    expands: bool,
}

impl Rule {
    /// A rule replacing the matches of `pattern` with `to`.
    pub fn new(pattern: Regex, to: &str) -> Self {
        Self {
            pattern,
            expands: to.contains('$'),
            to: to.as_bytes().to_vec(),
        }
    }

    /// The first non-empty match in `text` starting at `from` or later.
    fn find<'t>(&self, text: &'t [u8], mut from: usize) -> Option<Match<'t>> {
        loop {
            let found = self.pattern.find_at(text, from)?;
            if !found.is_empty() {
                return Some(found);
            }
            from = next_boundary(text, found.start())?;
        }
    }

    /// Appends the replacement of `found` (a match of this rule in `text`) to `out`.
    fn replace(&self, text: &[u8], found: &Match<'_>, out: &mut Vec<u8>) {
        if !self.expands {
            out.extend_from_slice(&self.to);
            return;
        }
        match self.pattern.captures_at(text, found.start()) {
            Some(groups) => groups.expand(&self.to, out),
            None => out.extend_from_slice(&self.to),
        }
    }
}

/// The compiled redaction of an answer's text: its rules and hold-back.
#[derive(Debug)]
pub struct Redaction {
    rules: Vec<Rule>,
    hold_back: usize,
}

impl Redaction {
    /// `rules` with `hold_back` bytes held per streamed block (clamped to 1..=[`MAX_HOLD_BACK`]).
    pub fn new(rules: Vec<Rule>, hold_back: usize) -> Self {
        Self {
            rules,
            hold_back: hold_back.clamp(1, MAX_HOLD_BACK),
        }
    }

    /// The bytes a streamed block holds back at most.
    pub fn hold_back(&self) -> usize {
        self.hold_back
    }

    /// A whole text redacted (borrowed when nothing matched).
    pub fn text<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out = Vec::new();
        let bytes = text.as_bytes();
        let (_, replaced) = self.rewrite(bytes, 0, bytes.len(), &mut out);
        if replaced == 0 {
            return Cow::Borrowed(text);
        }
        Cow::Owned(into_string(out))
    }

    /// Rewrites `text[from..]`: appends to `out` the text before `cut` with the matches that
    /// start there replaced (a match may end past `cut`). Returns where the sent text ends (at
    /// `cut` or past it) and the number of matches replaced.
    fn rewrite(&self, text: &[u8], from: usize, cut: usize, out: &mut Vec<u8>) -> (usize, usize) {
        let mut pos = from;
        let mut replaced = 0;
        while let Some((rule, found)) = self.earliest(text, pos).filter(|(_, m)| m.start() < cut) {
            out.extend_from_slice(&text[pos..found.start()]);
            rule.replace(text, &found, out);
            pos = found.end();
            replaced += 1;
        }
        let end = pos.max(cut);
        out.extend_from_slice(&text[pos..end]);
        (end, replaced)
    }

    /// The earliest match of any rule at `from` or later (the first rule's on a tie).
    fn earliest<'t>(&self, text: &'t [u8], from: usize) -> Option<(&Rule, Match<'t>)> {
        let mut best: Option<(&Rule, Match<'t>)> = None;
        for rule in &self.rules {
            let Some(found) = rule.find(text, from) else {
                continue;
            };
            if best.as_ref().is_none_or(|(_, b)| found.start() < b.start()) {
                best = Some((rule, found));
            }
        }
        best
    }
}

/// Text for a JSON string: the rules' output is UTF-8 unless a `(?-u)` pattern cut a character.
fn into_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Whether `byte` starts a character (is not a UTF-8 continuation byte).
fn starts_char(byte: u8) -> bool {
    (byte as i8) >= -0x40
}

/// The start of the character after the one at `at`, `None` at the end.
fn next_boundary(text: &[u8], at: usize) -> Option<usize> {
    if at >= text.len() {
        return None;
    }
    let len = text[at + 1..]
        .iter()
        .take_while(|&&b| !starts_char(b))
        .count();
    Some(at + 1 + len)
}

#[cfg(test)]
mod tests;
