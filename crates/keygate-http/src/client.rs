//! [`HttpClient`]: the one handle every upstream request goes through.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::uri::Scheme;
use http::{Request, Response};
use tokio_rustls::TlsConnector;

use crate::body::Body;
use crate::config::{ConfigError, HttpConfig, TlsFiles};
use crate::connect::Connector;
use crate::error::SendError;
use crate::pool;
use crate::response::ResponseBody;
use crate::tls;

/// Ids of TLS settings, so connections opened with different settings are never shared.
static NEXT_TLS_ID: AtomicU64 = AtomicU64::new(1);

/// Sends requests to `http://` and `https://` upstreams over the calling thread's pools (see the
/// `pool` module). Built once from [`HttpConfig`]; clones share everything.
#[derive(Clone)]
pub struct HttpClient {
    inner: Arc<Inner>,
}

struct Inner {
    connector: Connector,
    config: HttpConfig,
    tls: TlsConnector,
    tls_id: u64,
}

impl HttpClient {
    /// A client with `config`'s settings; fails when a TLS file cannot be used.
    pub fn new(config: HttpConfig) -> Result<Self, ConfigError> {
        let tls = TlsConnector::from(tls::client_config(&config.tls)?);
        Ok(Self {
            inner: Arc::new(Inner {
                connector: Connector::new(config.connect_timeout),
                config,
                tls,
                tls_id: NEXT_TLS_ID.fetch_add(1, Ordering::Relaxed),
            }),
        })
    }

    /// This client with `more` TLS settings layered on its own (see [`TlsFiles::with`]); the
    /// same client when `more` adds nothing.
    pub fn with_tls(&self, more: &TlsFiles) -> Result<Self, ConfigError> {
        if *more == TlsFiles::default() {
            return Ok(self.clone());
        }
        Self::new(HttpConfig {
            tls: self.inner.config.tls.with(more),
            ..self.inner.config.clone()
        })
    }

    /// Sends a request (absolute `http://` or `https://` URI); the response body streams. A
    /// request without `Host` gets its URI's authority.
    pub async fn send(
        &self,
        mut request: Request<Body>,
    ) -> Result<Response<ResponseBody>, SendError> {
        pool::ensure_host(&mut request, None);
        let inner = &*self.inner;
        match request.uri().scheme() {
            Some(scheme) if *scheme == Scheme::HTTP => {
                pool::send(&inner.connector, None, request).await
            }
            Some(scheme) if *scheme == Scheme::HTTPS => {
                pool::send(&inner.connector, Some((inner.tls_id, &inner.tls)), request).await
            }
            _ => Err(SendError::Scheme),
        }
    }
}

impl Default for HttpClient {
    /// Default settings: system and webpki roots, no client certificate, 10 s to connect.
    fn default() -> Self {
        Self::new(HttpConfig::default()).expect("the default settings read no file")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_add_nothing_share_the_client_and_its_connections() {
        let client = HttpClient::default();
        let same = client.with_tls(&TlsFiles::default()).unwrap();
        assert!(Arc::ptr_eq(&client.inner, &same.inner));
    }

    #[test]
    fn an_unreadable_file_is_an_error_naming_it() {
        let missing = std::path::PathBuf::from("/nonexistent/keygate-ca.pem");
        let err = HttpClient::default()
            .with_tls(&TlsFiles {
                ca_files: vec![missing.clone()],
                client_cert: None,
            })
            .err()
            .expect("refused");
        assert_eq!(err.file, missing);
        assert!(
            err.to_string()
                .starts_with("/nonexistent/keygate-ca.pem: cannot read PEM certificates"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_uri_without_http_or_https_is_refused() {
        let request = Request::get("ftp://127.0.0.1/x")
            .body(crate::empty())
            .unwrap();
        let err = HttpClient::default().send(request).await.err().unwrap();
        assert!(matches!(err, SendError::Scheme), "{err}");
    }
}
