//! Everything Keygate sends upstream (the `--upstream` proxy, `ai-gateway` providers, JWKS
//! fetches): the streamed [`Body`] type, [`HttpClient`] with its per-thread connection pools
//! (HTTP/1.1 for `http://`; TLS with ALPN choosing HTTP/2 or HTTP/1.1 for `https://`), the
//! upstream TLS settings ([`HttpConfig`], [`TlsFiles`]), the [`ResponseBody`] of upstream
//! responses, [`SendError`], and the one list of hop-by-hop headers ([`strip_hop_by_hop`]).
//!
//! Every socket opened here has TCP_NODELAY set. rustls runs with the ring provider only.

pub mod body;
mod client;
mod config;
mod connect;
mod error;
mod headers;
mod pool;
mod response;
mod streams;
mod tls;

pub use body::{empty, full, Body, BoxError};
pub use client::HttpClient;
pub use config::{ClientCert, ConfigError, HttpConfig, TlsFiles};
pub use error::SendError;
pub use headers::strip_hop_by_hop;
pub use response::{is_incomplete_message, ResponseBody};
