//! The request record (in process and over HTTP), h2c, and shutdown.

mod common;

use bytes::Bytes;
use common::{get, post, send, start};
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use keygate_mock::{MockConfig, MockServer, RecordedRequest};
use serde_json::json;

#[tokio::test]
async fn records_method_path_headers_and_body() {
    let mock = start().await;
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    post(
        mock.addr,
        "/v1/chat/completions?trace=1",
        &[("authorization", "Bearer sk-server-key")],
        body.clone(),
    )
    .await;
    let records = mock.requests();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.seq, 1);
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.query.as_deref(), Some("trace=1"));
    assert_eq!(r.header("Authorization"), Some("Bearer sk-server-key"));
    assert_eq!(r.body_json(), Some(body));
    mock.clear_requests();
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn records_over_http_and_clear() {
    let mock = start().await;
    post(
        mock.addr,
        "/v1/messages",
        &[("x-api-key", "k1")],
        json!({"model": "c", "messages": []}),
    )
    .await;
    get(mock.addr, "/v1/models", &[]).await;
    let listed: Vec<RecordedRequest> =
        serde_json::from_slice(&get(mock.addr, "/_mock/requests", &[]).await.body)
            .expect("record list");
    assert_eq!(
        listed.len(),
        2,
        "the record endpoint itself is not recorded"
    );
    assert_eq!(listed[0].path, "/v1/messages");
    assert_eq!(listed[0].header("x-api-key"), Some("k1"));
    assert_eq!(listed[1].method, "GET");
    assert_eq!(listed, mock.requests());

    let cleared = send(mock.addr, Method::DELETE, "/_mock/requests", &[], "")
        .await
        .expect("answered");
    assert_eq!(cleared.status, 200);
    assert!(mock.requests().is_empty());
    let resp = send(mock.addr, Method::PUT, "/_mock/requests", &[], "")
        .await
        .expect("answered");
    assert_eq!(resp.status, 405);
}

#[tokio::test]
async fn record_cap_keeps_newest() {
    let mock = MockServer::start(MockConfig::default().with_max_records(2))
        .await
        .expect("starts");
    for model in ["a", "b", "c"] {
        post(
            mock.addr,
            "/v1/embeddings",
            &[],
            json!({"model": model, "input": "x", "dimensions": 1}),
        )
        .await;
    }
    let models: Vec<String> = mock
        .requests()
        .iter()
        .filter_map(|r| r.body_json()?["model"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(models, ["b", "c"]);
}

#[tokio::test]
async fn serves_h2c_with_prior_knowledge() {
    let mock = start().await;
    let stream = tokio::net::TcpStream::connect(mock.addr)
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "over h2"}]});
    let req = http::Request::post(format!("http://{}/v1/chat/completions", mock.addr))
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(v["choices"][0]["message"]["content"], "over h2");
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let mock = start().await;
    let addr = mock.addr;
    get(addr, "/v1/models", &[]).await;
    mock.shutdown().await;
    assert!(send(addr, Method::GET, "/v1/models", &[], "")
        .await
        .is_err());
}

#[tokio::test]
async fn start_reports_bind_errors() {
    let first = start().await;
    let err = MockServer::start(MockConfig::default().with_listen(first.addr))
        .await
        .expect_err("port in use");
    assert!(err.to_string().contains(&first.addr.to_string()));
}
