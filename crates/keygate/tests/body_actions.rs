//! End to end through the real binary: actions that rewrite the response body
//! (`compress-response`) and the `http-request` side request. Each action family has its own
//! clearly named tests; the servers below are the tests' own loopback servers.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{send, Gateway, Received, Req};
use http_body_util::{BodyExt, Full};
use tokio::net::TcpListener;

/// 64 KiB of text: compressible, and larger than one read of the upstream body.
fn big_text() -> Vec<u8> {
    let line = b"keygate compresses responses for clients that ask for it. ";
    line.iter().copied().cycle().take(64 * 1024).collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("gzip");
    encoder.finish().expect("gzip")
}

fn decode(coding: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => flate2::read::GzDecoder::new(data).read_to_end(&mut out),
        "deflate" => flate2::read::ZlibDecoder::new(data).read_to_end(&mut out),
        "br" => brotli::Decompressor::new(data, 4096).read_to_end(&mut out),
        "zstd" => zstd::stream::read::Decoder::new(data).and_then(|mut d| d.read_to_end(&mut out)),
        other => panic!("unexpected coding {other}"),
    }
    .unwrap_or_else(|err| panic!("the {coding} body does not decode: {err}"));
    out
}

/// A loopback server for these tests, recording every request:
/// - `/big`: 64 KiB of text with a Content-Length;
/// - `/gzipped`: that text gzip-encoded already (`Content-Encoding: gzip`);
/// - `/events`: a `text/event-stream` of two events;
/// - `/lookup`: `{"tier": "gold", "limit": 7}`;
/// - `/flaky/<key>`: 500 for the first two requests per key, then `ok`;
/// - `/slow`: answers after 3 s;
/// - anything else: 200 `upstream`.
struct TestServer {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let flaky = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
        let record = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let (record, flaky) = (record.clone(), flaky.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        answer(request, record.clone(), flaky.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            received,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests_to(&self, prefix: &str) -> Vec<Received> {
        let received = self.received.lock().expect("lock");
        received
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .cloned()
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    request: hyper::Request<hyper::body::Incoming>,
    record: Arc<Mutex<Vec<Received>>>,
    flaky: Arc<Mutex<HashMap<String, usize>>>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (head, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let mut headers: HashMap<String, Vec<String>> = HashMap::new();
    for (name, value) in &head.headers {
        headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(value.to_str().unwrap_or_default().to_owned());
    }
    let path = head.uri.to_string();
    record.lock().expect("lock").push(Received {
        method: head.method.to_string(),
        path: path.clone(),
        headers,
        body,
    });
    let response = hyper::Response::builder();
    let response = match head.uri.path() {
        "/big" => response
            .header("content-type", "text/plain")
            .header("content-length", big_text().len())
            .body(Full::from(big_text())),
        "/gzipped" => response
            .header("content-type", "text/plain")
            .header("content-encoding", "gzip")
            .body(Full::from(gzip(&big_text()))),
        "/events" => response
            .header("content-type", "text/event-stream")
            .body(Full::from(
                "data: one two three four five six seven eight nine ten\n\n".repeat(20),
            )),
        "/lookup" => response
            .header("content-type", "application/json")
            .body(Full::from(r#"{"tier": "gold", "limit": 7}"#)),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            response.body(Full::from("late"))
        }
        other if other.starts_with("/flaky/") => {
            let count = {
                let mut counts = flaky.lock().expect("lock");
                let count = counts.entry(other.to_owned()).or_default();
                *count += 1;
                *count
            };
            if count <= 2 {
                response.status(500).body(Full::from("try again"))
            } else {
                response.body(Full::from("ok"))
            }
        }
        _ => response.body(Full::from("upstream")),
    };
    Ok(response.expect("response"))
}

/// `GET path` with `Accept-Encoding: accept_encoding`.
async fn get_encoded(gateway: &Gateway, path: &str, accept_encoding: &str) -> common::Reply {
    send(
        gateway.addr,
        Req::get(path).header("accept-encoding", accept_encoding),
    )
    .await
    .expect("send")
}

fn start(policy: &str, upstream: &TestServer) -> Gateway {
    Gateway::start(policy, &["--upstream", &upstream.url("")])
}

// ---- compress-response -------------------------------------------------------------------

const COMPRESS_POLICY: &str = r#"
on_http_response:
  - actions:
      - type: compress-response
        config:
          algorithms: [zstd, br, gzip, deflate]
      - type: add-headers
        config:
          headers:
            x-negotiated: "${actions.ngrok.compress.negotiated_algorithm}"
            x-already-compressed: "${string(actions.ngrok.compress.already_compressed)}"
"#;

#[tokio::test]
async fn compress_response_each_algorithm_decodes_to_the_original() {
    let upstream = TestServer::start().await;
    let gateway = start(COMPRESS_POLICY, &upstream);
    for coding in ["gzip", "br", "zstd", "deflate"] {
        let reply = send(
            gateway.addr,
            Req::get("/big").header("accept-encoding", format!("{coding}, identity;q=0.5")),
        )
        .await
        .expect("send");
        assert_eq!(reply.status, 200, "{coding}");
        assert_eq!(reply.header("content-encoding"), Some(coding));
        assert_eq!(reply.header("vary"), Some("Accept-Encoding"), "{coding}");
        assert_eq!(reply.header("content-length"), None, "{coding}");
        assert_eq!(reply.header("x-negotiated"), Some(coding));
        assert!(
            reply.body.len() < big_text().len() / 10,
            "{coding}: {}",
            reply.body.len()
        );
        assert_eq!(decode(coding, &reply.body), big_text(), "{coding}");
    }
}

#[tokio::test]
async fn compress_response_q_values_choose_the_algorithm() {
    let upstream = TestServer::start().await;
    let gateway = start(COMPRESS_POLICY, &upstream);
    let reply = get_encoded(&gateway, "/big", "zstd;q=0, br;q=0.4, gzip;q=0.9").await;
    assert_eq!(reply.header("content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &reply.body), big_text());
    // Nothing acceptable: untouched, but caches still learn the answer depends on the header.
    let reply = get_encoded(&gateway, "/big", "*;q=0, identity").await;
    assert_eq!(reply.header("content-encoding"), None);
    assert_eq!(reply.header("vary"), Some("Accept-Encoding"));
    assert_eq!(reply.header("x-negotiated"), Some(""));
    assert_eq!(reply.body, big_text());
}

#[tokio::test]
async fn compress_response_leaves_an_encoded_body_alone() {
    let upstream = TestServer::start().await;
    let gateway = start(COMPRESS_POLICY, &upstream);
    let reply = get_encoded(&gateway, "/gzipped", "br, zstd").await;
    assert_eq!(reply.header("content-encoding"), Some("gzip"));
    assert_eq!(reply.header("x-already-compressed"), Some("true"));
    assert_eq!(reply.body, gzip(&big_text()));
}

#[tokio::test]
async fn compress_response_leaves_event_streams_alone_unless_asked() {
    let upstream = TestServer::start().await;
    let gateway = start(COMPRESS_POLICY, &upstream);
    let reply = get_encoded(&gateway, "/events", "gzip").await;
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    assert_eq!(reply.header("content-encoding"), None);
    assert!(
        reply.text().starts_with("data: one two"),
        "{}",
        reply.text()
    );

    let opted_in = "
on_http_response:
  - actions:
      - type: compress-response
        config:
          compress_event_streams: true
";
    let gateway = start(opted_in, &upstream);
    let reply = get_encoded(&gateway, "/events", "gzip").await;
    assert_eq!(reply.header("content-encoding"), Some("gzip"));
    let events = String::from_utf8(decode("gzip", &reply.body)).expect("utf-8");
    assert_eq!(events.matches("data: one two").count(), 20);
}

// ---- http-request ------------------------------------------------------------------------

#[tokio::test]
async fn http_request_result_feeds_later_actions() {
    let upstream = TestServer::start().await;
    let policy = format!(
        r#"
on_http_request:
  - actions:
      - type: http-request
        config:
          url: "{lookup}"
          method: POST
          headers:
            content-type: application/json
            x-path: "${{req.url.path}}"
          query_params:
            - key: user
              value: "${{req.headers['x-user'][0]}}"
          body: '{{"path": "${{req.url.path}}"}}'
      - type: set-vars
        config:
          vars:
            - lookup: "${{json.decode(actions.ngrok.http_request.res.body)}}"
      - type: add-headers
        config:
          headers:
            x-tier: "${{vars.lookup.tier}}"
            x-limit: "${{string(vars.lookup.limit)}}"
            x-side-status: "${{string(actions.ngrok.http_request.res.status_code)}}"
"#,
        lookup = upstream.url("/lookup")
    );
    let gateway = start(&policy, &upstream);
    let reply = send(
        gateway.addr,
        Req::get("/api/thing")
            .header("x-user", "ann smith")
            .from("127.0.0.7"),
    )
    .await
    .expect("send");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "upstream");

    // The side request: method, query, body and the headers Keygate adds.
    let side = upstream.requests_to("/lookup");
    assert_eq!(side.len(), 1);
    assert_eq!(side[0].method, "POST");
    assert_eq!(side[0].path, "/lookup?user=ann+smith");
    assert_eq!(side[0].body, br#"{"path": "/api/thing"}"#);
    let header = |name: &str| side[0].headers.get(name).map(|v| v[0].clone());
    assert_eq!(header("x-forwarded-for").as_deref(), Some("127.0.0.7"));
    assert_eq!(header("keygate-req-type").as_deref(), Some("http-request"));
    assert!(header("keygate-req-id").is_some_and(|id| !id.is_empty()));
    assert!(header("user-agent").is_some_and(|ua| ua.starts_with("keygate/")));
    assert_eq!(header("x-path").as_deref(), Some("/api/thing"));

    // What later actions read of the answer reached the upstream request.
    let forwarded = upstream.requests_to("/api/thing");
    assert_eq!(forwarded.len(), 1);
    let header = |name: &str| forwarded[0].headers.get(name).map(|v| v[0].clone());
    assert_eq!(header("x-tier").as_deref(), Some("gold"));
    assert_eq!(header("x-limit").as_deref(), Some("7"));
    assert_eq!(header("x-side-status").as_deref(), Some("200"));
}

#[tokio::test]
async fn http_request_retries_on_500_per_retry_condition() {
    let upstream = TestServer::start().await;
    let policy = format!(
        r#"
on_http_response:
  - actions:
      - type: http-request
        config:
          url: "{flaky}"
          retry_condition: "last_attempt.res.status_code >= 500 && attempts < 4"
      - type: add-headers
        config:
          headers:
            x-attempts: "${{string(size(actions.ngrok.http_request.attempts))}}"
            x-first: "${{string(actions.ngrok.http_request.attempts[0].response_status_code)}}"
            x-status: "${{string(actions.ngrok.http_request.res.status_code)}}"
            x-body: "${{actions.ngrok.http_request.res.body}}"
"#,
        flaky = upstream.url("/flaky/retry")
    );
    let gateway = start(&policy, &upstream);
    let reply = send(gateway.addr, Req::get("/")).await.expect("send");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-attempts"), Some("3"));
    assert_eq!(reply.header("x-first"), Some("500"));
    assert_eq!(reply.header("x-status"), Some("200"));
    assert_eq!(reply.header("x-body"), Some("ok"));
    assert_eq!(upstream.requests_to("/flaky/retry").len(), 3);

    // Without a retry_condition the 500 is the answer: no retry, and not a failure.
    let policy = format!(
        r#"
on_http_response:
  - actions:
      - type: http-request
        config:
          url: "{flaky}"
      - type: add-headers
        config:
          headers:
            x-status: "${{string(actions.ngrok.http_request.res.status_code)}}"
            x-error: "${{actions.ngrok.http_request.error.code}}"
"#,
        flaky = upstream.url("/flaky/once")
    );
    let gateway = start(&policy, &upstream);
    let reply = send(gateway.addr, Req::get("/")).await.expect("send");
    assert_eq!(reply.header("x-status"), Some("500"));
    assert_eq!(reply.header("x-error"), Some(""));
    assert_eq!(upstream.requests_to("/flaky/once").len(), 1);
}

fn timeout_policy(slow: &str, on_error: &str) -> String {
    format!(
        r#"
on_http_request:
  - actions:
      - type: http-request
        config:
          url: "{slow}"
          timeout: 1s
          on_error: {on_error}
      - type: add-headers
        config:
          headers:
            x-side-error: "${{actions.ngrok.http_request.error.code}}"
"#
    )
}

#[tokio::test]
async fn http_request_timeout_with_on_error_halt_answers_an_error() {
    let upstream = TestServer::start().await;
    let gateway = start(&timeout_policy(&upstream.url("/slow"), "halt"), &upstream);
    let started = std::time::Instant::now();
    let reply = send(gateway.addr, Req::get("/api/x")).await.expect("send");
    assert!(
        started.elapsed() < Duration::from_millis(2800),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(reply.status, 504, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["error"]["code"], "ERR_KEYGATE_3602");
    assert_eq!(body["error"]["type"], "timeout_error");
    assert!(
        upstream.requests_to("/api/x").is_empty(),
        "the request went upstream"
    );
}

#[tokio::test]
async fn http_request_timeout_with_on_error_continue_forwards() {
    let upstream = TestServer::start().await;
    let gateway = start(
        &timeout_policy(&upstream.url("/slow"), "continue"),
        &upstream,
    );
    let reply = send(gateway.addr, Req::get("/api/y")).await.expect("send");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "upstream");
    let forwarded = upstream.requests_to("/api/y");
    assert_eq!(forwarded.len(), 1);
    assert_eq!(
        forwarded[0]
            .headers
            .get("x-side-error")
            .map(|v| v[0].as_str()),
        Some("ERR_KEYGATE_3602")
    );
}
