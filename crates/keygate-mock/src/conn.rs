//! An accepted connection that a response can make end with a TCP reset instead of a FIN
//! (`x-mock-drop: mid-stream`), so clients meet a real `ECONNRESET`.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Shared by a connection and its requests: once tripped, the connection closes with a reset.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResetSwitch(Arc<AtomicBool>);

impl ResetSwitch {
    /// Makes the connection's close a reset.
    pub(crate) fn trip(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn tripped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A TCP stream that is reset rather than shut down once its [`ResetSwitch`] is tripped.
pub(crate) struct Conn {
    stream: TcpStream,
    reset: ResetSwitch,
}

impl Conn {
    pub(crate) fn new(stream: TcpStream, reset: ResetSwitch) -> Self {
        Self { stream, reset }
    }

    /// With a zero linger time, closing the socket sends RST and discards unsent data.
    fn arm_reset(&self) {
        let _ = self.stream.set_zero_linger();
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.reset.tripped() {
            self.arm_reset();
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    /// A tripped connection skips the FIN, so the peer sees only the reset.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.reset.tripped() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
