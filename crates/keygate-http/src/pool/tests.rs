use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::HOST;
use http::uri::Authority;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use keygate_mock::certs::{TestCa, LOCAL_NAMES};
use keygate_mock::{MockConfig, MockServer};
use tokio_rustls::TlsConnector;

use super::*;
use crate::body::full;
use crate::config::TlsFiles;

fn connector() -> Connector {
    Connector::new(Duration::from_secs(10))
}

/// An HTTP/1.1 server on 127.0.0.1 that counts the connections it accepted; each answer waits
/// `delay` first. Answers `ok`.
async fn server(delay: Duration) -> (Authority, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            stream.set_nodelay(true).unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = service_fn(move |_request| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, std::convert::Infallible>(Response::new(full("ok")))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (authority, accepted)
}

async fn get(authority: &Authority) -> String {
    let request = Request::get(format!("http://{authority}/path?q=1"))
        .header(HOST, authority.as_str())
        .body(full(""))
        .unwrap();
    let response = send(&connector(), None, request).await.expect("response");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn sequential_requests_share_one_connection() {
    let (authority, accepted) = server(Duration::ZERO).await;
    for _ in 0..5 {
        assert_eq!(get(&authority).await, "ok");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(listed(authority.as_str()), 1);
}

#[tokio::test]
async fn concurrent_requests_open_connections_that_are_then_reused() {
    let (authority, accepted) = server(Duration::from_millis(50)).await;
    let (a, b, c) = tokio::join!(get(&authority), get(&authority), get(&authority));
    assert_eq!([a, b, c], ["ok", "ok", "ok"]);
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    for _ in 0..3 {
        assert_eq!(get(&authority).await, "ok");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "idle connections are reused"
    );
    assert_eq!(listed(authority.as_str()), 3);
}

#[tokio::test]
async fn a_connection_the_server_closed_is_replaced() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
    // Answers one request per connection, then closes it without saying so.
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(Response::new(full("ok")))
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(Duration::from_millis(20), connection).await;
            });
        }
    });
    for _ in 0..3 {
        assert_eq!(get(&authority).await, "ok");
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert!(
        listed(authority.as_str()) <= 1,
        "closed connections are dropped"
    );
}

async fn burst(authority: &Authority) {
    let burst = MAX_IDLE_PER_ORIGIN + 16;
    let replies = futures_util::future::join_all((0..burst).map(|_| get(authority))).await;
    assert!(replies.iter().all(|r| r == "ok"));
    assert_eq!(listed(authority.as_str()), burst);
}

#[tokio::test]
async fn traffic_sweeps_idle_connections_down_to_the_cap() {
    let (authority, _) = server(Duration::from_millis(20)).await;
    burst(&authority).await;
    // A sweep runs every SWEEP_EVERY checkouts; sequential requests reach one.
    for _ in 0..SWEEP_EVERY {
        assert_eq!(get(&authority).await, "ok");
    }
    assert_eq!(listed(authority.as_str()), MAX_IDLE_PER_ORIGIN);
}

#[tokio::test]
async fn without_traffic_a_timer_sweeps_a_burst_down_to_the_cap() {
    let (authority, _) = server(Duration::from_millis(20)).await;
    burst(&authority).await;
    tokio::time::sleep(SWEEP_INTERVAL + Duration::from_millis(300)).await;
    assert_eq!(listed(authority.as_str()), MAX_IDLE_PER_ORIGIN);
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let authority = listener.local_addr().unwrap().to_string();
    drop(listener);
    let request = Request::get(format!("http://{authority}/"))
        .header(HOST, authority.as_str())
        .body(full(""))
        .unwrap();
    let result = send(&connector(), None, request).await;
    assert!(matches!(result, Err(SendError::Connect { .. })));
}

