//! Shared end-to-end test support: start the real `keygate` binary on loopback ports, an
//! upstream that echoes what it receives, vault setup through the real CLI, and a small HTTP/1.1
//! client that can pick its source address (127.0.0.2, ...).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keygate_mock::certs::{TestCa, LOCAL_NAMES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

pub const BIN: &str = env!("CARGO_BIN_EXE_keygate");

/// The seed guide's authorization rule (Bearer token checked against the vault secret
/// `gateway-auth/access-token`), opening an `on_http_request` list tests extend with their own rules.
pub const SEED_BEARER_RULE: &str = r#"
on_http_request:
  # Reject unauthorized requests
  - expressions:
      - req.headers['authorization'][0] != 'Bearer ' + secrets.get('gateway-auth', 'access-token')
    actions:
      - type: custom-response
        config:
          status_code: 401
          headers:
            content-type: application/json
          body: '{"error": {"message": "Invalid or missing authorization token", "type": "authentication_error"}}'
"#;

/// `keygate policy check` on the policy text `policy`: (exit code, stderr).
pub fn policy_check(policy: &str) -> (Option<i32>, String) {
    let dir = TempDir::new("check");
    let path = dir.path().join("policy.yml");
    std::fs::write(&path, policy).expect("write policy");
    let output = Command::new(BIN)
        .args(["policy", "check"])
        .arg(&path)
        .output()
        .expect("run keygate policy check");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A unique scratch directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "keygate-test-{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `DIR/cert.pem` and `DIR/key.pem`: a certificate for 127.0.0.1 and localhost signed by
/// a new CA named `ca_name` (whose certificate is returned, PEM).
pub fn make_cert(dir: &Path, ca_name: &str) -> String {
    let ca = TestCa::new(ca_name);
    let leaf = ca.server_cert(&LOCAL_NAMES);
    std::fs::write(dir.join("cert.pem"), leaf.cert_pem).expect("write cert");
    std::fs::write(dir.join("key.pem"), leaf.key_pem).expect("write key");
    ca.cert_pem()
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Runs `keygate api ...` against `data_dir` and returns its JSON output, `null` when it prints
/// nothing (panics on failure).
pub fn api(data_dir: &Path, args: &[&str]) -> serde_json::Value {
    let output = Command::new(BIN)
        .arg("api")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("KEYGATE_MASTER_KEY")
        .output()
        .expect("run keygate api");
    assert!(
        output.status.success(),
        "keygate api {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    if output.stdout.is_empty() {
        return serde_json::Value::Null; // `delete` prints nothing
    }
    serde_json::from_slice(&output.stdout).expect("api output is JSON")
}

/// Stores `secrets` (vault, name, value) in `data_dir` through the CLI, creating vaults as needed.
pub fn seed_secrets(data_dir: &Path, secrets: &[(&str, &str, &str)]) {
    let mut vaults: Vec<String> = Vec::new();
    for (vault, name, value) in secrets {
        if !vaults.iter().any(|v| v == vault) {
            api(data_dir, &["vaults", "create", "--name", vault]);
            vaults.push(vault.to_string());
        }
        api(
            data_dir,
            &[
                "secrets",
                "create",
                "--name",
                name,
                "--value",
                value,
                "--vault-name",
                vault,
            ],
        );
    }
}

/// A running `keygate serve`, killed on drop.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub policy_path: PathBuf,
    output: Arc<Mutex<String>>,
    pub dir: TempDir,
    /// The `--data-dir` it runs with.
    pub data_dir: PathBuf,
}

/// Options for [`Gateway::start_with`].
#[derive(Default)]
pub struct Options<'a> {
    pub args: Vec<String>,
    pub data_dir: Option<&'a Path>,
    pub listen_host: Option<&'a str>,
}

impl Gateway {
    /// Starts the gateway on `policy` with extra CLI `args`.
    pub fn start(policy: &str, args: &[&str]) -> Self {
        Self::start_with(
            policy,
            Options {
                args: args.iter().map(|a| a.to_string()).collect(),
                ..Options::default()
            },
        )
    }

    /// Starts the gateway on `policy` and data dir `data`, with the built-in `openai` and
    /// `anthropic` providers answered by the mock provider at `mock_base_url` (its `/v1` URL),
    /// and `extra` CLI flags.
    pub fn start_on_mock(policy: &str, mock_base_url: &str, data: &Path, extra: &[String]) -> Self {
        let mut args = Vec::with_capacity(4 + extra.len());
        for provider in ["openai", "anthropic"] {
            args.push("--provider-url".to_owned());
            args.push(format!("{provider}={mock_base_url}"));
        }
        args.extend_from_slice(extra);
        Self::start_with(
            policy,
            Options {
                args,
                data_dir: Some(data),
                ..Options::default()
            },
        )
    }

