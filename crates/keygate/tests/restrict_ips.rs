//! End to end: `restrict-ips` through the real binary. Clients connect from 127.0.0.2, 127.0.0.3
//! and ::1; `--trust-forwarded-for` decides whether `X-Forwarded-For` names the client.

mod common;

use common::{send, EchoUpstream, Gateway, Options, Req};

/// Allows loopback (IPv4 and ::1) except 127.0.0.3; later rules see the decision.
const POLICY: &str = r#"
on_http_request:
  - actions:
      - type: restrict-ips
        config:
          allow:
            - 127.0.0.0/8
            - ::1/128
          deny:
            - 127.0.0.3/32
  - actions:
      - type: add-headers
        config:
          headers:
            x-ip-decision: ${actions.ngrok.restrict_ips.action}
            x-ip-matched: ${actions.ngrok.restrict_ips.matched_cidr}
"#;

fn policy_allowing(allow: &[&str]) -> String {
    let list: Vec<String> = allow
        .iter()
        .map(|cidr| format!("            - {cidr}\n"))
        .collect();
    format!(
        "on_http_request:\n  - actions:\n      - type: restrict-ips\n        config:\n          allow:\n{}",
        list.concat()
    )
}

fn header<'a>(received: &'a common::Received, name: &str) -> Option<&'a str> {
    received
        .headers
        .get(name)
        .and_then(|values| values.first())
        .map(String::as_str)
}

