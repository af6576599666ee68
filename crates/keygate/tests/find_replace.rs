//! End to end: `request-body-find-replace` and `response-body-find-replace` through the real
//! binary, in front of the echo upstream (which answers with what it received).

mod common;

use common::{send, EchoUpstream, Gateway, Req};

const POLICY: &str = r#"
on_http_request:
  - expressions:
      - req.method == 'POST'
    actions:
      - type: request-body-find-replace
        config:
          replacements:
            - from: '\b(\d{4})-\d{4}-\d{4}-(\d{4})\b'
              to: '$1-****-****-$2'
            - from: '${req.headers["x-secret-word"][0]}'
              to: '[${req.method}]'
on_http_response:
  - actions:
      - type: response-body-find-replace
        config:
          replacements:
            - from: '[a-z]+@example\.com'
              to: '[email]'
      - type: add-headers
        config:
          headers:
            x-replaced: ${actions.ngrok.response_body_find_replace.replacements.map(r, string(r.replacement_index)).join(',')}
            x-first-match: ${actions.ngrok.response_body_find_replace.replacements.map(r, r.matched_content).join(',')}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn request_and_response_bodies_are_rewritten_with_lengths_that_follow() {
    let upstream = EchoUpstream::start().await;
    let gw = Gateway::start(POLICY, &["--upstream", &upstream.url()]);
    let body = "card 4111-2222-3333-4444 from alice@example.com, swordfish";
    let reply = send(
        gw.addr,
        Req::post("/echo", body).header("x-secret-word", "swordfish"),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());

    // The upstream got the rewritten request with a Content-Length of its new length.
    let received = upstream.requests().pop().unwrap();
    let forwarded = String::from_utf8(received.body).unwrap();
    assert_eq!(
        forwarded,
        "card 4111-****-****-4444 from alice@example.com, [POST]"
    );
    assert_eq!(
        received.headers["content-length"],
        [forwarded.len().to_string()]
    );

    // The echo's JSON repeats the address; the response rule replaced it, and the client's
    // Content-Length matches the rewritten body.
    let text = reply.text();
    assert!(text.contains("from [email], [POST]"), "{text}");
    assert!(!text.contains("example.com"), "{text}");
    assert_eq!(
        reply.header("content-length"),
        Some(reply.body.len().to_string().as_str())
    );
    assert_eq!(reply.header("x-replaced"), Some("0"));
    assert_eq!(reply.header("x-first-match"), Some("alice@example.com"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_without_matches_passes_as_it_came() {
    let upstream = EchoUpstream::start().await;
    let gw = Gateway::start(POLICY, &["--upstream", &upstream.url()]);
    let reply = send(
        gw.addr,
        Req::post("/echo", "nothing to hide").header("x-secret-word", "absent"),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    let received = upstream.requests().pop().unwrap();
    assert_eq!(received.body, b"nothing to hide");
    assert_eq!(reply.header("x-replaced"), Some(""));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interpolated_pattern_that_does_not_compile_fails_closed() {
    let upstream = EchoUpstream::start().await;
    let gw = Gateway::start(POLICY, &["--upstream", &upstream.url()]);
    let reply = send(
        gw.addr,
        Req::post("/echo", "text").header("x-secret-word", "(unclosed"),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "ERR_KEYGATE_2253");
    assert!(upstream.requests().is_empty(), "nothing was forwarded");
    assert!(gw.wait_for_output(
        "invalid regular expression",
        std::time::Duration::from_secs(5)
    ));
}
