//! End-to-end tests of the core gateway through the real binary: the seed guide's authorization
//! policies with vault secrets, proxying, gateway errors, phases and request ids.

mod common;

use common::{seed_secrets, send, EchoUpstream, Gateway, Options, Req, TempDir};

const UNAUTHORIZED_BODY: &str = r#"{"error": {"message": "Invalid or missing authorization token", "type": "authentication_error"}}"#;

/// The seed guide's first policy, with the ai-gateway rule replaced by the plain upstream.
use common::SEED_BEARER_RULE as SEED_BEARER;

const SEED_MULTIPLE: &str = r#"
on_http_request:
  - actions:
      - type: set-vars
        config:
          vars:
            - valid_auth_headers:
                - ${'Bearer ' + secrets.get('gateway-auth', 'client-a-token')}
                - ${'Bearer ' + secrets.get('gateway-auth', 'client-b-token')}
                - ${'Bearer ' + secrets.get('gateway-auth', 'client-c-token')}
  - expressions:
      - "!(req.headers['authorization'][0] in vars.valid_auth_headers)"
    actions:
      - type: custom-response
        config:
          status_code: 401
          headers:
            content-type: application/json
          body: '{"error": {"message": "Invalid or missing authorization token", "type": "authentication_error"}}'
"#;

const SEED_API_KEY: &str = r#"
on_http_request:
  - expressions:
      - req.headers['x-api-key'][0] != secrets.get('gateway-auth', 'access-token')
    actions:
      - type: custom-response
        config:
          status_code: 401
          headers:
            content-type: application/json
          body: '{"error": {"message": "Invalid or missing API key", "type": "authentication_error"}}'
"#;

fn data_dir_with(secrets: &[(&str, &str, &str)]) -> TempDir {
    let dir = TempDir::new("data");
    seed_secrets(dir.path(), secrets);
    dir
}

fn start(policy: &str, data: &TempDir, upstream: &EchoUpstream) -> Gateway {
    Gateway::start_with(
        policy,
        Options {
            args: vec!["--upstream".into(), upstream.url()],
            data_dir: Some(data.path()),
            ..Options::default()
        },
    )
}