fn assert_forbidden(reply: &common::Reply) {
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        reply.json()["error"]["code"],
        "ERR_KEYGATE_3205",
        "{}",
        reply.text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_and_deny_by_source_address() {
    let upstream = EchoUpstream::start().await;
    let gateway = Gateway::start(POLICY, &["--upstream", &upstream.url()]);

    let allowed = send(gateway.addr, Req::get("/v1/models").from("127.0.0.2"))
        .await
        .unwrap();
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(header(&seen[0], "x-ip-decision"), Some("allow"));
    assert_eq!(header(&seen[0], "x-ip-matched"), Some("127.0.0.0/8"));

    let denied = send(gateway.addr, Req::get("/v1/models").from("127.0.0.3"))
        .await
        .unwrap();
    assert_forbidden(&denied);
    assert_eq!(
        upstream.requests().len(),
        1,
        "a denied request never reaches the upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_listed_ranges_pass() {
    let upstream = EchoUpstream::start().await;
    let gateway = Gateway::start(
        &policy_allowing(&["127.0.0.2/32"]),
        &["--upstream", &upstream.url()],
    );
    assert_eq!(
        send(gateway.addr, Req::get("/").from("127.0.0.2"))
            .await
            .unwrap()
            .status,
        200
    );
    assert_forbidden(
        &send(gateway.addr, Req::get("/").from("127.0.0.3"))
            .await
            .unwrap(),
    );
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn ipv6_clients_match_ipv6_ranges() {
    let upstream = EchoUpstream::start().await;
    let args = vec!["--upstream".to_string(), upstream.url()];
    let v6 = Gateway::start_with(
        POLICY,
        Options {
            args: args.clone(),
            listen_host: Some("[::1]"),
            ..Options::default()
        },
    );
    let reply = send(v6.addr, Req::get("/").from("::1")).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        header(&upstream.requests()[0], "x-ip-matched"),
        Some("::1/128")
    );

    // An IPv4-only allow list refuses ::1.
    let v4_only = Gateway::start_with(
        &policy_allowing(&["127.0.0.0/8"]),
        Options {
            args,
            listen_host: Some("[::1]"),
            ..Options::default()
        },
    );
    assert_forbidden(&send(v4_only.addr, Req::get("/").from("::1")).await.unwrap());
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_for_counts_only_from_trusted_peers() {
    let upstream = EchoUpstream::start().await;
    let policy = policy_allowing(&["203.0.113.0/24"]);
    let trusting = Gateway::start(
        &policy,
        &[
            "--upstream",
            &upstream.url(),
            "--trust-forwarded-for",
            "127.0.0.2/32",
        ],
    );
    let via_proxy = || Req::get("/").header("x-forwarded-for", "203.0.113.9");

    let reply = send(trusting.addr, via_proxy().from("127.0.0.2"))
        .await
        .unwrap();
    assert_eq!(
        reply.status,
        200,
        "a trusted proxy names the client: {}",
        reply.text()
    );
    // 127.0.0.3 is not a trusted proxy: its own address decides, and it is not allowed.
    assert_forbidden(
        &send(trusting.addr, via_proxy().from("127.0.0.3"))
            .await
            .unwrap(),
    );

    let untrusting = Gateway::start(&policy, &["--upstream", &upstream.url()]);
    assert_forbidden(
        &send(untrusting.addr, via_proxy().from("127.0.0.2"))
            .await
            .unwrap(),
    );
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn enforce_false_records_the_decision_only() {
    let upstream = EchoUpstream::start().await;
    let policy = POLICY.replace(
        "          allow:",
        "          enforce: false\n          allow:",
    );
    let gateway = Gateway::start(&policy, &["--upstream", &upstream.url()]);
    let reply = send(gateway.addr, Req::get("/").from("127.0.0.3"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = upstream.requests();
    assert_eq!(header(&seen[0], "x-ip-decision"), Some("deny"));
    assert_eq!(header(&seen[0], "x-ip-matched"), Some("127.0.0.3/32"));
}

/// `keygate policy check` on a policy with one problem: (exit code, stderr).
fn check(config: &str) -> (Option<i32>, String) {
    common::policy_check(&format!(
        "on_http_request:\n  - actions:\n      - type: restrict-ips\n        config:\n{config}"
    ))
}

#[test]
fn invalid_lists_are_located_errors() {
    let (code, stderr) =
        check("          allow:\n            - 10.0.0.0/8\n            - 10.0.0.1\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(":7:15: on_http_request[0].actions[0].config.allow[1]: "),
        "{stderr}"
    );
    assert!(stderr.contains("write 10.0.0.1/32"), "{stderr}");

    let (code, stderr) = check("          allow:\n            - 10.0.0.0/33\n");
    assert_eq!(code, Some(2));
    assert!(
        stderr
            .contains("on_http_request[0].actions[0].config.allow[0]: invalid CIDR '10.0.0.0/33'"),
        "{stderr}"
    );

    let (code, stderr) =
        check("          allow: ['0.0.0.0/0']\n          deny: ['2001:db8::/129']\n");
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("config.deny[0]: invalid CIDR '2001:db8::/129'"),
        "{stderr}"
    );

    let (code, stderr) = check("          deny: ['10.0.0.0/8']\n");
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("config.deny: restrict-ips needs at least one allow CIDR"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn interpolated_entries_are_evaluated_per_request() {
    let upstream = EchoUpstream::start().await;
    let policy = r#"
on_http_request:
  - actions:
      - type: set-vars
        config:
          vars:
            - office:
                - 127.0.0.2/32
                - ::1/128
            - lab: ${req.headers['x-lab'][0]}
  - actions:
      - type: restrict-ips
        config:
          allow:
            - ${vars.office}
          deny:
            - 10.0.0.0/8
            - ${vars.lab}
"#;
    let gateway = Gateway::start(policy, &["--upstream", &upstream.url()]);
    let lab = |from: &'static str, lab: &'static str| Req::get("/").from(from).header("x-lab", lab);

    let reply = send(gateway.addr, lab("127.0.0.2", "192.0.2.0/24"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_forbidden(
        &send(gateway.addr, lab("127.0.0.3", "192.0.2.0/24"))
            .await
            .unwrap(),
    );
    // The interpolated deny entry matches this client.
    assert_forbidden(
        &send(gateway.addr, lab("127.0.0.2", "127.0.0.0/30"))
            .await
            .unwrap(),
    );
    // An interpolated value that is not a CIDR fails closed.
    let reply = send(gateway.addr, lab("127.0.0.2", "not-a-cidr"))
        .await
        .unwrap();
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert_eq!(upstream.requests().len(), 1);
}
