//! HTTPS: rustls with TLS 1.2/1.3 and ALPN h2 + http/1.1; the certificate and key are re-read
//! when their files change (a bad pair at reload keeps the old one).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

/// How often the certificate files are checked for changes.
const POLL: Duration = Duration::from_secs(1);

/// The current TLS settings, swappable at run time.
#[derive(Clone)]
pub struct TlsConfig {
    cert: PathBuf,
    key: PathBuf,
    current: Arc<ArcSwap<rustls::ServerConfig>>,
}

impl TlsConfig {
    /// Loads and checks the certificate chain and key (error: one sentence naming the file).
    pub fn load(cert: &Path, key: &Path) -> Result<Self, String> {
        let config = server_config(cert, key)?;
        Ok(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: Arc::new(ArcSwap::from_pointee(config)),
        })
    }

    /// An acceptor using the current certificate.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }

    /// Watches the files in the background and swaps in a new valid pair when they change.
    pub fn watch(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut seen = this.modified();
            loop {
                tokio::time::sleep(POLL).await;
                let now = this.modified();
                if now == seen {
                    continue;
                }
                seen = now;
                match server_config(&this.cert, &this.key) {
                    Ok(config) => {
                        this.current.store(Arc::new(config));
                        info!(cert = %this.cert.display(), "TLS certificate reloaded");
                    }
                    Err(err) => {
                        warn!(error = %err, "TLS certificate reload rejected; keeping the previous one")
                    }
                }
            }
        });
    }

    fn modified(&self) -> (Option<SystemTime>, Option<SystemTime>) {
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        (mtime(&self.cert), mtime(&self.key))
    }
}

fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|err| format!("cannot read TLS certificate {}: {err}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("invalid PEM in TLS certificate {}: {err}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("no certificate found in {}", cert.display()));
    }
    let private_key = PrivateKeyDer::from_pem_file(key)
        .map_err(|err| format!("cannot read TLS private key {}: {err}", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .map_err(|err| format!("TLS setup failed: {err}"))?
    .with_no_client_auth()
    .with_single_cert(chain, private_key)
    .map_err(|err| {
        format!(
            "TLS certificate {} and key {} do not form a valid pair: {err}",
            cert.display(),
            key.display()
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
