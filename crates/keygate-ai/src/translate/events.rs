//! Splits an SSE byte stream into events (`event:` name and joined `data:` lines), for the
//! stream translator. Comments, `id:` and `retry:` lines are skipped: a translated stream is a
//! new stream.

use memchr::memchr;

/// Longest unfinished event held; a longer one is dropped (no provider sends one).
const MAX_EVENT: usize = 8 << 20;

/// One parsed event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub name: Option<String>,
    pub data: String,
}

/// Incremental event splitter.
#[derive(Debug, Default)]
pub struct EventSplitter {
    /// The current unfinished line.
    line: Vec<u8>,
    /// The event being built.
    event: Event,
    has_data: bool,
}

impl EventSplitter {
    /// Feeds `chunk`, calling `emit` for every event it completes.
    pub fn push(&mut self, mut chunk: &[u8], emit: &mut impl FnMut(Event)) {
        while let Some(nl) = memchr(b'\n', chunk) {
            let (head, rest) = chunk.split_at(nl);
            if self.line.is_empty() {
                self.line_done(head, emit);
            } else {
                self.line.extend_from_slice(head);
                let line = std::mem::take(&mut self.line);
                self.line_done(&line, emit);
            }
            chunk = &rest[1..];
        }
        self.line.extend_from_slice(chunk);
        if self.line.len() > MAX_EVENT {
            self.line.clear();
        }
    }

    /// The stream ended: completes an event that lacked its blank line.
    pub fn finish(&mut self, emit: &mut impl FnMut(Event)) {
        let line = std::mem::take(&mut self.line);
        if !line.is_empty() {
            self.line_done(&line, emit);
        }
        self.line_done(b"", emit);
    }

    fn line_done(&mut self, line: &[u8], emit: &mut impl FnMut(Event)) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.has_data || self.event.name.is_some() {
                self.has_data = false;
                emit(std::mem::take(&mut self.event));
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
        let value = String::from_utf8_lossy(value);
        match field {
            b"event" => self.event.name = Some(value.into_owned()),
            b"data" => {
                if self.has_data {
                    self.event.data.push('\n');
                }
                self.event.data.push_str(&value);
                self.has_data = true;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&str]) -> Vec<(Option<String>, String)> {
        let mut splitter = EventSplitter::default();
        let mut out = Vec::new();
        let mut emit = |e: Event| out.push((e.name, e.data));
        for chunk in chunks {
            splitter.push(chunk.as_bytes(), &mut emit);
        }
        splitter.finish(&mut emit);
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
