//! HTTPS: TLS 1.2 and 1.3, ALPN, `conn.tls.*`, certificate reload, and clear start-up errors.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{make_cert, Gateway, Options, TempDir, BIN};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const POLICY: &str = r#"
on_http_request:
  - actions:
      - type: custom-response
        config:
          body: "${conn.tls.version} ${conn.tls.negotiated_alpn} ${conn.tls.sni} ${req.url.scheme}"
"#;

fn start(certs: &TempDir) -> Gateway {
    let cert = certs.path().join("cert.pem").display().to_string();
    let key = certs.path().join("key.pem").display().to_string();
    Gateway::start_with(
        POLICY,
        Options {
            args: vec!["--tls-cert".into(), cert, "--tls-key".into(), key],
            ..Options::default()
        },
    )
}

/// Connects with `versions` and `alpn`; returns the server's leaf certificate and the HTTP/1.1 body.
/// The server certificate is checked by the test itself (it compares leaves), not by a CA chain.
async fn get(
    gw: &Gateway,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> (Vec<u8>, String) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    tls.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (leaf, body)
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[tokio::test]
async fn serves_tls12_and_tls13_with_alpn_and_reloads_the_certificate() {
    let certs = TempDir::new("certs");
    make_cert(certs.path(), "first");
    let gw = start(&certs);
    let cert = certs.path().join("cert.pem");

    let (first_leaf, body) = get(&gw, &[&rustls::version::TLS13], &[b"http/1.1"]).await;
    assert_eq!(body, "TLSv1.3 http/1.1 localhost https");
    let (_, body) = get(&gw, &[&rustls::version::TLS12], &[]).await;
    assert_eq!(body, "TLSv1.2  localhost https");

    // Replace the certificate; new connections get the new one, no restart.
    let renewed = TempDir::new("certs2");
    make_cert(renewed.path(), "second");
    std::fs::copy(renewed.path().join("key.pem"), certs.path().join("key.pem")).unwrap();
    std::fs::copy(renewed.path().join("cert.pem"), &cert).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (leaf, _) = get(&gw, &[&rustls::version::TLS13], &[b"h2", b"http/1.1"]).await;
        if leaf != first_leaf {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "certificate was not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(gw.wait_for_output("TLS certificate reloaded", Duration::from_secs(2)));

    // A broken replacement is refused; the current certificate keeps serving.
    std::fs::write(&cert, "not a certificate").unwrap();
    assert!(
        gw.wait_for_output("TLS certificate reload rejected", Duration::from_secs(10)),
        "{}",
        gw.output()
    );
    let (_, body) = get(&gw, &[&rustls::version::TLS13], &[]).await;
    assert!(body.starts_with("TLSv1.3"), "{body}");
}

#[test]
fn bad_certificates_stop_the_start_with_exit_2() {
    let certs = TempDir::new("bad");
    make_cert(certs.path(), "one");
    let other = TempDir::new("bad2");
    make_cert(other.path(), "two");
    let policy = certs.path().join("policy.yml");
    std::fs::write(&policy, "on_http_request: []\n").unwrap();
    std::fs::write(
        certs.path().join("garbage.pem"),
        "-----BEGIN CERTIFICATE-----\nnope\n",
    )
    .unwrap();
    for (cert, key, expected) in [
        (
            certs.path().join("cert.pem"),
            other.path().join("key.pem"),
            "do not form a valid pair",
        ),
        (
            certs.path().join("garbage.pem"),
            certs.path().join("key.pem"),
            "TLS certificate",
        ),
        (
            certs.path().join("missing.pem"),
            certs.path().join("key.pem"),
            "cannot read TLS certificate",
        ),
    ] {
        let output = Command::new(BIN)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--policy",
            ])
            .arg(&policy)
            .arg("--data-dir")
            .arg(certs.path().join("data"))
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in {stderr}"
        );
    }
}
