//! A tiny W3C WebDriver client for `chromedriver` on loopback: blocking HTTP/1.1 over a
//! `TcpStream`, JSON with `serde_json`. Just what the dashboard's browser test uses: sessions,
//! navigation, elements (find, type, click), scripts, screenshots and the browser's console log.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

/// The W3C id of an element reference in JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One JSON request to the driver: `(status, body["value"])`.
fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut stream = TcpStream::connect(addr).expect("connect to chromedriver");
    stream.set_nodelay(true).ok();
    stream.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write request");
    stream.write_all(body.as_bytes()).expect("write body");
    // chromedriver keeps the connection open: read the head, then what it announces.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let split = loop {
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break split;
        }
        let n = stream.read(&mut buf).expect("read response");
        assert!(
            n > 0,
            "chromedriver closed the connection without an answer"
        );
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse::<usize>().ok());
    loop {
        let have = raw.len() - split - 4;
        let complete = match length {
            Some(length) => have >= length,
            None => raw.ends_with(b"0\r\n\r\n"),
        };
        if complete {
            break;
        }
        let n = stream.read(&mut buf).expect("read response");
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, value.get("value").cloned().unwrap_or(Value::Null))
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        data = &data[end + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

/// A running `chromedriver`, stopped on drop.
pub struct Driver {
    child: Child,
    pub addr: SocketAddr,
}

impl Driver {
    pub fn start(chromedriver: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let driver = Driver { child, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(addr).is_ok() {
                let (_, status) = call(addr, "GET", "/status", None);
                if status["ready"] == true {
                    return driver;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A headless Chromium session that resolves only loopback names and keeps every console
    /// message.
    pub fn session(&self, chromium: &Path) -> Session {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--window-size=1400,1000",
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium.display().to_string(), "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let (status, value) = call(self.addr, "POST", "/session", Some(&capabilities));
        assert_eq!(status, 200, "new session: {value}");
        Session {
            addr: self.addr,
            id: value["sessionId"]
                .as_str()
                .expect("a session id")
                .to_owned(),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session, closed on drop.
pub struct Session {
    addr: SocketAddr,
    id: String,
}

impl Session {
    fn request(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, value) = call(
            self.addr,
            method,
            &format!("/session/{}{path}", self.id),
            body.as_ref(),
        );
        assert_eq!(status, 200, "{method} {path}: {value}");
        value
    }

    pub fn goto(&self, url: &str) {
        self.request("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub fn run(&self, script: &str, args: Value) -> Value {
        self.request(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Runs an async `script` whose last argument is the callback to call with the result.
    pub fn run_async(&self, script: &str, args: Value) -> Value {
        self.request(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Polls the expression `condition` until it is truthy; panics with `what` after `timeout`.
    pub fn wait_for(&self, condition: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let value = self.run(&format!("return !!({condition});"), json!([]));
            if value == true {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The first element matching `css`.
    pub fn find(&self, css: &str) -> String {
        let value = self.request(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        value[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {value}"))
            .to_owned()
    }

    pub fn click(&self, css: &str) {
        let element = self.find(css);
        self.request(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }

    /// Types `text` into the element matching `css` (after clearing it).
    pub fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.request(
            "POST",
            &format!("/element/{element}/clear"),
            Some(json!({})),
        );
        self.request(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// A PNG of the window, written to `path`.
    pub fn screenshot(&self, path: &Path) {
        let value = self.request("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().expect("base64"))
            .expect("a PNG");
        std::fs::write(path, png).expect("write the screenshot");
    }

    /// The browser's console messages since the last call (chromedriver's log endpoint), as
    /// `(level, message)`.
    pub fn console(&self) -> Vec<(String, String)> {
        let value = self.request("POST", "/se/log", Some(json!({"type": "browser"})));
        value
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| {
                        (
                            e["level"].as_str().unwrap_or_default().to_owned(),
                            e["message"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = call(self.addr, "DELETE", &format!("/session/{}", self.id), None);
    }
}
