//! The client listener: accept, optional TLS handshake, HTTP/1.1 or HTTP/2 per connection, and a
//! graceful drain on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use keygate_cel::{ConnInfo, TlsInfo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::admission::Place;
use crate::gateway::Gateway;
use crate::handler;
use crate::tls::TlsConfig;
use crate::workers::Workers;

/// Request headers larger than this are refused with 431.
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// A client must send its request head within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn connection_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    builder
}

/// Accepts clients until `shutdown` resolves, dealing each connection to a per-core runtime, then
/// drains open connections for the grace period.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsConfig>,
    gateway: Arc<Gateway>,
    workers: &Workers,
    shutdown: impl Future<Output = ()>,
) {
    let builder = connection_builder();
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (Ok(local), Ok(stream)) = (stream.local_addr(), stream.into_std()) else {
            continue;
        };
        let place = gateway.admission.connection();
        workers.spawn(serve_client(
            stream,
            ConnInfo::new(peer, local),
            tls.as_ref().map(TlsConfig::acceptor),
            builder.clone(),
            graceful.watcher(),
            gateway.clone(),
            place,
        ));
    }
    drop(listener);
    let grace = gateway.config.shutdown_grace;
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => warn!(grace_seconds = grace.as_secs(), "shutdown grace period over; closing remaining connections"),
    }
}

/// Sets up one client connection on the runtime this runs on (a worker's), then serves it as a
/// task of its own: a long-lived idle connection then holds only its connection state, not this
/// setup's (the TLS handshake's buffers, the builder). `place` is its place under
/// `--max-connections`; without one its requests are answered 503 and it is closed.
async fn serve_client(
    stream: std::net::TcpStream,
    conn: ConnInfo,
    tls: Option<TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    watcher: Watcher,
    gateway: Arc<Gateway>,
    place: Option<Place>,
) {
    // Registers the socket with this runtime's reactor.
    let stream = match TcpStream::from_std(stream) {
        Ok(stream) => stream,
        Err(err) => return warn!(error = %err, "cannot register an accepted connection"),
    };
    if !on_tcp_connect(&gateway, &conn).await {
        return;
    }
    let Some(acceptor) = tls else {
        tokio::spawn(serve_connection(
            &builder, watcher, stream, conn, "http", gateway, place,
        ));
        return;
    };
    let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => return debug!(error = %err, "TLS handshake failed"),
        Err(_) => return debug!("TLS handshake timed out"),
    };
    let conn = ConnInfo {
        tls: Some(tls_info(stream.get_ref().1)),
        ..conn
    };
    tokio::spawn(serve_connection(
        &builder, watcher, stream, conn, "https", gateway, place,
    ));
}

/// Runs the policy's `on_tcp_connect` rules, if any; false when they refused the connection
/// (dropping the stream then closes it before TLS and HTTP).
async fn on_tcp_connect(gateway: &Gateway, conn: &ConnInfo) -> bool {
    let policy = gateway.policy.load();
    if !policy.has_tcp_connect_rules() {
        return true;
    }
    let verdict = policy
        .on_tcp_connect(Arc::new(conn.clone()), gateway.deps.secrets.clone())
        .await;
    let log = &verdict.log;
    if !verdict.accepted {
        gateway.metrics.connections_refused.inc();
        info!(client_ip = %conn.client_ip, rules = ?log.matched_rules, action = log.terminated_by, log = ?log.metadata, "connection refused by on_tcp_connect");
    } else if !log.metadata.is_empty() {
        info!(client_ip = %conn.client_ip, rules = ?log.matched_rules, log = ?log.metadata, "connection accepted by on_tcp_connect");
    }
    verdict.accepted
}

fn serve_connection<S>(
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
    stream: S,
    conn: ConnInfo,
    scheme: &'static str,
    gateway: Arc<Gateway>,
    place: Option<Place>,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = Arc::new(conn);
    let admitted = place.is_some();
    let service = service_fn(move |request| {
        handler::handle(gateway.clone(), conn.clone(), scheme, request, admitted)
    });
    let connection = watcher.watch(
        builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned(),
    );
    async move {
        let _place = place;
        if let Err(err) = connection.await {
            debug!(error = %err, "connection ended with an error");
        }
    }
}

fn tls_info(session: &rustls::ServerConnection) -> TlsInfo {
    TlsInfo {
        version: match session.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".into(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".into(),
            Some(other) => format!("{other:?}"),
            None => String::new(),
        },
        cipher_suite: session
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default(),
        sni: session.server_name().unwrap_or_default().to_owned(),
        negotiated_alpn: session
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default(),
    }
}
