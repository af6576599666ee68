//! What the client is built from: `keygate serve`'s upstream flags and `ai-gateway`'s per-provider
//! `tls` blocks.

use std::path::PathBuf;
use std::time::Duration;

/// Settings for every upstream connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Longest time to open a connection: TCP connect, TLS handshake and HTTP/2 preface.
    pub connect_timeout: Duration,
    /// Trust and identity for `https://` upstreams.
    pub tls: TlsFiles,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            tls: TlsFiles::default(),
        }
    }
}

/// PEM files for TLS upstreams. The system's roots and the webpki roots are always trusted;
/// these add to them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// More CA certificates to trust (each file may hold several).
    pub ca_files: Vec<PathBuf>,
    /// A client certificate chain and its private key, for upstreams that ask for one (mTLS).
    pub client_cert: Option<ClientCert>,
}

/// A client certificate chain and its key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TlsFiles {
    /// These settings with `more` layered on top: its CA files are trusted too, and its client
    /// certificate, when it has one, replaces this one.
    pub fn with(&self, more: &TlsFiles) -> TlsFiles {
        let mut ca_files = self.ca_files.clone();
        ca_files.extend(more.ca_files.iter().cloned());
        TlsFiles {
            ca_files,
            client_cert: more
                .client_cert
                .clone()
                .or_else(|| self.client_cert.clone()),
        }
    }
}

/// A TLS file that cannot be used, with the reason.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{}: {problem}", file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    pub problem: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(name: &str) -> ClientCert {
        ClientCert {
            cert_file: format!("{name}.crt").into(),
            key_file: format!("{name}.key").into(),
        }
    }

    #[test]
    fn layered_settings_add_cas_and_replace_the_client_certificate() {
        let global = TlsFiles {
            ca_files: vec!["global.pem".into()],
            client_cert: Some(cert("global")),
        };
        let provider = TlsFiles {
            ca_files: vec!["provider.pem".into()],
            client_cert: None,
        };
        let merged = global.with(&provider);
        assert_eq!(
            merged.ca_files,
            [PathBuf::from("global.pem"), "provider.pem".into()]
        );
        assert_eq!(merged.client_cert, Some(cert("global")));
        let own = TlsFiles {
            ca_files: Vec::new(),
            client_cert: Some(cert("provider")),
        };
        assert_eq!(global.with(&own).client_cert, Some(cert("provider")));
    }
}
