//! HTTPS: ALPN `h2` and `http/1.1`, the HTTP/1.1-only mode and required client certificates,
//! with certificates from `keygate_mock::certs` (the HTTP/2 stream limit is exercised by
//! `keygate-http`'s pool tests).

use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use keygate_mock::certs::{CertPair, TestCa, LOCAL_NAMES};
use keygate_mock::{MockConfig, MockServer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A TLS client session to `mock` trusting `ca`, offering `alpn`, presenting `client` if given.
async fn connect(
    mock: &MockServer,
    ca: &TestCa,
    alpn: &[&[u8]],
    client: Option<&CertPair>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some(pair) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(pair.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(mock.addr).await?;
    tcp.set_nodelay(true)?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
}

async fn tls_mock(ca: &TestCa, config: MockConfig) -> MockServer {
    let leaf = ca.server_cert(&LOCAL_NAMES);
    MockServer::start(config.with_tls(leaf.cert_pem, leaf.key_pem))
        .await
        .expect("mock starts")
}

fn models(mock: &MockServer) -> Request<Full<Bytes>> {
    Request::get(format!("{}/v1/models", mock.url()))
        .header("host", mock.addr.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test]
async fn alpn_picks_h2() {
    let ca = TestCa::new("mock CA");
    let mock = tls_mock(&ca, MockConfig::default()).await;
    assert!(mock.url().starts_with("https://127.0.0.1:"));
    let tls = connect(&mock, &ca, &[b"h2", b"http/1.1"], None)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    let response = sender.send_request(models(&mock)).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(b"{"));
}

#[tokio::test]
async fn http1_only_mode_offers_only_http1() {
    let ca = TestCa::new("mock CA");
    let mock = tls_mock(&ca, MockConfig::default().with_http1_only()).await;
    let tls = connect(&mock, &ca, &[b"h2", b"http/1.1"], None)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = models(&mock);
    *request.uri_mut() = "/v1/models".parse().unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_required_client_certificate_is_enforced() {
    let ca = TestCa::new("mock CA");
    let leaf = ca.server_cert(&LOCAL_NAMES);
    let config = MockConfig::default()
        .with_http1_only()
        .with_tls(leaf.cert_pem, leaf.key_pem)
        .with_client_ca(ca.cert_pem());
    let mock = MockServer::start(config).await.expect("mock starts");

    let get = |tls: TlsStream<TcpStream>| async {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .ok()?;
        tokio::spawn(connection);
        let mut request = models(&mock);
        *request.uri_mut() = "/v1/models".parse().unwrap();
        sender.send_request(request).await.ok().map(|r| r.status())
    };
    // TLS 1.3 finishes the client's handshake first; the refusal comes with the first read.
    let refused = match connect(&mock, &ca, &[], None).await {
        Ok(tls) => get(tls).await,
        Err(_) => None,
    };
    assert_eq!(refused, None);
    let client = ca.client_cert("test client");
    let tls = connect(&mock, &ca, &[], Some(&client)).await.unwrap();
    assert_eq!(get(tls).await, Some(http::StatusCode::OK));
}