/// A TLS mock (HTTP/2 allowed, at most `streams` per connection) and a TLS connector that
/// trusts its CA.
async fn tls_mock(streams: u32, http1_only: bool) -> (MockServer, TlsConnector) {
    let ca = TestCa::new("pool test CA");
    let leaf = ca.server_cert(&LOCAL_NAMES);
    let mut config = MockConfig::default()
        .with_tls(leaf.cert_pem, leaf.key_pem)
        .with_max_concurrent_streams(streams)
        .with_max_records(0);
    if http1_only {
        config = config.with_http1_only();
    }
    let mock = MockServer::start(config).await.expect("mock starts");
    let dir = std::env::temp_dir().join(format!("keygate-http-pool-{}", mock.addr.port()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file: PathBuf = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let files = TlsFiles {
        ca_files: vec![ca_file],
        client_cert: None,
    };
    let tls = TlsConnector::from(crate::tls::client_config(&files).unwrap());
    (mock, tls)
}

/// `n` concurrent slow GETs on `mock` over `tls` (settings id `id`); each holds its response
/// until the whole body has arrived.
async fn slow_gets(mock: &MockServer, tls: &TlsConnector, id: u64, n: usize, delay_ms: u64) {
    let connector = connector();
    let requests = (0..n).map(|_| {
        let request = Request::get(format!("{}/v1/models", mock.url()))
            .header(HOST, mock.addr.to_string())
            .header("x-mock-delay-ms", delay_ms.to_string())
            .body(full(""))
            .unwrap();
        let connector = connector.clone();
        async move {
            let response = send(&connector, Some((id, tls)), request).await.unwrap();
            assert_eq!(response.status(), 200);
            let version = response.version();
            response.into_body().collect().await.unwrap();
            version
        }
    });
    let versions = futures_util::future::join_all(requests).await;
    assert!(versions.iter().all(|v| *v == versions[0]));
}

#[tokio::test]
async fn a_second_http2_connection_opens_when_the_first_is_at_the_peers_limit() {
    let (mock, tls) = tls_mock(2, false).await;
    let started = Instant::now();
    slow_gets(&mock, &tls, 1001, 5, 500).await;
    // Five streams at two per connection: three connections, all running at once (queued
    // streams would take two delays or more).
    assert_eq!(listed(&mock.addr.to_string()), 3);
    assert!(
        started.elapsed() < Duration::from_millis(950),
        "no request queued behind another: {:?}",
        started.elapsed()
    );
    // Slots come back when bodies end: the next burst reuses the same connections.
    slow_gets(&mock, &tls, 1001, 4, 50).await;
    assert_eq!(listed(&mock.addr.to_string()), 3);
}

#[tokio::test]
async fn a_burst_to_a_new_http2_origin_shares_connections() {
    let (mock, tls) = tls_mock(100, false).await;
    slow_gets(&mock, &tls, 1002, 150, 200).await;
    assert_eq!(listed(&mock.addr.to_string()), 2);
}

#[tokio::test]
async fn an_http1_tls_origin_gets_one_connection_per_request_in_flight() {
    let (mock, tls) = tls_mock(100, true).await;
    slow_gets(&mock, &tls, 1003, 6, 100).await;
    assert_eq!(listed(&mock.addr.to_string()), 6);
    slow_gets(&mock, &tls, 1003, 6, 10).await;
    assert_eq!(listed(&mock.addr.to_string()), 6, "reused");
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_tls_error_naming_the_origin() {
    let (mock, _) = tls_mock(100, false).await;
    let tls = TlsConnector::from(crate::tls::client_config(&TlsFiles::default()).unwrap());
    let request = Request::get(format!("{}/v1/models", mock.url()))
        .header(HOST, mock.addr.to_string())
        .body(full(""))
        .unwrap();
    let err = send(&connector(), Some((1004, &tls)), request)
        .await
        .err()
        .expect("refused");
    assert_eq!(
        err.to_string(),
        format!(
            "TLS handshake with {} failed: invalid peer certificate: UnknownIssuer",
            mock.addr
        )
    );
}
