//! Opening an upstream connection: TCP (TCP_NODELAY), TLS when the origin is `https://`, then the
//! HTTP handshake of the protocol ALPN chose. The connection is driven by a task on the calling
//! thread's runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::Authority;
use http::Uri;
use hyper::client::conn::{http1, http2};
use hyper::rt::{Read, Write};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tower_service::Service;

use crate::body::Body;
use crate::error::SendError;
use crate::streams::Streams;

/// How often a new HTTP/2 connection is looked at until the peer's first SETTINGS arrived.
const SETTINGS_POLL: Duration = Duration::from_millis(1);

/// A fresh connection's request handle.
pub(crate) enum Fresh {
    Http1(http1::SendRequest<Body>),
    Http2(http2::SendRequest<Body>, Arc<Streams>),
}

/// Opens connections; cheap to clone.
#[derive(Clone)]
pub(crate) struct Connector {
    tcp: HttpConnector,
    timeout: Duration,
}

impl Connector {
    pub(crate) fn new(timeout: Duration) -> Self {
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        // The scheme decides about TLS here, not the TCP connector.
        tcp.enforce_http(false);
        Self { tcp, timeout }
    }

    /// Opens a connection to `target`'s origin, over TLS when `tls` is given, within the
    /// connect timeout.
    ///
    /// Boxed: the TCP, TLS and HTTP/2 handshake state is large, and a future awaiting it inline
    /// would carry that size in every request's future (which is moved, byte by byte, each time
    /// it is boxed), although connections are opened only now and then.
    pub(crate) fn open<'a>(
        &'a self,
        target: &'a Uri,
        origin: &'a Authority,
        tls: Option<&'a TlsConnector>,
    ) -> Pin<Box<dyn Future<Output = Result<Fresh, SendError>> + Send + 'a>> {
        Box::pin(self.open_now(target, origin, tls))
    }

    async fn open_now(
        &self,
        target: &Uri,
        origin: &Authority,
        tls: Option<&TlsConnector>,
    ) -> Result<Fresh, SendError> {
        let opening = async {
            let tcp = self
                .tcp
                .clone()
                .call(target.clone())
                .await
                .map_err(|err| SendError::Connect {
                    origin: origin.clone(),
                    cause: err.into(),
                })?
                .into_inner();
            match tls {
                None => http1_handshake(TokioIo::new(tcp)).await,
                Some(tls) => tls_handshake(tcp, origin, tls).await,
            }
        };
        tokio::time::timeout(self.timeout, opening)
            .await
            .map_err(|_| SendError::ConnectTimeout {
                origin: origin.clone(),
                after: self.timeout,
            })?
    }
}

async fn tls_handshake(
    tcp: TcpStream,
    origin: &Authority,
    tls: &TlsConnector,
) -> Result<Fresh, SendError> {
    let host = origin.host();
    // An IPv6 literal comes bracketed in the authority.
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let tls_error = |cause| SendError::Tls {
        origin: origin.clone(),
        cause,
    };
    let name = ServerName::try_from(host.to_owned())
        .map_err(|err| tls_error(std::io::Error::new(std::io::ErrorKind::InvalidInput, err)))?;
    let stream = tls.connect(name, tcp).await.map_err(tls_error)?;
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(stream);
    if !h2 {
        return http1_handshake(io).await;
    }
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        // No stream until the peer's first SETTINGS, so the limit published is always the peer's.
        .initial_max_send_streams(0)
        .handshake(io)
        .await
        .map_err(SendError::Http)?;
    // hyper reads frames on a task of its own and tells nobody when the peer's SETTINGS came:
    // look until they have set the limit (or the connection is gone; the request then fails on
    // it with hyper's reason). Bounded by the connect timeout around this.
    while connection.current_max_send_streams() == 0 && !sender.is_closed() {
        tokio::time::sleep(SETTINGS_POLL).await;
    }
    let streams = Arc::new(Streams::default());
    streams
        .limit
        .store(connection.current_max_send_streams(), Ordering::Relaxed);
    tokio::spawn(drive(Http2Driver {
        connection,
        streams: streams.clone(),
    }));
    Ok(Fresh::Http2(sender, streams))
}

async fn http1_handshake<T>(io: T) -> Result<Fresh, SendError>
where
    T: Read + Write + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(io).await.map_err(SendError::Http)?;
    tokio::spawn(drive(connection));
    Ok(Fresh::Http1(sender))
}

async fn drive<C: Future<Output = hyper::Result<()>>>(connection: C) {
    if let Err(error) = connection.await {
        tracing::debug!(%error, "upstream connection ended with an error");
    }
}

/// Drives an HTTP/2 connection's request side (woken by every request sent) and, after every
/// poll, publishes the peer's current `SETTINGS_MAX_CONCURRENT_STREAMS`, which may change during
/// the connection, for the pool to compare its open streams against.
struct Http2Driver {
    connection: http2::Connection<TlsIo, Body, TokioExecutor>,
    streams: Arc<Streams>,
}

type TlsIo = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

impl Future for Http2Driver {
    type Output = hyper::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let done = Pin::new(&mut this.connection).poll(cx);
        let limit = this.connection.current_max_send_streams();
        this.streams.limit.store(limit, Ordering::Relaxed);
        done
    }
}
