//! End to end: `https://` upstreams through the real binary against TLS mocks with certificates
//! made at test time. HTTP/2 capacity (no queueing past the peer's `max_concurrent_streams`),
//! HTTP/1.1-only upstreams, refused certificates (untrusted, expired, another host's) answered
//! 502 naming TLS and the host, mTLS, per-provider `tls` blocks and TLS file errors.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{send, Gateway, Options, Reply, Req, TempDir, BIN};
use keygate_mock::certs::{CertPair, TestCa, LOCAL_NAMES};
use keygate_mock::{MockConfig, MockServer};
use serde_json::json;

const KEY: &str = "sk-upstream-tls-test-key-0123456789";

/// A CA on disk and a mock serving `leaf` over TLS with `config`'s other settings; with
/// `client_ca`, the mock requires client certificates from `ca`.
struct Upstream {
    mock: MockServer,
    ca_file: PathBuf,
    dir: TempDir,
}

async fn upstream(ca: &TestCa, leaf: CertPair, config: MockConfig) -> Upstream {
    upstream_with(ca, leaf, config, false).await
}

async fn upstream_with(
    ca: &TestCa,
    leaf: CertPair,
    config: MockConfig,
    client_ca: bool,
) -> Upstream {
    let dir = TempDir::new("upstream-tls");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let mut config = config.with_tls(leaf.cert_pem, leaf.key_pem);
    if client_ca {
        config = config.with_client_ca(ca.cert_pem());
    }
    let mock = MockServer::start(config).await.expect("mock starts");
    Upstream { mock, ca_file, dir }
}

/// A gateway whose only rule is `ai-gateway` with `provider` (indented YAML of one provider
/// entry), OpenAI pointed at `mock`, and `args`.
fn gateway(mock: &MockServer, provider: &str, args: &[String]) -> Gateway {
    let provider: String = provider
        .lines()
        .map(|l| format!("              {l}\n"))
        .collect();
    let policy = format!(
        "on_http_request:\n  - actions:\n      - type: ai-gateway\n        config:\n          providers:\n{provider}"
    );
    let mut all = vec![
        "--provider-url".to_owned(),
        format!("openai={}", mock.openai_base_url()),
    ];
    all.extend_from_slice(args);
    Gateway::start_with(
        &policy,
        Options {
            args: all,
            ..Options::default()
        },
    )
}

fn openai_provider() -> String {
    format!("- id: openai\n  api_keys:\n    - value: {KEY}\n")
}

fn ca_flag(upstream: &Upstream) -> Vec<String> {
    vec![
        "--upstream-ca-file".to_owned(),
        upstream.ca_file.display().to_string(),
    ]
}

async fn chat(gw: &Gateway, stream: bool) -> Reply {
    let body = json!({
        "model": "gpt-4o",
        "stream": stream,
        "messages": [{"role": "user", "content": "a reply long enough for six chunks"}],
    });
    send(gw.addr, Req::post("/v1/chat/completions", body.to_string()))
        .await
        .expect("request")
}

