//! A provider's streamed answer in another format, re-encoded event by event for the client
//! ([`keygate_ai::translate::StreamTranslator`]) as it arrives: nothing is buffered beyond an
//! unfinished event. Whole JSON answers are translated in the call loop instead
//! (`call::read_translated`), where a body that cannot be read can still fail over.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use keygate_ai::translate::StreamTranslator;
use keygate_http::{Body, BoxError};

use crate::usage::Usage;

/// An SSE body translated from the provider's format to the client's.
pub struct TranslatedStream {
    inner: Body,
    translator: StreamTranslator,
    /// Marked estimated when the translation had to make the usage up.
    usage: Arc<Usage>,
    ended: bool,
}

impl TranslatedStream {
    pub fn new(inner: Body, translator: StreamTranslator, usage: Arc<Usage>) -> Self {
        Self {
            inner,
            translator,
            usage,
            ended: false,
        }
    }

    /// A frame for the client, if `out` has data; notes estimated usage as soon as it was made.
    fn output(&self, out: Bytes) -> Option<Frame<Bytes>> {
        if self.translator.estimated() {
            self.usage.estimated.store(true, Ordering::Relaxed);
        }
        (!out.is_empty()).then(|| Frame::data(out))
    }
}

impl HttpBody for TranslatedStream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        // Upstream events that translate to nothing (pings, a block's start) are read past
        // until one yields output, so every frame the client gets has data.
        while !this.ended {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    let out = this.translator.push(&data);
                    if let Some(frame) = this.output(out) {
                        return Poll::Ready(Some(Ok(frame)));
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    this.ended = true;
                    let out = this.translator.finish();
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
