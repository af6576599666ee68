//! Two gateways on one PostgreSQL store (`--database postgres://...`), each with its own data
//! directory and the same master key file, as two instances behind a load balancer: an access key
//! made with the CLI works on both, a key revoked through the CLI is refused by both, a secret rotated
//! through the CLI is served by both within a second, and the usage ledger holds the rows of both.
//! Reported as skipped in one line when PostgreSQL is not installed. Also `serve --no-migrate` (on
//! SQLite).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{send, Gateway, Options, Req, TempDir, BIN};
use keygate_mock::{MockConfig, MockServer};
use keygate_test_support::{require, PostgresServer};
use serde_json::{json, Value};

const SERVER_KEY: &str = "sk-server-key-for-shared-store-tests";

/// Access keys required; `/secret` answers the rotated secret's value.
fn policy() -> String {
    format!(
        "on_http_request:
  - expressions: [\"req.url.path == '/secret'\"]
    actions:
      - type: custom-response
        config:
          status_code: 200
          body: \"${{secrets.get('shared', 'value')}}\"
  - actions:
      - type: ai-gateway
        config:
          access_keys: required
          providers:
            - id: openai
              api_keys:
                - value: {SERVER_KEY}
"
    )
}

/// `keygate api ARGS` on the shared store; its JSON output (`null` when it prints nothing).
fn api(database: &str, key_dir: &Path, args: &[&str]) -> Value {
    let args: Vec<&str> = args
        .iter()
        .copied()
        .chain(["--database", database])
        .collect();
    common::api(key_dir, &args)
}

async fn chat(gw: &Gateway, token: &str) -> u16 {
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let req = Req::post("/v1/chat/completions", body.to_string()).bearer(token);
    send(gw.addr, req).await.expect("chat").status
}

/// `/secret` with the access key (an ai-gateway requiring keys checks them before any rule runs).
async fn secret(gw: &Gateway, token: &str) -> String {
    send(gw.addr, Req::get("/secret").bearer(token))
        .await
        .expect("secret")
        .text()
}

#[tokio::test]
async fn two_gateways_share_keys_secrets_and_the_ledger() {
    let Some(server) = require(PostgresServer::start()) else {
        return;
    };
    let database = server.create_database("keygate");
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    // The operator's machine: the master key file is made by the first command and copied to every
    // instance (here: pointed to).
    let operator = TempDir::new("shared-operator");
    // A release step migrates the empty database before any instance starts; again, it finds nothing to do.
    let migrate = || {
        let output = Command::new(BIN)
            .args(["migrate", "--database", &database, "--data-dir"])
            .arg(operator.path())
            .output()
            .expect("run keygate migrate");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let migrated = migrate();
    for component in ["secrets", "ip-policies", "ai-gateway-keys", "usage"] {
        assert!(migrated.contains(&format!("{component} ")), "{migrated}");
    }
    assert_eq!(migrate(), migrated);
    api(
        &database,
        operator.path(),
        &["vaults", "create", "--name", "shared"],
    );
    let secret_id = api(
        &database,
        operator.path(),
        &[
            "secrets",
            "create",
            "--vault-name",
            "shared",
            "--name",
            "value",
            "--value",
            "v1",
        ],
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = api(
        &database,
        operator.path(),
        &["ai-gateway-api-keys", "create"],
    );
    let (key_id, token) = (key["id"].as_str().unwrap(), key["token"].as_str().unwrap());
    // `policy check` looks secret references up in the shared store.
    let check = |policy: &str| {
        let file = operator.path().join("check.yml");
        std::fs::write(&file, policy).unwrap();
        let output = Command::new(BIN)
            .args(["policy", "check", "--database", &database])
            .arg(&file)
            .output()
            .expect("run keygate policy check");
        assert!(output.status.success());
        String::from_utf8(output.stderr).unwrap()
    };
    assert_eq!(check(&policy()), "", "every reference is in the store");
    let missing = check(&policy().replace("'value'", "'absent'"));
    assert!(
        missing.contains("secrets.get('shared', 'absent') is not in postgres://"),
        "{missing}"
    );
    let key_file = operator.path().join("master.key");
    let instance = |name: &str| {
        let data = TempDir::new(name);
        let args = [
            "--database",
            &database,
            "--master-key-file",
            key_file.to_str().unwrap(),
            "--provider-url",
            &format!("openai={}", mock.openai_base_url()),
        ];
        let gw = Gateway::start_with(
            &policy(),
            Options {
                args: args.iter().map(|a| a.to_string()).collect(),
                data_dir: Some(data.path()),
                ..Options::default()
            },
        );
        (data, gw)
    };
    let (_one_data, one) = instance("shared-one");
    let (_two_data, two) = instance("shared-two");

    for gw in [&one, &two] {
        assert_eq!(chat(gw, token).await, 200);
        assert_eq!(secret(gw, token).await, "v1");
    }

    // Rotation: both serve the new value within a second.
    let rotated_at = Instant::now();
    api(
        &database,
        operator.path(),
        &["secrets", "update", &secret_id, "--value", "v2"],
    );
    for gw in [&one, &two] {
        while secret(gw, token).await != "v2" {
            assert!(
                rotated_at.elapsed() < Duration::from_secs(1),
                "rotation not served within 1 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    eprintln!("rotation served by both after {:?}", rotated_at.elapsed());

    // Revocation: refused by both as soon as the change feed has told them (the request path reads
    // no database); the time from the command's return to the first refusal is printed.
    api(
        &database,
        operator.path(),
        &["ai-gateway-api-keys", "delete", key_id],
    );
    let revoked_at = Instant::now();
    let mut accepted_after = 0;
    for (name, gw) in [("two", &two), ("one", &one)] {
        while chat(gw, token).await != 401 {
            accepted_after += 1;
            assert!(
                revoked_at.elapsed() < Duration::from_secs(1),
                "revocation not seen by instance {name} within 1 s"
            );
        }
        eprintln!(
            "revocation refused by instance {name} {:?} after the command returned",
            revoked_at.elapsed()
        );
    }
    eprintln!("{accepted_after} requests with the revoked key were accepted meanwhile");

    // The ledger holds both instances' rows: one answered chat each, and those answered before the
    // revocation reached them.
    let answered = 2 + accepted_after;
    let deadline = Instant::now() + Duration::from_secs(5);
    let rows = loop {
        // The synchronous client cannot run on the test's async worker.
        let url = database.clone();
        let rows: i64 = tokio::task::spawn_blocking(move || {
            keygate_store::Database::open(&url)?.read("usage", |tx, _| {
                tx.query_one("SELECT COUNT(*) FROM usage WHERE status = 200", &[])?
                    .get(0)
            })
        })
        .await
        .unwrap()
        .unwrap();
        if rows >= answered || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(rows, answered, "answered requests in the ledger");
    drop(server);
}

/// `serve --no-migrate` applies nothing: a store `keygate migrate` has not prepared is refused with
/// the command to run, and once migrated the gateway starts and serves.
#[tokio::test]
async fn no_migrate_refuses_a_store_that_migrate_has_not_prepared() {
    let dir = TempDir::new("no-migrate");
    let data = dir.path().join("data");
    let policy = dir.path().join("policy.yml");
    std::fs::write(&policy, "on_http_request: []\n").unwrap();
    let refused = Command::new(BIN)
        .args([
            "serve",
            "--no-migrate",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--policy")
        .arg(&policy)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("run keygate serve");
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("run `keygate migrate`"), "{stderr}");

    let migrated = Command::new(BIN)
        .arg("migrate")
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("run keygate migrate");
    assert!(migrated.status.success());
    let gw = Gateway::start_with(
        "on_http_request:\n  - actions:\n      - type: custom-response\n        config:\n          status_code: 200\n          body: migrated\n",
        Options {
            args: vec!["--no-migrate".to_owned()],
            data_dir: Some(&data),
            ..Options::default()
        },
    );
    let reply = send(gw.addr, Req::get("/")).await.expect("request");
    assert_eq!((reply.status, reply.text()), (200, "migrated".to_owned()));
}
