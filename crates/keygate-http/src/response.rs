//! The body of an upstream response: hyper's incoming body, with the HTTP/2 stream it holds.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;

use crate::body::BoxError;
use crate::streams::StreamSlot;

/// A streamed upstream response body. On an HTTP/2 connection it holds one of the connection's
/// stream slots until it ends or is dropped, so the pool knows how many streams are open.
pub struct ResponseBody {
    inner: Incoming,
    _slot: Option<StreamSlot>,
}

impl ResponseBody {
    pub(crate) fn new(inner: Incoming, slot: Option<StreamSlot>) -> Self {
        Self { inner, _slot: slot }
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map_err(BoxError::from)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a body read error is the peer closing the connection before the body's end (hyper
/// reports it as its own "incomplete message" error, not as an I/O error).
pub fn is_incomplete_message(err: &(dyn std::error::Error + 'static)) -> bool {
    err.downcast_ref::<hyper::Error>()
        .is_some_and(hyper::Error::is_incomplete_message)
}
