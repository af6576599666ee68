//! TLS for upstreams: rustls (ring) with the system's roots plus the webpki roots, extra CA
//! files, an optional client certificate, ALPN `h2` then `http/1.1`.

use std::path::Path;
use std::sync::{Arc, LazyLock};

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ConfigError, TlsFiles};

/// The roots every TLS client starts from: the operating system's store (read once per
/// process) and the webpki roots, so a host with an empty or missing store still verifies
/// public providers.
static BASE_ROOTS: LazyLock<RootCertStore> = LazyLock::new(|| {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let native = rustls_native_certs::load_native_certs();
    if !native.errors.is_empty() {
        tracing::debug!(errors = ?native.errors, "some system CA certificates could not be read");
    }
    let (_, ignored) = roots.add_parsable_certificates(native.certs);
    if ignored > 0 {
        tracing::debug!(ignored, "some system CA certificates could not be parsed");
    }
    roots
});

/// The rustls client configuration for `files`.
pub(crate) fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, ConfigError> {
    let mut roots = BASE_ROOTS.clone();
    for file in &files.ca_files {
        for cert in read_certs(file)? {
            roots
                .add(cert)
                .map_err(|err| problem(file, format!("invalid CA certificate: {err}")))?;
        }
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("ring supports TLS 1.2 and 1.3")
            .with_root_certificates(roots);
    let mut config = match &files.client_cert {
        None => builder.with_no_client_auth(),
        Some(client) => {
            let chain = read_certs(&client.cert_file)?;
            let key = PrivateKeyDer::from_pem_file(&client.key_file).map_err(|err| {
                problem(
                    &client.key_file,
                    format!("no usable PEM private key: {err}"),
                )
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|err| problem(&client.key_file, format!("unusable client key: {err}")))?
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Every certificate in a PEM file; a file with none is an error.
fn read_certs(file: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_file_iter(file)
        .map_err(|err| problem(file, format!("cannot read PEM certificates: {err}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| problem(file, format!("invalid PEM: {err}")))?;
    if certs.is_empty() {
        return Err(problem(
            file,
            "no PEM certificate (BEGIN CERTIFICATE) in the file".into(),
        ));
    }
    Ok(certs)
}

fn problem(file: &Path, problem: String) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        problem,
    }
}
