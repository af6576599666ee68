//! A provider's streamed answer rewritten for the client as it arrives: re-encoded event by
//! event in the client's format ([`StreamTranslator`]), its text redacted ([`StreamRedactor`]).
//! Nothing is buffered beyond what the rewriter holds (an unfinished event, a redaction's
//! hold-back). Whole JSON answers are rewritten in the call loop instead
//! (`call::read_whole`), where a body that cannot be read can still fail over.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use keygate_ai::translate::StreamTranslator;
use keygate_ai::StreamRedactor;
use keygate_http::{Body, BoxError};

use crate::usage::Usage;

/// Rewrites an SSE stream chunk by chunk.
pub trait Rewrite: Send + Sync + Unpin + 'static {
    /// Feeds a chunk; returns the bytes to send now.
    fn push(&mut self, chunk: &[u8]) -> Bytes;
    /// The stream ended: returns what is left to send.
    fn finish(&mut self) -> Bytes;
    /// Whether the rewriting made up usage the client reads.
    fn estimated(&self) -> bool {
        false
    }
}

impl Rewrite for StreamTranslator {
    fn push(&mut self, chunk: &[u8]) -> Bytes {
        StreamTranslator::push(self, chunk)
    }

    fn finish(&mut self) -> Bytes {
        StreamTranslator::finish(self)
    }

    fn estimated(&self) -> bool {
        StreamTranslator::estimated(self)
    }
}

impl Rewrite for StreamRedactor {
    fn push(&mut self, chunk: &[u8]) -> Bytes {
        StreamRedactor::push(self, chunk)
    }

    fn finish(&mut self) -> Bytes {
        StreamRedactor::finish(self)
    }
}

/// An SSE body rewritten by `R`.
pub struct RewrittenStream<R> {
    inner: Body,
    rewrite: R,
    /// Marked estimated when the rewriting had to make the usage up.
    usage: Arc<Usage>,
    ended: bool,
}

impl<R: Rewrite> RewrittenStream<R> {
    pub fn new(inner: Body, rewrite: R, usage: Arc<Usage>) -> Self {
        Self {
            inner,
            rewrite,
            usage,
            ended: false,
        }
    }

    /// A frame for the client, if `out` has data; notes estimated usage as soon as it was made.
    fn output(&self, out: Bytes) -> Option<Frame<Bytes>> {
        if self.rewrite.estimated() {
            self.usage.estimated.store(true, Ordering::Relaxed);
        }
        (!out.is_empty()).then(|| Frame::data(out))
    }
}

impl<R: Rewrite> HttpBody for RewrittenStream<R> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        // Upstream chunks that rewrite to nothing (a translation's pings and block starts, an
        // unfinished event) are read past until one yields output, so every frame the client
        // gets has data.
        while !this.ended {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    let out = this.rewrite.push(&data);
                    if let Some(frame) = this.output(out) {
                        return Poll::Ready(Some(Ok(frame)));
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    this.ended = true;
                    let out = this.rewrite.finish();
                    if let Some(frame) = this.output(out) {
                        return Poll::Ready(Some(Ok(frame)));
                    }
                }
            }
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