/// One streamed chat alone, then `n` at once; the burst must take less than twice as long.
async fn streams_do_not_queue(config: MockConfig, n: usize) {
    let ca = TestCa::new("capacity CA");
    let config = config
        .with_chunks(6)
        .with_chunk_delay(Duration::from_millis(500))
        .with_max_records(0);
    let up = upstream(&ca, ca.server_cert(&LOCAL_NAMES), config).await;
    let gw = gateway(&up.mock, &openai_provider(), &ca_flag(&up));
    let started = Instant::now();
    let reply = chat(&gw, true).await;
    let single = started.elapsed();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().contains("data: [DONE]"), "{}", reply.text());
    let started = Instant::now();
    let burst: Vec<_> = (0..n)
        .map(|_| {
            let addr = gw.addr;
            tokio::spawn(async move {
                let body = json!({
                    "model": "gpt-4o",
                    "stream": true,
                    "messages": [{"role": "user", "content": "a reply long enough for six chunks"}],
                });
                send(addr, Req::post("/v1/chat/completions", body.to_string())).await
            })
        })
        .collect();
    for reply in burst {
        let reply = reply.await.unwrap().expect("request");
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(reply.text().contains("data: [DONE]"));
    }
    let all = started.elapsed();
    assert!(
        all < single * 2,
        "{n} streams took {all:?}, one took {single:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_upstream_carries_300_streams_past_its_stream_limit_without_queueing() {
    streams_do_not_queue(MockConfig::default().with_max_concurrent_streams(100), 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_only_tls_upstream_carries_300_streams_at_once() {
    streams_do_not_queue(MockConfig::default().with_http1_only(), 300).await;
}

/// Asserts a prompt 502 JSON error naming TLS, the host and `cause`, also in the access log.
async fn refused(gw: &Gateway, up: &Upstream, cause: &str) {
    let started = Instant::now();
    let reply = chat(gw, false).await;
    assert!(started.elapsed() < Duration::from_secs(3), "prompt");
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let error = &reply.json()["error"];
    assert_eq!(error["code"], "ERR_KEYGATE_3800", "{error}");
    let message = error["message"].as_str().unwrap();
    let expected = format!(
        "TLS handshake with {} failed: invalid peer certificate: ",
        up.mock.addr
    );
    assert!(message.contains(&expected), "{message}");
    assert!(message.contains(cause), "{message}");
    assert!(!message.contains(KEY), "{message}");
    let logged = r#""error":"provider unreachable: "#;
    assert!(
        gw.wait_for_output(logged, Duration::from_secs(3)),
        "{}",
        gw.output()
    );
    let line = gw
        .output()
        .lines()
        .find(|l| l.contains(logged))
        .unwrap()
        .to_owned();
    assert!(line.contains(&expected) && line.contains(cause), "{line}");
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_502_naming_tls_and_the_host() {
    let ca = TestCa::new("unknown CA");
    let up = upstream(&ca, ca.server_cert(&LOCAL_NAMES), MockConfig::default()).await;
    let gw = gateway(&up.mock, &openai_provider(), &[]);
    refused(&gw, &up, "UnknownIssuer").await;

    // The plain proxy says the same.
    let proxy = Gateway::start("on_http_request: []\n", &["--upstream", &up.mock.url()]);
    let reply = send(proxy.addr, Req::get("/v1/models")).await.unwrap();
    assert_eq!(reply.status, 502);
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        message,
        format!(
            "upstream unreachable: TLS handshake with {} failed: invalid peer certificate: UnknownIssuer",
            up.mock.addr
        )
    );
    assert!(proxy.wait_for_output(&message, Duration::from_secs(3)));
}

#[tokio::test]
async fn an_expired_certificate_is_a_502_naming_tls_and_the_host() {
    let ca = TestCa::new("expiry CA");
    let up = upstream(
        &ca,
        ca.expired_server_cert(&LOCAL_NAMES),
        MockConfig::default(),
    )
    .await;
    let gw = gateway(&up.mock, &openai_provider(), &ca_flag(&up));
    refused(&gw, &up, "expired").await;
}

#[tokio::test]
async fn another_hosts_certificate_is_a_502_naming_tls_and_the_host() {
    let ca = TestCa::new("wrong host CA");
    let up = upstream(
        &ca,
        ca.server_cert(&["other.example"]),
        MockConfig::default(),
    )
    .await;
    let gw = gateway(&up.mock, &openai_provider(), &ca_flag(&up));
    refused(&gw, &up, "not valid for name").await;
}

#[tokio::test]
async fn mtls_upstream_rejects_without_a_client_certificate_and_accepts_with_one() {
    let ca = TestCa::new("mtls CA");
    let leaf = ca.server_cert(&LOCAL_NAMES);
    let up = upstream_with(&ca, leaf, MockConfig::default(), true).await;
    let without = gateway(&up.mock, &openai_provider(), &ca_flag(&up));
    let reply = chat(&without, false).await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "ERR_KEYGATE_3800");

    let (cert, key) = ca
        .client_cert("keygate")
        .write(up.dir.path(), "client")
        .unwrap();
    let mut args = ca_flag(&up);
    args.extend([
        "--upstream-client-cert".to_owned(),
        cert.display().to_string(),
        "--upstream-client-key".to_owned(),
        key.display().to_string(),
    ]);
    let with = gateway(&up.mock, &openai_provider(), &args);
    let reply = chat(&with, false).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test]
async fn a_providers_tls_block_trusts_its_ca_without_the_global_flag() {
    let ca = TestCa::new("provider CA");
    let up = upstream(&ca, ca.server_cert(&LOCAL_NAMES), MockConfig::default()).await;
    let provider = format!(
        "{}  tls:\n    ca_file: {}\n",
        openai_provider(),
        up.ca_file.display()
    );
    let gw = gateway(&up.mock, &provider, &[]);
    let reply = chat(&gw, false).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json()["choices"][0]["message"]["content"],
        "a reply long enough for six chunks"
    );
}

#[test]
fn unusable_tls_files_are_clear_errors_at_load() {
    let dir = TempDir::new("tls-files");
    let missing = dir.path().join("missing.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let policy = dir.path().join("policy.yml");
    for (tls, field) in [
        (format!("ca_file: {}", missing.display()), "tls.ca_file"),
        (format!("ca_file: {}", garbage.display()), "tls.ca_file"),
        (
            format!("client_cert_file: {}", garbage.display()),
            "tls.client_cert_file",
        ),
        (
            "certificate: x".to_owned(),
            "tls.certificate: unknown field",
        ),
    ] {
        std::fs::write(
            &policy,
            format!(
                "on_http_request:\n  - actions:\n      - type: ai-gateway\n        config:\n          providers:\n            - id: openai\n              tls: {{{tls}}}\n"
            ),
        )
        .unwrap();
        let output = Command::new(BIN)
            .args(["policy", "check"])
            .arg(&policy)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("providers[0].{field}")),
            "{field}: {stderr}"
        );
    }

    std::fs::write(&policy, "on_http_request: []\n").unwrap();
    let output = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--policy")
        .arg(&policy)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--upstream-ca-file")
        .arg(&garbage)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: cannot use the upstream TLS file {}",
            garbage.display()
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_upstream_that_never_answers_the_handshake_times_out_at_the_connect_timeout() {
    // Accepts connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let upstream = format!("https://{addr}");
    let gw = Gateway::start(
        "on_http_request: []\n",
        &[
            "--upstream",
            &upstream,
            "--upstream-connect-timeout",
            "500ms",
        ],
    );
    let started = Instant::now();
    let reply = send(gw.addr, Req::get("/")).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(reply.status, 502);
    assert_eq!(
        reply.json()["error"]["message"],
        format!("upstream unreachable: connecting to {addr} timed out after 0.5s")
    );
}
