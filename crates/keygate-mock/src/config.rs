//! Mock-level configuration: defaults that every request starts from before its controls apply.

use std::net::SocketAddr;
use std::time::Duration;

/// How the mock server behaves when a request carries no controls of its own.
///
/// Build it with [`MockConfig::default`] and the `with_*` methods:
/// `MockConfig::default().with_chunks(20).with_chunk_delay(Duration::from_millis(5))`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockConfig {
    /// Address to listen on. The default `127.0.0.1:0` picks a free port.
    pub listen: SocketAddr,
    /// Number of content chunks a streamed reply is split into (at most one per character).
    pub chunks: usize,
    /// Pause before each content chunk of a streamed reply.
    pub chunk_delay: Duration,
    /// Pause before the response head when an API key asks for `slow` without a number.
    pub slow_delay: Duration,
    /// How many requests the record keeps (oldest dropped first); `0` records nothing.
    pub max_records: usize,
    /// Idle time allowed while a client sends its request head.
    pub header_read_timeout: Duration,
    /// Serve HTTPS with this certificate chain and key (PEM); ALPN offers `h2` and `http/1.1`.
    pub tls: Option<MockTls>,
    /// Streams one HTTP/2 connection may carry at once (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub max_concurrent_streams: u32,
    /// Speak HTTP/1.1 only (no h2c, and ALPN offers only `http/1.1`).
    pub http1_only: bool,
    /// Model ids `GET .../models` lists (both shapes) instead of the built-in lists; changeable
    /// while running with [`crate::MockServer::set_models`] or `PUT /_mock/models`.
    pub models: Option<Vec<String>>,
}

/// The mock's HTTPS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockTls {
    pub cert_pem: String,
    pub key_pem: String,
    /// When set, clients must present a certificate signed by this CA (PEM).
    pub client_ca_pem: Option<String>,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            chunks: 5,
            chunk_delay: Duration::ZERO,
            slow_delay: Duration::from_millis(2000),
            max_records: 10_000,
            header_read_timeout: Duration::from_secs(30),
            tls: None,
            max_concurrent_streams: 100,
            http1_only: false,
            models: None,
        }
    }
}

impl MockConfig {
    /// Sets the listen address.
    pub fn with_listen(mut self, listen: SocketAddr) -> Self {
        self.listen = listen;
        self
    }

    /// Sets the default number of content chunks in a streamed reply (`0` is treated as `1`).
    pub fn with_chunks(mut self, chunks: usize) -> Self {
        self.chunks = chunks.max(1);
        self
    }

    /// Sets the default pause before each content chunk.
    pub fn with_chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = delay;
        self
    }

    /// Sets the delay used by keys containing a bare `slow`.
    pub fn with_slow_delay(mut self, delay: Duration) -> Self {
        self.slow_delay = delay;
        self
    }

    /// Sets how many requests the record keeps; `0` turns recording off.
    pub fn with_max_records(mut self, max_records: usize) -> Self {
        self.max_records = max_records;
        self
    }

    /// Serves HTTPS with this certificate chain and private key (PEM).
    pub fn with_tls(mut self, cert_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        self.tls = Some(MockTls {
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
            client_ca_pem: None,
        });
        self
    }

    /// Requires clients to present a certificate signed by `ca_pem` (after [`Self::with_tls`]).
    pub fn with_client_ca(mut self, ca_pem: impl Into<String>) -> Self {
        if let Some(tls) = &mut self.tls {
            tls.client_ca_pem = Some(ca_pem.into());
        }
        self
    }

    /// Sets how many streams one HTTP/2 connection may carry at once.
    pub fn with_max_concurrent_streams(mut self, streams: u32) -> Self {
        self.max_concurrent_streams = streams;
        self
    }

    /// Speaks HTTP/1.1 only.
    pub fn with_http1_only(mut self) -> Self {
        self.http1_only = true;
        self
    }

    /// Lists these model ids on `GET .../models` (OpenAI and Anthropic shapes) instead of the
    /// built-in lists, e.g. a self-hosted server's `["smollm2"]`.
    pub fn with_models<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.models = Some(ids.into_iter().map(Into::into).collect());
        self
    }
}
