//! Why an upstream request failed.

use std::time::Duration;

use http::uri::Authority;

use crate::body::BoxError;

/// Why an upstream request failed. The message names the origin; [`SendError::Connect`] and
/// [`SendError::Http`] keep their causes in `source()`.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the URI has no host")]
    NoHost,
    #[error("the URI scheme is not http or https")]
    Scheme,
    #[error("cannot connect to {origin}")]
    Connect {
        origin: Authority,
        #[source]
        cause: BoxError,
    },
    #[error("connecting to {origin} timed out after {}s", after.as_secs_f64())]
    ConnectTimeout { origin: Authority, after: Duration },
    /// The certificate was refused (untrusted, expired, another host's) or the peer refused ours.
    /// The cause is part of the message, which is what clients and the access log show.
    #[error("TLS handshake with {origin} failed: {cause}")]
    Tls {
        origin: Authority,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Http(hyper::Error),
}

impl SendError {
    /// The message and its chain of causes, on one line (never holds request headers or keys).
    pub fn with_causes(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}
