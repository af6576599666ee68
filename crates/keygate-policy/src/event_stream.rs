//! `on_event_stream_message`: the phase's rules run once per Server-Sent Event of a streamed
//! response, as the events pass through.
//!
//! The stream is cut at blank lines and every event is handed to the rules as an
//! [`EventMessage`]; bytes outside events (and events that are not UTF-8) pass through untouched.
//! At most [`MAX_EVENT`] bytes of one unfinished event are held: a longer event passes through
//! unprocessed, so memory stays bounded whatever the upstream sends.
//!
//! Actions allowed in this phase finish without waiting (they are `ready` futures), so each
//! event is processed synchronously inside `poll_frame`: no task, no channel, no boxed future
//! per event.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http_body::{Frame, SizeHint};
use memchr::memchr;

use crate::body::{Body, BoxError};
use crate::engine::{run_phase, Outcome};
use crate::exchange::Exchange;
use crate::observe::NoObserver;
use crate::policy::Rule;

/// Longest event held while waiting for its end; a longer one passes through unprocessed.
pub const MAX_EVENT: usize = 1 << 20;

/// One Server-Sent Event as the `on_event_stream_message` rules see it: its lines, without the
/// blank line that ended it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMessage {
    text: String,
}

impl EventMessage {
    /// An event from its text (`field: value` lines).
    pub fn new(text: impl Into<String>) -> Self {
        Self { text: text.into() }
    }

    /// The event's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The value of `name`: the values of its lines joined by `\n` (a `data` field may span
    /// several lines), or `None` when the event has no such line.
    pub fn field(&self, name: &str) -> Option<String> {
        let mut value: Option<String> = None;
        for line in self.text.split('\n') {
            if let Some(part) = field_value(line.strip_suffix('\r').unwrap_or(line), name) {
                match &mut value {
                    Some(value) => {
                        value.push('\n');
                        value.push_str(part);
                    }
                    None => value = Some(part.to_owned()),
                }
            }
        }
        value
    }

    /// Replaces the lines of `name` with `value`, one line per `\n` in it, where the first of
    /// them stood; other lines are kept. Lines are separated as the event's were (`\r\n` when it
    /// used it), and the text ends as it did.
    pub fn set_field(&mut self, name: &str, value: &str) {
        let newline = if self.text.contains("\r\n") {
            "\r\n"
        } else {
            "\n"
        };
        let final_ending =
            (self.text.split_inclusive('\n').next_back()).map_or("", |last| split_ending(last).1);
        let mut out = String::with_capacity(self.text.len() + value.len());
        let mut lines = 0;
        let mut start_line = |out: &mut String| {
            if lines > 0 {
                out.push_str(newline);
            }
            lines += 1;
        };
        let mut written = false;
        for line in self.text.split_inclusive('\n') {
            let content = split_ending(line).0;
            if field_value(content, name).is_none() {
                start_line(&mut out);
                out.push_str(content);
            } else if !written {
                written = true;
                for part in value.split('\n') {
                    start_line(&mut out);
                    out.push_str(name);
                    out.push_str(": ");
                    out.push_str(part);
                }
            }
        }
        out.push_str(final_ending);
        self.text = out;
    }
}

/// `line`'s value when it is a `name` field (`name: value`, `name:value` or a bare `name`).
fn field_value<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(name)?;
    if rest.is_empty() {
        return Some("");
    }
    let value = rest.strip_prefix(':')?;
    Some(value.strip_prefix(' ').unwrap_or(value))
}

fn split_ending(line: &str) -> (&str, &str) {
    if let Some(content) = line.strip_suffix("\r\n") {
        (content, "\r\n")
    } else if let Some(content) = line.strip_suffix('\n') {
        (content, "\n")
    } else {
        (line, "")
    }
}

/// Where the event starting at `buf[0]` ends: the index of the newline ending its last line
/// and the index after the blank line that follows. Looks for the blank line from `from` on.
fn event_end(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut at = from;
    while let Some(i) = memchr(b'\n', &buf[at..]) {
        let newline = at + i;
        match (buf.get(newline + 1), buf.get(newline + 2)) {
            (Some(b'\n'), _) => return Some((newline, newline + 2)),
            (Some(b'\r'), Some(b'\n')) => return Some((newline, newline + 3)),
            _ => at = newline + 1,
        }
    }
    None
}

/// Wraps `body` so that `rules` run on each of its events. `ex` is the exchange the rules see:
/// the request and response heads, the connection, the secrets.
pub(crate) fn wrap(rules: Arc<[Rule]>, mut ex: Exchange, body: Body) -> Body {
    ex.phase = crate::action::Phase::OnEventStreamMessage;
    Body::new(EventStreamBody {
        inner: body,
        rules,
        ex,
        pending: BytesMut::new(),
        scanned: 0,
        oversized: false,
        done: false,
    })
}

struct EventStreamBody {
    inner: Body,
    rules: Arc<[Rule]>,
    ex: Exchange,
    /// Bytes of the unfinished event.
    pending: BytesMut,
    /// How far `pending` has been searched for the event's end (the last byte may start one).
    scanned: usize,
    /// The unfinished event outgrew [`MAX_EVENT`]: bytes pass through until its end.
    oversized: bool,
    done: bool,
}

/// The rules refused an event (an expression failed): the stream ends rather than let an
/// unprocessed event through.
#[derive(Debug, thiserror::Error)]
#[error("on_event_stream_message failed on an event; the stream was cut")]
struct EventRefused;

