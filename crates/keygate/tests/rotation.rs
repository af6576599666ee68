//! The seed guide's "Rotating access tokens" steps against a running gateway while a client keeps
//! sending requests: no request fails, and at the end the old token is refused.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{api, seed_secrets, send, EchoUpstream, Gateway, Options, Req, TempDir};

const OLD: &str = "old-token-0123456789abcdef";
const NEW: &str = "new-token-fedcba9876543210";

const REJECT: &str = r#"
    actions:
      - type: custom-response
        config:
          status_code: 401
          headers:
            content-type: application/json
          body: '{"error": {"message": "Invalid or missing authorization token", "type": "authentication_error"}}'
"#;

fn single(secret: &str) -> String {
    format!("on_http_request:\n  - expressions:\n      - req.headers['authorization'][0] != 'Bearer ' + secrets.get('gateway-auth', '{secret}')\n{REJECT}")
}

fn both() -> String {
    format!(
        "on_http_request:
  - actions:
      - type: set-vars
        config:
          vars:
            - valid_auth_headers:
                - ${{'Bearer ' + secrets.get('gateway-auth', 'old-token')}}
                - ${{'Bearer ' + secrets.get('gateway-auth', 'new-token')}}
  - expressions:
      - \"!(req.headers['authorization'][0] in vars.valid_auth_headers)\"
{REJECT}"
    )
}

/// Writes the policy the way editors do (temp file + rename) so the watcher sees one change.
fn replace_policy(gw: &Gateway, text: &str) {
    let tmp = gw.policy_path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &gw.policy_path).unwrap();
}

async fn wait_for_status(gw: &Gateway, token: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while send(gw.addr, Req::get("/probe").bearer(token))
        .await
        .unwrap()
        .status
        != status
    {
        assert!(
            Instant::now() < deadline,
            "token never answered {status}:\n{}",
            gw.output()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_tokens_loses_no_request() {
    let data = TempDir::new("rotation");
    seed_secrets(data.path(), &[("gateway-auth", "old-token", OLD)]);
    let upstream = EchoUpstream::start().await;
    let gw = Gateway::start_with(
        &single("old-token"),
        Options {
            args: vec!["--upstream".into(), upstream.url()],
            data_dir: Some(data.path()),
            ..Options::default()
        },
    );

    let use_new = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let client = {
        let (use_new, stop, sent, failed, addr) = (
            use_new.clone(),
            stop.clone(),
            sent.clone(),
            failed.clone(),
            gw.addr,
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let token = if use_new.load(Ordering::Relaxed) {
                    NEW
                } else {
                    OLD
                };
                let ok = matches!(send(addr, Req::get("/v1/models").bearer(token)).await, Ok(r) if r.status == 200);
                sent.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 1. Add the new token to the vault.
    api(
        data.path(),
        &[
            "secrets",
            "create",
            "--name",
            "new-token",
            "--value",
            NEW,
            "--vault-name",
            "gateway-auth",
        ],
    );
    // 2. Accept both tokens.
    replace_policy(&gw, &both());
    wait_for_status(&gw, NEW, 200).await;
    // 3. Switch the client.
    use_new.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // 4. Remove the old token from the policy, then from the vault.
    replace_policy(&gw, &single("new-token"));
    wait_for_status(&gw, OLD, 401).await;
    let secrets = api(data.path(), &["secrets", "list"]);
    let old_id = secrets["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "old-token")
        .and_then(|s| s["id"].as_str())
        .unwrap()
        .to_owned();
    api_delete(data.path(), &old_id);
    tokio::time::sleep(Duration::from_millis(300)).await;

    stop.store(true, Ordering::Relaxed);
    client.await.unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "client requests failed during rotation"
    );
    assert!(
        sent.load(Ordering::Relaxed) > 50,
        "too few requests to mean anything"
    );
    assert_eq!(
        send(gw.addr, Req::get("/v1/models").bearer(OLD))
            .await
            .unwrap()
            .status,
        401
    );
    assert_eq!(
        send(gw.addr, Req::get("/v1/models").bearer(NEW))
            .await
            .unwrap()
            .status,
        200
    );
    let output = gw.output();
    assert!(
        !output.contains(OLD) && !output.contains(NEW),
        "a token reached the log"
    );
}

/// `secrets delete` prints nothing, so it is run without parsing JSON.
fn api_delete(data_dir: &std::path::Path, id: &str) {
    let status = std::process::Command::new(common::BIN)
        .args(["api", "secrets", "delete", id, "--data-dir"])
        .arg(data_dir)
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn an_updated_secret_is_used_within_two_seconds() {
    let data = TempDir::new("update");
    seed_secrets(data.path(), &[("gateway-auth", "access-token", OLD)]);
    let upstream = EchoUpstream::start().await;
    let gw = Gateway::start_with(
        &single("access-token"),
        Options {
            args: vec!["--upstream".into(), upstream.url()],
            data_dir: Some(data.path()),
            ..Options::default()
        },
    );
    assert_eq!(
        send(gw.addr, Req::get("/").bearer(OLD))
            .await
            .unwrap()
            .status,
        200
    );
    let id = api(data.path(), &["secrets", "list"])["secrets"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let changed = Instant::now();
    api(data.path(), &["secrets", "update", &id, "--value", NEW]);
    wait_for_status(&gw, NEW, 200).await;
    assert!(
        changed.elapsed() < Duration::from_secs(2),
        "took {:?}",
        changed.elapsed()
    );
    assert_eq!(
        send(gw.addr, Req::get("/").bearer(OLD))
            .await
            .unwrap()
            .status,
        401
    );
}