#[tokio::test]
async fn seed_bearer_policy_guards_the_upstream() {
    let data = data_dir_with(&[("gateway-auth", "access-token", "tok-correct-0123456789")]);
    let upstream = EchoUpstream::start().await;
    let gw = start(SEED_BEARER, &data, &upstream);

    let missing = send(gw.addr, Req::post("/v1/chat/completions", "{}"))
        .await
        .unwrap();
    assert_eq!(missing.status, 401);
    assert_eq!(missing.text(), UNAUTHORIZED_BODY);
    assert_eq!(missing.header("content-type"), Some("application/json"));

    let wrong = send(
        gw.addr,
        Req::post("/v1/chat/completions", "{}").bearer("tok-wrong"),
    )
    .await
    .unwrap();
    assert_eq!(wrong.status, 401);
    let prefix_only = send(gw.addr, Req::post("/v1/x", "{}").bearer("tok-correct"))
        .await
        .unwrap();
    assert_eq!(prefix_only.status, 401);
    assert!(
        upstream.requests().is_empty(),
        "rejected requests must not reach the upstream"
    );

    let ok = send(
        gw.addr,
        Req::post("/v1/chat/completions?x=1", r#"{"a":1}"#).bearer("tok-correct-0123456789"),
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.header("x-upstream"), Some("echo"));
    let received = upstream.requests();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, "/v1/chat/completions?x=1");
    assert_eq!(received[0].body, br#"{"a":1}"#);
    assert_eq!(received[0].headers["x-forwarded-for"], ["127.0.0.1"]);
    assert_eq!(received[0].headers["x-forwarded-proto"], ["http"]);
    assert_eq!(
        received[0].headers["x-forwarded-host"],
        [gw.addr.to_string()]
    );
    let id = ok
        .header("x-request-id")
        .expect("x-request-id on the response");
    assert_eq!(received[0].headers["x-request-id"], [id]);
    assert!(
        !gw.output().contains("tok-correct-0123456789"),
        "the token leaked into the log"
    );
}

#[tokio::test]
async fn seed_multiple_tokens_with_set_vars_and_in() {
    let data = data_dir_with(&[
        ("gateway-auth", "client-a-token", "token-a-aaaaaaaa"),
        ("gateway-auth", "client-b-token", "token-b-bbbbbbbb"),
        ("gateway-auth", "client-c-token", "token-c-cccccccc"),
    ]);
    let upstream = EchoUpstream::start().await;
    let gw = start(SEED_MULTIPLE, &data, &upstream);
    for token in ["token-a-aaaaaaaa", "token-b-bbbbbbbb", "token-c-cccccccc"] {
        let reply = send(gw.addr, Req::get("/v1/models").bearer(token))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{token}: {}", reply.text());
    }
    for req in [
        Req::get("/v1/models"),
        Req::get("/v1/models").bearer("token-d"),
        Req::get("/v1/models").bearer(""),
    ] {
        let reply = send(gw.addr, req).await.unwrap();
        assert_eq!(reply.status, 401);
        assert_eq!(reply.text(), UNAUTHORIZED_BODY);
    }
    assert_eq!(upstream.requests().len(), 3);
}

#[tokio::test]
async fn seed_x_api_key_policy() {
    let data = data_dir_with(&[("gateway-auth", "access-token", "key-0123456789")]);
    let upstream = EchoUpstream::start().await;
    let gw = start(SEED_API_KEY, &data, &upstream);
    let missing = send(gw.addr, Req::get("/v1/models")).await.unwrap();
    assert_eq!(missing.status, 401);
    assert!(missing.text().contains("Invalid or missing API key"));
    let wrong_case_header = send(
        gw.addr,
        Req::get("/v1/models").header("X-API-Key", "key-0123456789"),
    )
    .await
    .unwrap();
    assert_eq!(
        wrong_case_header.status, 200,
        "header lookup is case-insensitive"
    );
    let bearer_instead = send(gw.addr, Req::get("/v1/models").bearer("key-0123456789"))
        .await
        .unwrap();
    assert_eq!(bearer_instead.status, 401);
}

#[tokio::test]
async fn a_missing_secret_fails_closed_with_500() {
    let data = data_dir_with(&[("other-vault", "unrelated", "value-value")]);
    let upstream = EchoUpstream::start().await;
    let gw = start(SEED_BEARER, &data, &upstream);
    let reply = send(gw.addr, Req::get("/v1/models").bearer("anything"))
        .await
        .unwrap();
    assert_eq!(reply.status, 500);
    let body = reply.json();
    assert_eq!(body["error"]["code"], "ERR_KEYGATE_2253");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("on_http_request[0]"),
        "{body}"
    );
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn no_route_is_a_json_404_in_the_clients_format() {
    let gw = Gateway::start("on_http_request: []\n", &[]);
    let openai = send(gw.addr, Req::post("/v1/chat/completions", "{}"))
        .await
        .unwrap();
    assert_eq!(openai.status, 404);
    assert_eq!(openai.json()["error"]["code"], "ERR_KEYGATE_404");
    let anthropic = send(gw.addr, Req::post("/v1/messages", "{}"))
        .await
        .unwrap();
    assert_eq!(anthropic.status, 404);
    let body = anthropic.json();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "not_found_error");
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let upstream = EchoUpstream::start().await;
    let gw = Gateway::start(
        "on_http_request: []\n",
        &["--upstream", &upstream.url(), "--max-body-bytes", "1000"],
    );
    let small = send(gw.addr, Req::post("/v1/x", vec![b'a'; 1000]))
        .await
        .unwrap();
    assert_eq!(small.status, 200);
    let big = send(gw.addr, Req::post("/v1/x", vec![b'a'; 1001]))
        .await
        .unwrap();
    assert_eq!(big.status, 413);
    assert_eq!(big.json()["error"]["code"], "ERR_KEYGATE_413");
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn response_phase_runs_after_a_custom_response_and_sees_res() {
    let policy = r#"
on_http_request:
  - name: teapot
    expressions: ["req.url.path == '/tea'"]
    actions:
      - type: custom-response
        config: {status_code: 418, body: "short and stout"}
on_http_response:
  - name: tag
    expressions: ["res.status_code == 418"]
    actions:
      - type: add-headers
        config:
          headers:
            x-teapot: "${string(res.status_code)}"
"#;
    let upstream = EchoUpstream::start().await;
    let gw = Gateway::start(policy, &["--upstream", &upstream.url()]);
    let tea = send(gw.addr, Req::get("/tea")).await.unwrap();
    assert_eq!(tea.status, 418);
    assert_eq!(tea.text(), "short and stout");
    assert_eq!(tea.header("x-teapot"), Some("418"));
    assert_eq!(
        tea.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let other = send(gw.addr, Req::get("/coffee")).await.unwrap();
    assert_eq!(other.status, 200);
    assert_eq!(other.header("x-teapot"), None);
    assert!(
        gw.wait_for_output(
            "\"rules\":[\"teapot\",\"tag\"]",
            std::time::Duration::from_secs(2)
        ),
        "{}",
        gw.output()
    );
}

#[tokio::test]
async fn request_phase_actions_shape_what_the_upstream_sees() {
    let policy = r#"
on_http_request:
  - actions:
      - type: add-headers
        config:
          headers:
            x-client-ip: "${conn.client_ip}"
      - type: remove-headers
        config:
          headers: [x-secret-header]
      - type: url-rewrite
        config:
          from: "/old/(.*)"
          to: "/new/$1"
      - type: log
        config:
          metadata:
            path: "${req.url.path}"
            fixed: 7
"#;
    let upstream = EchoUpstream::start().await;
    let gw = Gateway::start(policy, &["--upstream", &upstream.url()]);
    let reply = send(
        gw.addr,
        Req::get("/old/thing?q=1")
            .header("x-secret-header", "s")
            .from("127.0.0.3"),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    let received = &upstream.requests()[0];
    assert_eq!(received.path, "/new/thing?q=1");
    assert_eq!(received.headers["x-client-ip"], ["127.0.0.3"]);
    assert!(!received.headers.contains_key("x-secret-header"));
    assert!(
        gw.wait_for_output(
            r#""log":[{"fixed":7,"path":"/new/thing"}]"#,
            std::time::Duration::from_secs(2)
        ),
        "{}",
        gw.output()
    );
}

#[tokio::test]
async fn client_request_ids_are_kept() {
    let upstream = EchoUpstream::start().await;
    let gw = Gateway::start("on_http_request: []\n", &["--upstream", &upstream.url()]);
    let reply = send(
        gw.addr,
        Req::get("/").header("x-request-id", "client-id-42"),
    )
    .await
    .unwrap();
    assert_eq!(reply.header("x-request-id"), Some("client-id-42"));
    assert_eq!(
        upstream.requests()[0].headers["x-request-id"],
        ["client-id-42"]
    );
}

#[tokio::test]
async fn deny_redirect_and_close_connection() {
    let policy = r#"
on_http_request:
  - expressions: ["req.url.path == '/deny'"]
    actions:
      - type: deny
        config: {status_code: 451}
  - expressions: ["req.url.path.startsWith('/old')"]
    actions:
      - type: redirect
        config:
          from: "/old/(.*)"
          to: "/new/$1"
          status_code: 301
  - expressions: ["req.url.path == '/close'"]
    actions:
      - type: close-connection
"#;
    let upstream = EchoUpstream::start().await;
    let gw = Gateway::start(policy, &["--upstream", &upstream.url()]);
    let denied = send(gw.addr, Req::get("/deny")).await.unwrap();
    assert_eq!(denied.status, 451);
    assert!(denied.body.is_empty());
    let moved = send(gw.addr, Req::get("/old/page")).await.unwrap();
    assert_eq!(moved.status, 301);
    assert_eq!(
        moved.header("location"),
        Some(format!("http://{}/new/page", gw.addr).as_str())
    );
    assert!(
        send(gw.addr, Req::get("/close")).await.is_err(),
        "the connection should be dropped without a response"
    );
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn basic_auth_challenges_and_accepts() {
    let policy = r#"
on_http_request:
  - actions:
      - type: basic-auth
        config:
          realm: keygate
          credentials: ["alice:correct-horse"]
"#;
    let upstream = EchoUpstream::start().await;
    let gw = Gateway::start(policy, &["--upstream", &upstream.url()]);
    let challenged = send(gw.addr, Req::get("/")).await.unwrap();
    assert_eq!(challenged.status, 401);
    assert_eq!(
        challenged.header("www-authenticate"),
        Some("Basic realm=\"keygate\"")
    );
    let ok = send(
        gw.addr,
        Req::get("/").header("authorization", "Basic YWxpY2U6Y29ycmVjdC1ob3JzZQ=="),
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 200);
}

/// An upstream that answers in HTTP/1.0 (as Python's `http.server` does): the client still gets
/// an HTTP/1.1 status line, since the client's connection decides the protocol.
#[tokio::test(flavor = "multi_thread")]
async fn an_http_1_0_upstream_is_answered_in_the_clients_version() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head).await;
            let _ = stream
                .write_all(
                    b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
                )
                .await;
        }
    });
    let gw = Gateway::start(
        "on_http_request: []\n",
        &["--upstream", &format!("http://{upstream}")],
    );
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nok"), "{text}");
}