impl EventStreamBody {
    /// Moves every complete event of `pending` to `out`, run through the rules.
    fn drain_events(&mut self, out: &mut BytesMut) -> Result<(), EventRefused> {
        while let Some((end, next)) = event_end(&self.pending, self.scanned) {
            let event = self.pending.split_to(next);
            self.scanned = 0;
            if std::mem::take(&mut self.oversized) {
                out.extend_from_slice(&event);
                continue;
            }
            self.process(&event[..end], out)?;
            out.extend_from_slice(&event[end..]);
        }
        self.scanned = self.pending.len().saturating_sub(2);
        if self.pending.len() > MAX_EVENT {
            self.oversized = true;
        }
        if self.oversized {
            // Keep the last two bytes: they may begin the blank line that ends the event.
            let keep = self.pending.len().min(2);
            out.extend_from_slice(&self.pending.split_to(self.pending.len() - keep));
            self.scanned = 0;
        }
        Ok(())
    }

    /// Runs the rules on one event's text and writes what comes out.
    fn process(&mut self, raw: &[u8], out: &mut BytesMut) -> Result<(), EventRefused> {
        let Ok(text) = std::str::from_utf8(raw) else {
            out.extend_from_slice(raw);
            return Ok(());
        };
        self.ex.event = Some(EventMessage::new(text));
        let outcome = run_phase(&self.rules, &mut self.ex, &mut NoObserver).now_or_never();
        let event = self.ex.event.take();
        match (outcome, event) {
            (Some(Outcome::Continue), Some(event)) => {
                out.extend_from_slice(event.text.as_bytes());
                Ok(())
            }
            _ => Err(EventRefused),
        }
    }
}

impl http_body::Body for EventStreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err))),
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(None) => {
                    this.done = true;
                    if this.pending.is_empty() {
                        return Poll::Ready(None);
                    }
                    // An unfinished last event is passed on as it came.
                    let rest = this.pending.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(rest))));
                }
            };
            let data = match frame.into_data() {
                Ok(data) => data,
                Err(frame) => return Poll::Ready(Some(Ok(frame))),
            };
            this.pending.extend_from_slice(&data);
            let mut out = BytesMut::new();
            if let Err(err) = this.drain_events(&mut out) {
                this.done = true;
                return Poll::Ready(Some(Err(err.into())));
            }
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_and_rewrite_keeping_other_lines() {
        let mut event = EventMessage::new("event: delta\r\ndata: one\r\ndata: two\r\nid: 7");
        assert_eq!(event.field("data").as_deref(), Some("one\ntwo"));
        assert_eq!(event.field("event").as_deref(), Some("delta"));
        assert_eq!(event.field("retry"), None);
        event.set_field("data", "uno");
        assert_eq!(event.text(), "event: delta\r\ndata: uno\r\nid: 7");
        event.set_field("data", "a\nb\nc");
        assert_eq!(
            event.text(),
            "event: delta\r\ndata: a\r\ndata: b\r\ndata: c\r\nid: 7"
        );
    }

    #[test]
    fn a_field_on_the_last_line_keeps_the_event_unterminated() {
        let mut event = EventMessage::new("data:x");
        assert_eq!(event.field("data").as_deref(), Some("x"));
        event.set_field("data", "y\nz");
        assert_eq!(event.text(), "data: y\ndata: z");
        // `database: 1` is not a `data` field.
        assert_eq!(EventMessage::new("database: 1").field("data"), None);
    }

    #[test]
    fn a_field_over_several_lines_becomes_one_where_it_stood() {
        let mut event = EventMessage::new("data: a\nid: 2\ndata: b");
        event.set_field("data", "c");
        assert_eq!(event.text(), "data: c\nid: 2");
    }

    /// An exchange for the rules of these tests (none: every event passes as it is).
    fn events_body(inner: Body) -> EventStreamBody {
        let (head, ()) = http::Request::new(()).into_parts();
        EventStreamBody {
            inner,
            rules: Arc::new([]),
            ex: Exchange::for_test(
                head,
                Bytes::new(),
                0,
                Arc::new(keygate_cel::MemorySecrets::default()),
            ),
            pending: BytesMut::new(),
            scanned: 0,
            oversized: false,
            done: false,
        }
    }

    #[test]
    fn an_oversized_event_passes_through_with_bounded_memory() {
        let mut body = events_body(crate::body::empty());
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = b"data: ".to_vec();
        let mut out = BytesMut::new();
        body.pending.extend_from_slice(b"data: ");
        for _ in 0..40 {
            body.pending.extend_from_slice(&chunk);
            sent.extend_from_slice(&chunk);
            body.drain_events(&mut out).unwrap();
            assert!(body.pending.len() <= MAX_EVENT + chunk.len());
        }
        assert!(body.oversized);
        for tail in [&b"\n"[..], b"\n", b"data: next\n\n"] {
            body.pending.extend_from_slice(tail);
            sent.extend_from_slice(tail);
            body.drain_events(&mut out).unwrap();
        }
        assert!(!body.oversized);
        assert!(body.pending.is_empty());
        assert_eq!(out.len(), sent.len());
        assert!(
            out[..] == sent[..],
            "the event passes through byte for byte"
        );
    }

    #[test]
    fn event_ends_are_found_across_line_ending_styles() {
        assert_eq!(event_end(b"data: a\n\ndata: b", 0), Some((7, 9)));
        assert_eq!(event_end(b"data: a\r\n\r\n", 0), Some((8, 11)));
        assert_eq!(event_end(b"data: a\n", 0), None);
        assert_eq!(event_end(b"data: a\n\r", 0), None);
        assert_eq!(event_end(b": comment\ndata: a\n\n", 0), Some((17, 19)));
    }
}
