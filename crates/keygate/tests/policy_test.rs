//! `keygate policy test` through the real binary: the shipped example test file (so CI runs it),
//! one case file per action family, jwt-validation against a JWKS served on loopback, the exit
//! codes of failing cases and bad input, and `--explain --request`.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{TempDir, BIN};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

const RSA_1_KEY: &str = include_str!("fixtures/jwt/rsa-1.key.pem");
const RSA_1_JWK: &str = include_str!("fixtures/jwt/rsa-1.jwk.json");
const RSA_2_KEY: &str = include_str!("fixtures/jwt/rsa-2.key.pem");

fn repo_file(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
        .display()
        .to_string()
}

fn keygate(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run keygate")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Writes the policy and the test file, runs them, and returns the exit code and output.
fn run(policy: &str, cases: &str, extra: &[&str]) -> (i32, String) {
    let dir = TempDir::new("policy-test");
    let policy_path = dir.path().join("policy.yml");
    let cases_path = dir.path().join("policy.test.yml");
    std::fs::write(&policy_path, policy).unwrap();
    std::fs::write(&cases_path, cases).unwrap();
    let mut args = vec![
        "policy",
        "test",
        policy_path.to_str().unwrap(),
        cases_path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let output = keygate(&args);
    (output.status.code().unwrap_or(-1), text(&output))
}

fn assert_passes(policy: &str, cases: &str) -> String {
    let (code, out) = run(policy, cases, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(", 0 failed"), "{out}");
    out
}

#[test]
fn the_seed_guide_example_passes() {
    let output = keygate(&[
        "policy",
        "test",
        &repo_file("examples/seed-policy.yml"),
        &repo_file("examples/seed-policy.test.yml"),
    ]);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("test result: ok. 6 passed, 0 failed"), "{out}");
}

#[test]
fn custom_response_and_set_vars() {
    let policy = r#"
on_http_request:
  - name: tier
    actions:
      - type: set-vars
        config:
          vars:
            - tier: "${req.headers['x-tier'][0] == '' ? 'free' : req.headers['x-tier'][0]}"
            - limit: 10
  - name: teapot
    expressions:
      - req.url.path == '/teapot'
    actions:
      - type: custom-response
        config:
          status_code: 418
          headers:
            x-tier: ${vars.tier}
          body: I am a teapot for ${vars.tier}
  - name: bye
    expressions:
      - req.url.path == '/bye'
    actions:
      - type: close-connection
on_http_response:
  - name: stamp
    actions:
      - type: add-headers
        config:
          headers:
            x-stamped: "yes"
"#;
    let cases = r#"
cases:
  - name: teapot answers with the tier
    path: /teapot
    headers: {x-tier: gold}
    expect:
      status: 418
      headers: {x-tier: gold, x-stamped: "yes"}
      body: I am a teapot for gold
      rules: [tier, teapot, stamp]
      vars: {tier: gold, limit: 10}
      terminated_by: custom-response
  - name: other paths go to the stub upstream
    path: /elsewhere
    query: {a: "1 2"}
    upstream:
      status: 202
      headers: {x-from: stub}
      body: from the stub
    expect:
      status: 202
      headers: {x-from: stub, x-tier: null}
      body_contains: [from, stub]
      rules: [tier, stamp]
      vars: {tier: free}
      terminated_by: null
  - name: close-connection drops it
    path: /bye
    expect:
      closed: true
      rules: [tier, bye]
      terminated_by: close-connection
"#;
    assert_passes(policy, cases);
}

#[test]
fn rate_limit_trips_after_capacity_and_recovers_with_time() {
    let policy = r#"
on_http_request:
  - actions:
      - type: rate-limit
        config:
          name: per-ip
          algorithm: sliding_window
          capacity: 3
          rate: 3/min
          bucket_key:
            - conn.client_ip
"#;
    let cases = r#"
cases:
  - name: the third passes
    repeat: 3
    expect: {status: 200}
  - name: the fourth is limited
    repeat: 4
    expect:
      status: 429
      terminated_by: rate-limit
  - name: cases do not share the limiter
    expect: {status: 200}
  - name: spaced out, every request passes
    repeat: 10
    interval: 21s
    expect: {status: 200}
"#;
    assert_passes(policy, cases);
}

#[test]
fn restrict_ips_follows_the_client_ip() {
    let policy = r#"
on_http_request:
  - actions:
      - type: restrict-ips
        config:
          allow:
            - 10.0.0.0/8
            - 2001:db8::/32
          deny:
            - 10.0.0.66/32
"#;
    let cases = r#"
cases:
  - name: allowed v4
    client_ip: 10.1.2.3
    expect: {status: 200}
  - name: allowed v6
    client_ip: "2001:db8::1"
    expect: {status: 200}
  - name: denied by the deny list
    client_ip: 10.0.0.66
    expect: {status: 403, terminated_by: restrict-ips}
  - name: outside the allow list
    client_ip: 192.0.2.1
    expect: {status: 403}
"#;
    assert_passes(policy, cases);
}

#[test]
fn tls_facts_reach_expressions() {
    let policy = r#"
on_http_request:
  - expressions:
      - "!conn.tls.sni.endsWith('.example.com')"
    actions:
      - type: deny
        config:
          status_code: 421
"#;
    let cases = r#"
cases:
  - name: right sni
    tls: {sni: api.example.com, version: TLSv1.3}
    expect: {status: 200}
  - name: wrong sni
    tls: {sni: other.test}
    expect: {status: 421}
"#;
    assert_passes(policy, cases);
}

/// A JWKS on loopback: `keygate policy test` fetches it when the first token needs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn jwt_validation_with_a_local_jwks() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    let document = format!("{{\"keys\": [{RSA_1_JWK}]}}");
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let document = document.clone();
            let service = hyper::service::service_fn(move |_request| {
                let response = hyper::Response::builder()
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(bytes::Bytes::from(
                        document.clone(),
                    )))
                    .unwrap();
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": "https://idp.keygate.test/", "aud": "keygate-gateway", "sub": "user-42",
        "iat": now, "exp": now + 600,
    });
    let sign = |pem: &str| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("rsa-1".into());
        encode(
            &header,
            &claims,
            &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let (good, forged) = (sign(RSA_1_KEY), sign(RSA_2_KEY));
    let policy = format!(
        r#"
on_http_request:
  - actions:
      - type: jwt-validation
        config:
          issuer:
            allow_list:
              - value: https://idp.keygate.test/
          audience:
            allow_list:
              - value: keygate-gateway
          http:
            tokens:
              - type: access_token
                method: header
                name: Authorization
                prefix: "Bearer "
          jws:
            allowed_algorithms: [RS256]
            keys:
              sources:
                additional_jkus:
                  - {url}
  - actions:
      - type: add-headers
        config:
          headers:
            x-jwt-sub: ${{actions.ngrok.jwt_validation.tokens[0].payload.sub}}
"#
    );
    let cases = format!(
        r#"
cases:
  - name: a valid token passes and its claims reach later rules
    headers: {{authorization: Bearer {good}}}
    expect:
      status: 200
      upstream_headers: {{x-jwt-sub: user-42}}
  - name: a token signed by another key is refused
    headers: {{authorization: Bearer {forged}}}
    expect: {{status: 401, terminated_by: jwt-validation}}
  - name: no token is refused
    expect: {{status: 401}}
"#
    );
    let (code, out) = tokio::task::spawn_blocking(move || run(&policy, &cases, &[]))
        .await
        .unwrap();
    server.abort();
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_failing_case_exits_non_zero_with_its_trace() {
    let policy = r#"
on_http_request:
  - name: needs a key
    expressions:
      - req.headers['x-key'][0] != 'k1'
    actions:
      - type: custom-response
        config:
          status_code: 401
          body: no
"#;
    let cases = r#"
cases:
  - name: passes
    headers: {x-key: k1}
    expect: {status: 200}
  - name: wrongly expected to pass
    headers: {x-key: nope}
    expect: {status: 200, body_contains: yes}
"#;
    let (code, out) = run(policy, cases, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("ok    passes"), "{out}");
    assert!(out.contains("FAIL  wrongly expected to pass"), "{out}");
    assert!(out.contains("status: got 401, expected 200"), "{out}");
    assert!(out.contains("body does not contain 'yes'"), "{out}");
    // The trace: the rule, the expression's value, the action, why processing stopped.
    assert!(out.contains("rule 'needs a key'"), "{out}");
    assert!(
        out.contains("req.headers['x-key'][0] != 'k1'  => true"),
        "{out}"
    );
    assert!(
        out.contains("action custom-response: answered 401"),
        "{out}"
    );
    assert!(
        out.contains("stopped: custom-response answered 401"),
        "{out}"
    );
    assert!(out.contains("1 passed, 1 failed"), "{out}");
    // A passing case shows its trace only with --verbose.
    assert!(!out.contains("x-key'][0] != 'k1'  => false"), "{out}");
    let (code, out) = run(policy, cases, &["--verbose", "--case", "passes"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("x-key'][0] != 'k1'  => false"), "{out}");
    assert!(out.contains("not matched: actions skipped"), "{out}");
}

#[test]
fn bad_input_exits_2_with_the_position() {
    let policy = "on_http_request:\n  - actions:\n      - type: deny\n";
    let (code, out) = run(policy, "cases:\n  - name: x\n    colour: red\n", &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains(":3:"), "{out}");
    assert!(out.contains("colour"), "{out}");
    let (code, out) = run("on_http_request: 3\n", "cases: []\n", &[]);
    assert_eq!(code, 2, "{out}");
}

#[test]
fn explain_traces_one_request_from_the_command_line() {
    let output = keygate(&[
        "policy",
        "test",
        "--explain",
        &repo_file("examples/seed-policy.yml"),
        "--request",
        "POST /v1/chat/completions",
        "-H",
        "authorization: Bearer t0",
        "--secret",
        "gateway-auth/access-token=t0",
        "--secret",
        "openai/api-key=sk-test",
        "--body",
        r#"{"model": "gpt-4o", "messages": [{"role": "user", "content": "explain me"}]}"#,
    ]);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("=> false"), "{out}");
    assert!(out.contains("action rate-limit: continued"), "{out}");
    assert!(out.contains("action ai-gateway: answered 200"), "{out}");
    assert!(out.contains("response: 200"), "{out}");
    assert!(out.contains("explain me"), "{out}");
}
