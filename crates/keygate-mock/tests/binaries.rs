//! The `keygate-mock` and `keygate-load` binaries.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use common::{get, start, Reap};
use serde_json::Value;

#[tokio::test]
async fn mock_binary_serves_and_stops_on_sigterm() {
    let mut child = Reap(
        Command::new(env!("CARGO_BIN_EXE_keygate-mock"))
            .args(["--listen", "127.0.0.1:0", "--chunks", "2"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn keygate-mock"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("banner");
    let url = line
        .trim()
        .strip_prefix("keygate-mock listening on http://")
        .expect("banner names the address");
    let addr: SocketAddr = url.parse().expect("socket address");

    let models = get(addr, "/v1/models", &[]).await;
    assert_eq!(models.status, 200);
    let records: Value = get(addr, "/_mock/requests", &[]).await.json();
    assert_eq!(records[0]["path"], "/v1/models");

    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.0.wait().expect("wait");
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test]
async fn load_binary_prints_a_json_report() {
    let mock = start().await;
    let url = format!("{}/v1/chat/completions", mock.url());
    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi there"}]}"#;
    // Run the blocking child off the runtime thread so the in-process mock keeps serving.
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_keygate-load"))
            .args([
                "--url",
                &url,
                "--rate",
                "50",
                "--duration",
                "0.4",
                "--warmup",
                "0.1",
            ])
            .args([
                "--connections",
                "2",
                "--body",
                body,
                "--stream",
                "--label",
                "t",
            ])
            .args(["-H", "content-type: application/json"])
            .output()
    })
    .await
    .expect("join")
    .expect("run keygate-load");
    assert!(output.status.success(), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    assert_eq!(report["label"], "t");
    assert_eq!(report["mode"], "fixed");
    assert_eq!(report["errors"], 0);
    assert_eq!(report["ok"], 20);
    assert!(report["ttft"]["p50_ms"].is_number());
    assert!(mock
        .requests()
        .iter()
        .all(|r| r.header("content-type") == Some("application/json")));
}

#[test]
fn load_binary_rejects_bad_arguments() {
    for args in [
        vec!["--url", "https://x/"],
        vec!["--url", "http://127.0.0.1:1/", "--header", "no-colon"],
        vec!["--url", "http://127.0.0.1:1/", "--rate=-5"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_keygate-load"))
            .args(&args)
            .output()
            .expect("run keygate-load");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&output.stderr).starts_with("keygate-load: "));
    }
}

#[test]
fn mock_binary_writes_test_certificates_it_can_serve_with() {
    let dir = std::env::temp_dir().join(format!("keygate-mock-certs-{}", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_keygate-mock"))
        .arg("--write-test-certs")
        .arg(&dir)
        .status()
        .expect("run keygate-mock");
    assert!(status.success());
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect(name);
    let (ca, cert, key) = (read("ca.pem"), read("server.crt"), read("server.key"));
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----") && cert != ca);
    assert!(key.contains("PRIVATE KEY-----"));
    // The mock accepts the pair it wrote.
    let mut child = Reap(
        Command::new(env!("CARGO_BIN_EXE_keygate-mock"))
            .args(["--listen", "127.0.0.1:0", "--tls-cert"])
            .arg(dir.join("server.crt"))
            .arg("--tls-key")
            .arg(dir.join("server.key"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn keygate-mock"),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("banner");
    assert!(
        line.starts_with("keygate-mock listening on https://"),
        "{line}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
