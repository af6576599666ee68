//! A tiny HTTP client for the mock's tests.
#![allow(dead_code)] // each test file uses a different subset

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use keygate_mock::{MockConfig, MockServer};
use serde_json::Value;
use tokio::net::TcpStream;

/// A complete response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("response body is JSON")
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).expect("response body is UTF-8")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn start() -> MockServer {
    MockServer::start(MockConfig::default())
        .await
        .expect("mock starts")
}

/// Sends one HTTP/1.1 request; `Err` when the connection fails before or during the response.
pub async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Resp, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req
        .body(Full::new(Bytes::from(body.to_owned())))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(Resp {
        status,
        headers,
        body,
    })
}

pub async fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: Value) -> Resp {
    send(addr, Method::POST, path, headers, &body.to_string())
        .await
        .expect("request succeeds")
}

pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    send(addr, Method::GET, path, headers, "")
        .await
        .expect("request succeeds")
}

/// One server-sent event: its `event:` name (if any) and its `data:` payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: Option<String>,
    pub data: String,
}

/// Parses an SSE body strictly: events are separated by a blank line, every line is `event: ` or
/// `data: `, and the body ends with a blank line.
pub fn sse_events(body: &str) -> Vec<Event> {
    assert!(body.ends_with("\n\n"), "stream must end with a blank line");
    body.trim_end_matches('\n')
        .split("\n\n")
        .map(|block| {
            let mut name = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    assert!(name.is_none(), "one event line per event");
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    assert!(data.is_none(), "one data line per event");
                    data = Some(d.to_owned());
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            Event {
                name,
                data: data.expect("every event has data"),
            }
        })
        .collect()
}

pub fn data_json(event: &Event) -> Value {
    serde_json::from_str(&event.data).expect("event data is JSON")
}

/// A child process of a test (a mock binary), killed and reaped when the test ends, passed or
/// not.
pub struct Reap(pub std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The mock's token estimate: one token per four characters, at least one.
pub fn est(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

/// The chunks of an OpenAI `data:`-only stream, checking that it ends with `data: [DONE]`.
pub fn chat_chunks(body: &str) -> Vec<Value> {
    let events = sse_events(body);
    assert!(events.iter().all(|e| e.name.is_none()), "data-only events");
    let (done, chunks) = events.split_last().expect("events");
    assert_eq!(done.data, "[DONE]");
    chunks.iter().map(data_json).collect()
}

/// The events of a named stream (Anthropic, Responses) as (name, data), checking that every
/// data's `type` matches its `event:` line.
pub fn named_events(body: &str) -> Vec<(String, Value)> {
    sse_events(body)
        .iter()
        .map(|e| {
            let name = e.name.clone().expect("named event");
            let data = data_json(e);
            assert_eq!(data["type"].as_str(), Some(name.as_str()), "type matches");
            (name, data)
        })
        .collect()
}
