//! A body that compresses another as it streams: never buffers the whole body, and flushes
//! whenever the inner body has nothing ready, so a slow stream (an event stream) is not held back.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::negotiate::Algorithm;
use crate::body::{Body, BoxError};

/// Compressed output is handed on once this much has piled up, even while input keeps coming.
const EMIT_AT: usize = 16 * 1024;
/// gzip/deflate level: zlib's default, a good ratio at moderate CPU.
const DEFLATE_LEVEL: u32 = 6;
/// Brotli quality: 4 compresses about as fast as gzip 6 and smaller (11, the default, is for
/// static assets, far too slow per request).
const BROTLI_QUALITY: u32 = 4;
/// Brotli window (2^19 = 512 KiB): bounds memory per response.
const BROTLI_WINDOW_LOG: u32 = 19;
/// zstd level 3 (its default).
const ZSTD_LEVEL: i32 = 3;
/// zstd window (2^19 = 512 KiB): bounds memory per response, like brotli's.
const ZSTD_WINDOW_LOG: u32 = 19;

/// One streaming compressor, writing into a `Vec` that is drained as output is handed on.
pub enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Deflate(flate2::write::ZlibEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    /// A compressor for `algorithm`; only zstd's context setup can fail.
    pub fn new(algorithm: Algorithm) -> std::io::Result<Self> {
        let level = flate2::Compression::new(DEFLATE_LEVEL);
        Ok(match algorithm {
            Algorithm::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(Vec::new(), level)),
            // HTTP's `deflate` is the zlib format (RFC 9110 8.4.1.2), not raw deflate.
            Algorithm::Deflate => {
                Encoder::Deflate(flate2::write::ZlibEncoder::new(Vec::new(), level))
            }
            Algorithm::Br => Encoder::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                BROTLI_QUALITY,
                BROTLI_WINDOW_LOG,
            ))),
            Algorithm::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)?;
                encoder.window_log(ZSTD_WINDOW_LOG)?;
                Encoder::Zstd(encoder)
            }
        })
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Encoder::Gzip(w) => w,
            Encoder::Deflate(w) => w,
            Encoder::Br(w) => w.as_mut(),
            Encoder::Zstd(w) => w,
        }
    }

    /// The compressed bytes produced and not yet handed on.
    fn output(&mut self) -> &mut Vec<u8> {
        match self {
            Encoder::Gzip(w) => w.get_mut(),
            Encoder::Deflate(w) => w.get_mut(),
            Encoder::Br(w) => w.get_mut(),
            Encoder::Zstd(w) => w.get_mut(),
        }
    }

    /// Ends the stream: the output not yet handed on, then the stream's last bytes.
    fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(w) => w.finish(),
            Encoder::Deflate(w) => w.finish(),
            // The brotli writer ends its stream when it is unwrapped.
            Encoder::Br(w) => Ok(w.into_inner()),
            Encoder::Zstd(w) => w.finish(),
        }
    }
}

/// `inner`, compressed with one algorithm.
pub struct CompressedBody {
    inner: Body,
    /// `None` once the stream has been finished.
    encoder: Option<Encoder>,
    /// Input written since the last flush (so an idle inner body triggers one flush only).
    unflushed: bool,
    /// Trailers that arrived before the final compressed bytes went out.
    trailers: Option<HeaderMap>,
}

impl CompressedBody {
    /// `inner`, compressed by `encoder`.
    pub fn new(inner: Body, encoder: Encoder) -> Self {
        Self {
            inner,
            encoder: Some(encoder),
            unflushed: false,
            trailers: None,
        }
    }

    fn encoder(&mut self) -> &mut Encoder {
        self.encoder
            .as_mut()
            .expect("the encoder is only taken when the stream ends")
    }
}

fn data(bytes: Vec<u8>) -> Frame<Bytes> {
    Frame::data(Bytes::from(bytes))
}

impl HttpBody for CompressedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.encoder.is_none() {
            return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
        }
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(chunk) => {
                        if chunk.is_empty() {
                            continue;
                        }
                        this.unflushed = true;
                        let encoder = this.encoder();
                        encoder.writer().write_all(&chunk)?;
                        let output = encoder.output();
                        if output.len() >= EMIT_AT {
                            return Poll::Ready(Some(Ok(data(std::mem::take(output)))));
                        }
                    }
                    Err(frame) => {
                        this.trailers = frame.into_trailers().ok();
                        return Poll::Ready(end(this));
                    }
                },
                Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err))),
                Poll::Ready(None) => return Poll::Ready(end(this)),
                Poll::Pending => {
                    if !this.unflushed {
                        return Poll::Pending;
                    }
                    this.unflushed = false;
                    let encoder = this.encoder();
                    encoder.writer().flush()?;
                    let output = std::mem::take(encoder.output());
                    if output.is_empty() {
                        return Poll::Pending;
                    }
                    return Poll::Ready(Some(Ok(data(output))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// The stream's last bytes, or its trailers when the compressor had nothing left.
fn end(body: &mut CompressedBody) -> Option<Result<Frame<Bytes>, BoxError>> {
    let encoder = body.encoder.take()?;
    match encoder.finish() {
        Ok(rest) if !rest.is_empty() => Some(Ok(data(rest))),
        Ok(_) => body.trailers.take().map(|t| Ok(Frame::trailers(t))),
        Err(err) => Some(Err(err.into())),
    }
}
