//! End to end: changes made with `keygate api ...` while the gateway runs apply to the very next
//! request, with no reload and no waiting: a secret created after a request missed it, and the
//! rules of an IP policy `restrict-ips` references by id.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{api, send, Gateway, Options, Req, TempDir};

/// Answers 200 when the request carries `Bearer <gateway-auth/access-token>`, 401 otherwise; a
/// missing secret fails the expression (500).
const BEARER_POLICY: &str = r#"
on_http_request:
  - expressions:
      - req.headers['authorization'][0] != 'Bearer ' + secrets.get('gateway-auth', 'access-token')
    actions:
      - type: custom-response
        config:
          status_code: 401
          body: unauthorized
  - actions:
      - type: custom-response
        config:
          status_code: 200
          body: welcome
"#;

fn start(policy: &str, data: &Path) -> Gateway {
    Gateway::start_with(
        policy,
        Options {
            data_dir: Some(data),
            ..Options::default()
        },
    )
}

async fn status(gateway: &Gateway, req: Req<'_>) -> u16 {
    send(gateway.addr, req).await.expect("request").status
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_created_while_running_serves_the_very_next_request() {
    let data = TempDir::new("live-secret");
    api(data.path(), &["vaults", "create", "--name", "gateway-auth"]);
    let gateway = start(BEARER_POLICY, data.path());
    let bearer = || Req::get("/").bearer("fresh-token");

    // Every request reads the absent secret: each fails, and the gateway keeps serving.
    for _ in 0..20 {
        assert_eq!(status(&gateway, bearer()).await, 500);
    }
    api(
        data.path(),
        &[
            "secrets",
            "create",
            "--vault-name",
            "gateway-auth",
            "--name",
            "access-token",
            "--value",
            "fresh-token",
        ],
    );
    // No sleep: the request right after the CLI returned finds the secret.
    assert_eq!(status(&gateway, bearer()).await, 200);
    assert_eq!(status(&gateway, Req::get("/").bearer("other")).await, 401);
    assert!(
        !gateway.output().contains("fresh-token"),
        "the value never reaches the log"
    );
}

/// `restrict-ips` over IP policy `id` only, then a 200.
fn ip_policy(ids: &[&str]) -> String {
    format!(
        "on_http_request:\n  - actions:\n      - type: restrict-ips\n        config:\n          ip_policies: [{}]\n  - actions:\n      - type: custom-response\n        config:\n          status_code: 200\n          body: in\n",
        ids.join(", ")
    )
}

fn create_rule(data: &Path, policy: &str, cidr: &str, action: &str) -> String {
    let rule = api(
        data,
        &[
            "ip-policy-rules",
            "create",
            "--ip-policy-id",
            policy,
            "--cidr",
            cidr,
            "--action",
            action,
        ],
    );
    rule["id"].as_str().expect("rule id").to_owned()
}

/// Polls until a request from `from` gets `expected` (2 s at most: the bound for changes that no
/// refused request asks for).
async fn eventually(gateway: &Gateway, from: &str, expected: u16) {
    let start = Instant::now();
    loop {
        let got = status(gateway, Req::get("/").from(from)).await;
        if got == expected {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{from} still gets {got}, not {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ip_policy_rules_apply_to_the_very_next_request() {
    let data = TempDir::new("live-ip-policy");
    let office = api(
        data.path(),
        &["ip-policies", "create", "--description", "office"],
    );
    let office = office["id"].as_str().expect("policy id").to_owned();
    assert!(office.starts_with("ipp_"), "{office}");
    let gateway = start(&ip_policy(&[&office]), data.path());
    assert!(
        gateway
            .output()
            .contains("every request is refused until an allow rule is added"),
        "{}",
        gateway.output()
    );

    // No rule yet: refused, repeatedly (each refusal may ask the store again, at a bounded rate).
    for _ in 0..20 {
        assert_eq!(status(&gateway, Req::get("/").from("127.0.0.2")).await, 403);
    }
    let allow = create_rule(data.path(), &office, "127.0.0.2/32", "allow");
    // No sleep: the request right after the CLI returned is allowed.
    assert_eq!(status(&gateway, Req::get("/").from("127.0.0.2")).await, 200);
    assert_eq!(status(&gateway, Req::get("/").from("127.0.0.3")).await, 403);

    // A deny rule wins over the allow rule; nothing is refused to ask for it, so the file
    // watch brings it in.
    let deny = create_rule(data.path(), &office, "127.0.0.0/24", "deny");
    eventually(&gateway, "127.0.0.2", 403).await;
    api(data.path(), &["ip-policy-rules", "delete", &deny]);
    assert_eq!(status(&gateway, Req::get("/").from("127.0.0.2")).await, 200);

    // Deleting the policy leaves a running gateway with a policy without rules...
    api(data.path(), &["ip-policies", "delete", &office]);
    eventually(&gateway, "127.0.0.2", 403).await;
    assert!(
        api(data.path(), &["ip-policy-rules", "list"])["ip_policy_rules"]
            .as_array()
            .unwrap()
            .is_empty(),
        "its rules went with it ({allow})"
    );
    // ...and a reload naming it is refused, the running policy kept.
    std::fs::write(&gateway.policy_path, ip_policy(&[&office])).unwrap();
    gateway.signal("HUP");
    assert!(
        gateway.wait_for_output(
            &format!("IP policy '{office}' not found in the data dir"),
            Duration::from_secs(5)
        ),
        "{}",
        gateway.output()
    );
}

#[test]
fn the_cli_manages_ip_policies_in_ngrok_shapes() {
    let data = TempDir::new("ip-policy-cli");
    let run = |args: &[&str]| {
        std::process::Command::new(common::BIN)
            .arg("api")
            .args(args)
            .arg("--data-dir")
            .arg(data.path())
            .env_remove("KEYGATE_MASTER_KEY")
            .output()
            .unwrap()
    };
    let policy = api(
        data.path(),
        &["ip-policies", "create", "--description", "vpn"],
    );
    let id = policy["id"].as_str().unwrap();
    assert_eq!(policy["description"], "vpn");
    assert!(policy["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(api(data.path(), &["ip-policies", "get", id]), policy);
    assert_eq!(
        api(data.path(), &["ip-policies", "list"]),
        serde_json::json!({ "ip_policies": [policy] })
    );

    let rule = api(
        data.path(),
        &[
            "ip-policy-rules",
            "create",
            "--ip-policy-id",
            id,
            "--cidr",
            "2001:db8::/32",
            "--action",
            "deny",
            "--description",
            "lab",
        ],
    );
    assert!(rule["id"].as_str().unwrap().starts_with("ipr_"));
    assert_eq!(rule["cidr"], "2001:db8::/32");
    assert_eq!(rule["action"], "deny");
    assert_eq!(rule["description"], "lab");
    assert_eq!(rule["ip_policy"], serde_json::json!({ "id": id }));
    let rule_id = rule["id"].as_str().unwrap();
    assert_eq!(api(data.path(), &["ip-policy-rules", "get", rule_id]), rule);
    assert_eq!(
        api(
            data.path(),
            &["ip-policy-rules", "list", "--ip-policy-id", id]
        ),
        serde_json::json!({ "ip_policy_rules": [rule] })
    );

    for (args, needle) in [
        (
            vec![
                "ip-policy-rules",
                "create",
                "--ip-policy-id",
                id,
                "--cidr",
                "10.1.2.3",
                "--action",
                "allow",
            ],
            "'10.1.2.3' is an address, not a CIDR range: write 10.1.2.3/32",
        ),
        (
            vec![
                "ip-policy-rules",
                "create",
                "--ip-policy-id",
                id,
                "--cidr",
                "10.1.2.3/8",
                "--action",
                "allow",
            ],
            "'10.1.2.3/8' has host bits set: write 10.0.0.0/8",
        ),
        (
            vec![
                "ip-policy-rules",
                "create",
                "--ip-policy-id",
                "ipp_nope",
                "--cidr",
                "10.0.0.0/8",
                "--action",
                "allow",
            ],
            "IP policy 'ipp_nope' not found",
        ),
        (
            vec!["ip-policies", "get", "ipp_nope"],
            "IP policy 'ipp_nope' not found",
        ),
        (
            vec!["ip-policy-rules", "delete", "ipr_nope"],
            "IP policy rule 'ipr_nope' not found",
        ),
    ] {
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let out = run(&[
        "ip-policy-rules",
        "create",
        "--ip-policy-id",
        id,
        "--cidr",
        "10.0.0.0/8",
        "--action",
        "block",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("use allow or deny"));

    assert_eq!(
        api(data.path(), &["ip-policy-rules", "delete", rule_id]),
        serde_json::Value::Null
    );
    assert_eq!(
        api(data.path(), &["ip-policies", "delete", id]),
        serde_json::Value::Null
    );
    assert_eq!(
        api(data.path(), &["ip-policies", "list"]),
        serde_json::json!({ "ip_policies": [] })
    );
}

#[test]
fn policy_check_warns_about_ip_policies_the_data_dir_does_not_hold() {
    let data = TempDir::new("ip-policy-check");
    let known = api(data.path(), &["ip-policies", "create"]);
    let known = known["id"].as_str().unwrap();
    let unknown = "ipp_aaaaaaaaaaaaaaaaaaaaaaaaaa";
    let file = data.path().join("policy.yml");
    std::fs::write(&file, ip_policy(&[known, unknown, unknown])).unwrap();
    let check = |data_dir: &Path| {
        std::process::Command::new(common::BIN)
            .args(["policy", "check"])
            .arg(&file)
            .arg("--data-dir")
            .arg(data_dir)
            .output()
            .unwrap()
    };
    // Offline and lenient: the policy is valid, the unknown id only warned about, once.
    let out = check(data.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr
            .matches(&format!("warning: IP policy '{unknown}' is not in"))
            .count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains(known), "{stderr}");
    // Without a data dir there is nothing to check against.
    let out = check(&data.path().join("absent"));
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