    pub fn start_with(policy: &str, options: Options<'_>) -> Self {
        let dir = TempDir::new("gw");
        let policy_path = dir.path().join("policy.yml");
        std::fs::write(&policy_path, policy).expect("write policy");
        let data_dir = options
            .data_dir
            .map_or_else(|| dir.path().join("data"), Path::to_owned);
        let host = options.listen_host.unwrap_or("127.0.0.1");
        // A port found free can be taken (by another test's client socket) before keygate binds
        // it: then keygate exits with "Address already in use", and it starts again on new ports.
        for attempt in 1.. {
            let addr: SocketAddr = format!("{host}:{}", free_port())
                .parse()
                .expect("listen addr");
            let admin: SocketAddr = format!("127.0.0.1:{}", free_port())
                .parse()
                .expect("admin addr");
            let mut child = Command::new(BIN)
                .arg("serve")
                .arg("--policy")
                .arg(&policy_path)
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--admin-listen")
                .arg(admin.to_string())
                .arg("--data-dir")
                .arg(&data_dir)
                .args(&options.args)
                .env_remove("KEYGATE_MASTER_KEY")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn keygate serve");
            let output = Arc::new(Mutex::new(String::new()));
            for stream in [
                Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
                Box::new(child.stderr.take().expect("stderr")),
            ] {
                let output = output.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(stream).lines().map_while(Result::ok) {
                        let mut out = output.lock().expect("output lock");
                        out.push_str(&line);
                        out.push('\n');
                    }
                });
            }
            match wait_ready(&mut child, addr, admin, &output) {
                Ok(()) => {
                    return Self {
                        child,
                        addr,
                        admin,
                        policy_path,
                        output,
                        dir,
                        data_dir,
                    }
                }
                Err(printed) if attempt < 3 && printed.contains("Address already in use") => {}
                Err(printed) => panic!("keygate exited early:\n{printed}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// Names of the gateway process's threads (Linux `/proc`, at most 15 bytes each).
    pub fn thread_names(&self) -> Vec<String> {
        let tasks = format!("/proc/{}/task", self.child.id());
        std::fs::read_dir(tasks)
            .map(|entries| {
                entries
                    .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
                    .map(|name| name.trim().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The admin token the dashboard and `/v1/usage` require (DATA_DIR/admin-token, which the
    /// gateway creates on first start).
    pub fn admin_token(&self) -> String {
        let path = self.data_dir.join("admin-token");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
            .trim()
            .to_owned()
    }

    /// Everything the process printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output.lock().expect("output lock").clone()
    }

    /// The URL of `path` on the client listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} failed");
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits until the output contains `needle`.
    pub fn wait_for_output(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.output().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until both listeners of a starting gateway accept; `Err` with what it printed when the
/// process exited first.
fn wait_ready(
    child: &mut Child,
    addr: SocketAddr,
    admin: SocketAddr,
    output: &Mutex<String>,
) -> Result<(), String> {
    let printed = || output.lock().expect("output lock").clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            // Let the output readers catch the last lines.
            std::thread::sleep(Duration::from_millis(50));
            return Err(format!("({status})\n{}", printed()));
        }
        if std::net::TcpStream::connect(admin).is_ok() && std::net::TcpStream::connect(addr).is_ok()
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("keygate did not start:\n{}", printed());
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.text()))
    }
}

/// A request to send with [`send`].
pub struct Req<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: Vec<(&'a str, String)>,
    pub body: Vec<u8>,
    /// Local source address (e.g. 127.0.0.2); default: the OS's choice.
    pub from: Option<IpAddr>,
}

impl<'a> Req<'a> {
    pub fn get(path: &'a str) -> Self {
        Self {
            method: "GET",
            path,
            headers: Vec::new(),
            body: Vec::new(),
            from: None,
        }
    }

    pub fn post(path: &'a str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            method: "POST",
            path,
            headers: vec![("content-type", "application/json".into())],
            body: body.into(),
            from: None,
        }
    }

    pub fn header(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    pub fn from(mut self, ip: &str) -> Self {
        self.from = Some(ip.parse().expect("source ip"));
        self
    }
}

/// Sends one HTTP/1.1 request on a fresh connection and reads the whole response.
pub async fn send(addr: SocketAddr, req: Req<'_>) -> std::io::Result<Reply> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = req.from {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let mut stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n",
        req.method, req.path
    );
    for (name, value) in &req.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", req.body.len()));
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&req.body).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> std::io::Result<Reply> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    }
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(
            std::str::from_utf8(&data[..line_end])
                .ok()?
                .split(';')
                .next()?
                .trim(),
            16,
        )
        .ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// What the echo upstream received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, Vec<String>>,
    pub body: Vec<u8>,
}

/// An HTTP upstream that answers 200 (or the status [`EchoUpstream::set_status`] chose) with a
/// JSON echo and records every request; a request header `x-delay-ms: N` delays the answer.
pub struct EchoUpstream {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    task: tokio::task::JoinHandle<()>,
}

impl EchoUpstream {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let record = received.clone();
        let status = Arc::new(AtomicU16::new(200));
        let answer = status.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let record = record.clone();
                let answer = answer.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let record = record.clone();
                            let status = answer.load(Ordering::Relaxed);
                            async move {
                                use http_body_util::BodyExt;
                                let (head, body) = request.into_parts();
                                if let Some(ms) = head
                                    .headers
                                    .get("x-delay-ms")
                                    .and_then(|v| v.to_str().ok()?.parse().ok())
                                {
                                    tokio::time::sleep(Duration::from_millis(ms)).await;
                                }
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
                                let echo = serde_json::json!({
                                    "method": head.method.as_str(),
                                    "path": head.uri.to_string(),
                                    "headers": headers,
                                    "body": String::from_utf8_lossy(&body),
                                });
                                record.lock().expect("record lock").push(Received {
                                    method: head.method.to_string(),
                                    path: head.uri.to_string(),
                                    headers,
                                    body,
                                });
                                let response = hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .header("x-upstream", "echo")
                                    .body(http_body_util::Full::new(bytes::Bytes::from(
                                        echo.to_string(),
                                    )))
                                    .expect("response");
                                Ok::<_, std::convert::Infallible>(response)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            received,
            status,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers every later request with `status` (and the same echo body).
    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::Relaxed);
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().expect("record lock").clone()
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
