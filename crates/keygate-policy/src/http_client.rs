//! The outbound HTTP client shared by the upstream proxy, `ai-gateway` and JWKS fetches.

use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::body::Body;

/// Idle upstream connections kept per host. Enough for thousands of requests per second to one
/// provider; more would only hold memory after a burst (each costs ~20 KiB of buffers).
const MAX_IDLE_PER_HOST: usize = 256;

/// A pooled HTTP/1.1 + HTTP/2 client with rustls (webpki roots) and TCP_NODELAY.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Body>,
}

impl HttpClient {
    /// Builds the client. Connections idle for 90 s are closed.
    pub fn new() -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .build(https);
        Self { inner }
    }

    /// Sends a request; the response body streams.
    pub async fn send(
        &self,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        self.inner.request(request).await
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}
