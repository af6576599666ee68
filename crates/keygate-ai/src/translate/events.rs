//! Splits an SSE byte stream into events (`event:` name and joined `data:` lines), for the
//! stream translator. Comments, `id:` and `retry:` lines are skipped: a translated stream is a
//! new stream.
//!
//! Events are handed out borrowed from buffers the splitter keeps and reuses, so splitting
//! allocates nothing once the buffers have grown to the stream's event size.

use std::borrow::Cow;

use memchr::memchr;

/// Longest unfinished event held; a longer one is dropped (no provider sends one).
const MAX_EVENT: usize = 8 << 20;

/// Incremental event splitter.
#[derive(Debug, Default)]
pub struct EventSplitter {
    /// The current unfinished line.
    line: Vec<u8>,
    /// The event being built: its name (when `has_name`) and data (when `has_data`).
    name: String,
    data: String,
    has_name: bool,
    has_data: bool,
}

impl EventSplitter {
    /// Feeds `chunk`, calling `emit(name, data)` for every event it completes.
    pub fn feed(&mut self, mut chunk: &[u8], emit: &mut impl FnMut(Option<&str>, &str)) {
        while let Some(nl) = memchr(b'\n', chunk) {
            let (head, rest) = chunk.split_at(nl);
            if self.line.is_empty() {
                self.line_done(head, emit);
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(head);
                self.line_done(&line, emit);
                line.clear();
                self.line = line;
            }
            chunk = &rest[1..];
        }
        self.line.extend_from_slice(chunk);
        if self.line.len() > MAX_EVENT {
            self.line.clear();
        }
    }

    /// The stream ended: completes an event that lacked its blank line.
    pub fn end(&mut self, emit: &mut impl FnMut(Option<&str>, &str)) {
        let line = std::mem::take(&mut self.line);
        if !line.is_empty() {
            self.line_done(&line, emit);
        }
        self.line_done(b"", emit);
    }

    fn line_done(&mut self, line: &[u8], emit: &mut impl FnMut(Option<&str>, &str)) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.has_data || self.has_name {
                emit(self.has_name.then_some(&*self.name), &self.data);
                self.name.clear();
                self.data.clear();
                self.has_name = false;
                self.has_data = false;
            }
            return;
        }
        let (field, value) = match memchr(b':', line) {
            Some(0) => return,
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        // `from_utf8` checks valid text faster than `from_utf8_lossy`, which repairs it.
        let value = match std::str::from_utf8(value) {
            Ok(value) => Cow::Borrowed(value),
            Err(_) => String::from_utf8_lossy(value),
        };
        match field {
            b"event" => {
                self.name.clear();
                self.name.push_str(&value);
                self.has_name = true;
            }
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            _ => {}
        }
    }
}

/// An event with owned fields, and the splitter's calls that hand them out, for tests.
#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&str]) -> Vec<(Option<String>, String)> {
        let mut splitter = EventSplitter::default();
        let mut out = Vec::new();
        let mut emit =
            |name: Option<&str>, data: &str| out.push((name.map(str::to_owned), data.to_owned()));
        for chunk in chunks {
            splitter.feed(chunk.as_bytes(), &mut emit);
        }
        splitter.end(&mut emit);
        out
    }

    #[test]
    fn events_across_chunks_with_crlf_comments_and_multiline_data() {
        let events = split(&[
            ": keep-alive\n\nevent: message_start\r\ndata: {\"a\"",
            ":1}\r\n\r\ndata: one\ndata:two\n\n",
            "data: [DONE]",
        ]);
        assert_eq!(
            events,
            vec![
                (Some("message_start".into()), "{\"a\":1}".into()),
                (None, "one\ntwo".into()),
                (None, "[DONE]".into()),
            ]
        );
    }
}
