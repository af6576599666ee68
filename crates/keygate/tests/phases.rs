//! End to end: the `on_tcp_connect` and `on_event_stream_message` phases through the real binary.
//! `on_tcp_connect` drops refused clients before any HTTP is read; `on_event_stream_message`
//! rewrites Server-Sent Events as they stream, whatever the network does to their bytes.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{send, Gateway, Req};
use http_body_util::StreamBody;
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

/// Connects from `from` and sends a request; returns what the gateway wrote back (empty when it
/// closed the connection without answering).
async fn raw_exchange(addr: SocketAddr, from: &str) -> Vec<u8> {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    // The gateway may close before reading: a write error is part of the refusal.
    let _ = stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await;
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply))
        .await
        .expect("the gateway answers or closes");
    reply
}

#[tokio::test(flavor = "multi_thread")]
async fn on_tcp_connect_drops_refused_clients_before_http() {
    let policy = r#"
on_tcp_connect:
  - actions:
      - type: restrict-ips
        config:
          allow: [127.0.0.0/8]
          deny: [127.0.0.3/32]
  - expressions:
      - conn.client_ip == '127.0.0.4'
    actions:
      - type: log
        config:
          metadata:
            refused: ${conn.client_ip}
      - type: deny
on_http_request:
  - actions:
      - type: custom-response
        config:
          status_code: 200
          body: hello ${conn.client_ip}
"#;
    let gw = Gateway::start(policy, &[]);

    let allowed = raw_exchange(gw.addr, "127.0.0.2").await;
    let allowed = String::from_utf8_lossy(&allowed);
    assert!(allowed.starts_with("HTTP/1.1 200"), "{allowed}");
    assert!(allowed.ends_with("hello 127.0.0.2"), "{allowed}");

    for refused in ["127.0.0.3", "127.0.0.4"] {
        let reply = raw_exchange(gw.addr, refused).await;
        assert!(
            reply.is_empty(),
            "{refused} must get no HTTP answer, got {:?}",
            String::from_utf8_lossy(&reply)
        );
    }

    let metrics = send(gw.admin, Req::get("/metrics")).await.unwrap().text();
    assert!(
        metrics.contains("keygate_connections_refused_total 2"),
        "{metrics}"
    );
    assert!(gw.wait_for_output(
        "connection refused by on_tcp_connect",
        Duration::from_secs(5)
    ));
    let output = gw.output();
    assert!(output.contains("127.0.0.4"), "{output}");
    // Refused connections never reach the HTTP layer: no access-log line for them.
    assert_eq!(
        output.matches(r#""message":"request""#).count(),
        1,
        "{output}"
    );
}

#[test]
fn on_tcp_connect_refuses_actions_of_the_http_phases() {
    let (code, stderr) = common::policy_check(
        "on_tcp_connect:\n  - actions:\n      - type: custom-response\n        config:\n          body: no\n",
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("action 'custom-response' cannot run in on_tcp_connect"),
        "{stderr}"
    );
}

/// An upstream that answers every request with `chunks` as an event stream, each chunk a
/// separate write 30 ms after the previous one (so the gateway reads them separately).
async fn sse_upstream(chunks: &'static [&'static str]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_request| async move {
                    let (tx, rx) =
                        tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
                    tokio::spawn(async move {
                        for chunk in chunks {
                            tokio::time::sleep(Duration::from_millis(30)).await;
                            if tx
                                .send(Ok(Frame::data(Bytes::from_static(chunk.as_bytes()))))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                    });
                    let body = StreamBody::new(tokio_stream_from(rx));
                    Ok::<_, Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "text/event-stream")
                            .body(body)
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// The receiving half of a channel as a stream of frames.
fn tokio_stream_from<T>(rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_find_replace_rewrites_events_split_across_reads() {
    // A card number cut by the network in the middle, an event in CRLF style, a `data` field
    // over two lines with the number across them, a comment and an id kept as they are.
    static CHUNKS: &[&str] = &[
        ": keep-alive\n\nid: 1\ndata: card 4111-1111-",
        "1111-1111 ok\n\n",
        "event: note\r\ndata: nothing here\r\n\r\n",
        "data: split 4111-1111\ndata: -1111-1111 end\n\n",
        "data: tail without end",
    ];
    let upstream = sse_upstream(CHUNKS).await;
    let policy = r#"
on_event_stream_message:
  - actions:
      - type: sse-find-replace
        config:
          replacements:
            - from: '\d{4}-\d{4}\s?-\d{4}-(\d{4})'
              to: '****-$1'
            - field: event
              from: '^note$'
              to: 'redacted-note'
"#;
    let gw = Gateway::start(policy, &["--upstream", &format!("http://{upstream}")]);
    let reply = send(gw.addr, Req::get("/events")).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.text(),
        ": keep-alive\n\nid: 1\ndata: card ****-1111 ok\n\n\
         event: redacted-note\r\ndata: nothing here\r\n\r\n\
         data: split ****-1111 end\n\n\
         data: tail without end"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn event_stream_rules_see_the_request_and_skip_other_responses() {
    static CHUNKS: &[&str] = &["data: secret\n\n"];
    let upstream = sse_upstream(CHUNKS).await;
    let policy = r#"
on_event_stream_message:
  - expressions:
      - req.headers['x-redact'][0] == 'yes'
    actions:
      - type: sse-find-replace
        config:
          replacements:
            - from: secret
              to: '[redacted]'
"#;
    let gw = Gateway::start(policy, &["--upstream", &format!("http://{upstream}")]);
    let redacted = send(gw.addr, Req::get("/").header("x-redact", "yes"))
        .await
        .unwrap();
    assert_eq!(redacted.text(), "data: [redacted]\n\n");
    let kept = send(gw.addr, Req::get("/")).await.unwrap();
    assert_eq!(kept.text(), "data: secret\n\n");
}
