//! The outbound HTTP client shared by the upstream proxy, `ai-gateway` and JWKS fetches.
//!
//! `http://` origins use this crate's own per-thread HTTP/1.1 pool ([`plain`]); `https://`
//! origins use hyper-util's pool with rustls, ALPN and HTTP/2. Both pools live per thread: the
//! gateway serves each connection on one core's runtime, and an upstream connection stays on the
//! core that drives it, so a request never wakes another thread.

mod plain;

use std::sync::LazyLock;
use std::time::Duration;

use http::header::{HeaderValue, HOST};
use http::uri::{Authority, Scheme};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::body::Body;

/// Idle upstream connections kept per host by each thread's pool. Plenty for thousands of requests
/// per second per core (each request holds one for about a millisecond); more would only hold
/// memory after a burst (each costs ~20 KiB of buffers).
const MAX_IDLE_PER_HOST: usize = 64;

type Connector = HttpsConnector<HttpConnector>;

/// TCP for every upstream: TCP_NODELAY, 10 s to connect.
fn tcp_connector() -> HttpConnector {
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(Duration::from_secs(10)));
    tcp
}

/// The connector (TLS roots, TCP options) every thread's `https://` client shares.
static CONNECTOR: LazyLock<Connector> = LazyLock::new(|| {
    let mut http = tcp_connector();
    http.enforce_http(false);
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http)
});

thread_local! {
    /// This thread's pool for `https://` origins.
    static POOL: Client<Connector, Body> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
        .build(CONNECTOR.clone());
}

/// Why an upstream request failed (its `source()` chain holds the causes).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the URI has no host")]
    NoHost,
    #[error("cannot connect")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Http(hyper::Error),
    #[error(transparent)]
    Pooled(hyper_util::client::legacy::Error),
}

/// Pooled HTTP/1.1 + HTTP/2 client with rustls (webpki roots) and TCP_NODELAY; connections idle
/// for 90 s are closed. A handle: the pools live per thread.
#[derive(Clone, Default)]
pub struct HttpClient;

impl HttpClient {
    /// The client handle.
    pub fn new() -> Self {
        Self
    }

    /// Sends a request on the calling thread's pool; the response body streams. A request
    /// without `Host` gets its URI's authority (the pool would otherwise format one per request).
    pub async fn send(&self, mut request: Request<Body>) -> Result<Response<Incoming>, SendError> {
        if !request.headers().contains_key(HOST) {
            // `host[:port]`: userinfo (`user:pass@`) never goes into Host.
            let host = request.uri().authority().map(Authority::as_str);
            if let Some(Ok(host)) = host
                .and_then(|a| a.rsplit('@').next())
                .map(HeaderValue::from_str)
            {
                request.headers_mut().insert(HOST, host);
            }
        }
        if request.uri().scheme() == Some(&Scheme::HTTP) {
            return plain::send(request).await;
        }
        POOL.with(Client::clone)
            .request(request)
            .await
            .map_err(SendError::Pooled)
    }
}
