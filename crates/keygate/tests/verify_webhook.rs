//! End to end: `verify-webhook` through the real binary, the secrets read from a vault. Signed
//! GitHub, Stripe and Slack webhooks reach the upstream with their bodies intact; tampered,
//! replayed or unsigned ones get 403 and never reach it; `enforce: false` forwards and shows
//! the verdict to later rules.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{seed_secrets, send, EchoUpstream, Gateway, Options, Req, TempDir};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const GITHUB_SECRET: &str = "gh-webhook-secret-0123456789";
const STRIPE_SECRET: &str = "whsec_stripe0123456789abcdef";
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const TWITTER_SECRET: &str = "consumer-secret";
const ZOOM_SECRET: &str = "zoom-secret-token";
const XERO_SECRET: &str = "xero-key";

const POLICY: &str = r#"
on_http_request:
  - expressions: ["req.url.path == '/github'"]
    actions:
      - type: verify-webhook
        config:
          provider: github
          secret: "${secrets.get('webhooks', 'github')}"
  - expressions: ["req.url.path == '/stripe'"]
    actions:
      - type: verify-webhook
        config:
          provider: stripe
          secret: "${secrets.get('webhooks', 'stripe')}"
  - expressions: ["req.url.path == '/slack'"]
    actions:
      - type: verify-webhook
        config:
          provider: slack
          secret: "${secrets.get('webhooks', 'slack')}"
  - expressions: ["req.url.path == '/twitter'"]
    actions:
      - type: verify-webhook
        config:
          provider: twitter
          secret: "${secrets.get('webhooks', 'twitter')}"
  - expressions: ["req.url.path == '/zoom'"]
    actions:
      - type: verify-webhook
        config:
          provider: zoom
          secret: "${secrets.get('webhooks', 'zoom')}"
  - expressions: ["req.url.path == '/xero'"]
    actions:
      - type: verify-webhook
        config:
          provider: xero
          secret: "${secrets.get('webhooks', 'xero')}"
  - expressions: ["req.url.path == '/audit'"]
    actions:
      - type: verify-webhook
        config:
          provider: github
          secret: "${secrets.get('webhooks', 'github')}"
          enforce: false
      - type: add-headers
        config:
          headers:
            x-webhook-verified: "${actions.ngrok.verify_webhook.verified}"
  - expressions:
      - req.url.path == '/audit' && !actions.ngrok.verify_webhook.verified
    actions:
      - type: add-headers
        config:
          headers:
            x-webhook-error: "${actions.ngrok.verify_webhook.error.code}"
"#;

fn hmac_hex(secret: &str, parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Setup {
    gateway: Gateway,
    upstream: EchoUpstream,
    _data: TempDir,
}

async fn setup() -> Setup {
    let data = TempDir::new("webhooks");
    seed_secrets(
        data.path(),
        &[
            ("webhooks", "github", GITHUB_SECRET),
            ("webhooks", "stripe", STRIPE_SECRET),
            ("webhooks", "slack", SLACK_SECRET),
            ("webhooks", "twitter", TWITTER_SECRET),
            ("webhooks", "zoom", ZOOM_SECRET),
            ("webhooks", "xero", XERO_SECRET),
        ],
    );
    let upstream = EchoUpstream::start().await;
    let gateway = Gateway::start_with(
        POLICY,
        Options {
            args: vec!["--upstream".into(), upstream.url()],
            data_dir: Some(data.path()),
            ..Options::default()
        },
    );
    Setup {
        gateway,
        upstream,
        _data: data,
    }
}

#[track_caller]
fn assert_refused(reply: &common::Reply, detail: &str) {
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    assert_eq!(body["error"]["code"], "ERR_KEYGATE_3204", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(detail), "{message}");
    for secret in [GITHUB_SECRET, STRIPE_SECRET, SLACK_SECRET] {
        assert!(!reply.text().contains(secret));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_webhooks_pass_and_tampered_ones_never_reach_the_upstream() {
    let Setup {
        gateway, upstream, ..
    } = setup().await;
    let body = br#"{"action":"opened","number":1}"#;

    // GitHub.
    let signature = format!("sha256={}", hmac_hex(GITHUB_SECRET, &[body]));
    let reply = send(
        gateway.addr,
        Req::post("/github", body.to_vec()).header("x-hub-signature-256", signature.clone()),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, body, "the body is forwarded intact");

    let tampered = br#"{"action":"closed","number":1}"#;
    let reply = send(
        gateway.addr,
        Req::post("/github", tampered.to_vec()).header("x-hub-signature-256", signature),
    )
    .await
    .unwrap();
    assert_refused(
        &reply,
        "github webhook verification failed: the signature does not match",
    );
    let unsigned = send(gateway.addr, Req::post("/github", body.to_vec()))
        .await
        .unwrap();
    assert_refused(&unsigned, "x-hub-signature-256 header is missing");
    assert_eq!(
        upstream.requests().len(),
        1,
        "refused webhooks are not forwarded"
    );

    // Stripe: a fresh signature passes, the same request signed six minutes ago does not.
    let stripe_body = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
    let stripe_header = |t: u64| {
        let t = t.to_string();
        let v1 = hmac_hex(STRIPE_SECRET, &[t.as_bytes(), b".", stripe_body]);
        format!("t={t},v1={v1}")
    };
    let reply = send(
        gateway.addr,
        Req::post("/stripe", stripe_body.to_vec()).header("stripe-signature", stripe_header(now())),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(upstream.requests().len(), 2);
    let replayed = send(
        gateway.addr,
        Req::post("/stripe", stripe_body.to_vec())
            .header("stripe-signature", stripe_header(now() - 360)),
    )
    .await
    .unwrap();
    assert_refused(&replayed, "300 seconds");
    assert_eq!(upstream.requests().len(), 2);

    // Slack: `v0:<timestamp>:<body>` with the timestamp in its own header.
    let slack_body = b"token=abc&team_id=T1&command=%2Fdeploy&text=prod";
    let ts = now().to_string();
    let slack_signature = format!(
        "v0={}",
        hmac_hex(SLACK_SECRET, &[b"v0:", ts.as_bytes(), b":", slack_body])
    );
    let slack = |body: &[u8]| {
        Req::post("/slack", body.to_vec())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", ts.clone())
            .header("x-slack-signature", slack_signature.clone())
    };
    let reply = send(gateway.addr, slack(slack_body)).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = upstream.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].body, slack_body);
    let reply = send(
        gateway.addr,
        slack(b"token=abc&team_id=T1&command=%2Fdeploy&text=all"),
    )
    .await
    .unwrap();
    assert_refused(&reply, "the signature does not match");
    assert_eq!(upstream.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn enforce_false_forwards_and_publishes_the_verdict() {
    let Setup {
        gateway, upstream, ..
    } = setup().await;
    let body = br#"{"zen":"Keep it logically awesome."}"#;
    let signature = format!("sha256={}", hmac_hex(GITHUB_SECRET, &[body]));

    let reply = send(
        gateway.addr,
        Req::post("/audit", body.to_vec()).header("x-hub-signature-256", signature),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let forged = send(
        gateway.addr,
        Req::post("/audit", body.to_vec())
            .header("x-hub-signature-256", format!("sha256={}", "0".repeat(64))),
    )
    .await
    .unwrap();
    assert_eq!(forged.status, 200, "{}", forged.text());

    let seen = upstream.requests();
    assert_eq!(seen.len(), 2);
    let header = |i: usize, name: &str| seen[i].headers.get(name).and_then(|v| v.first()).cloned();
    assert_eq!(header(0, "x-webhook-verified").as_deref(), Some("true"));
    assert_eq!(header(0, "x-webhook-error"), None);
    assert_eq!(header(1, "x-webhook-verified").as_deref(), Some("false"));
    assert_eq!(
        header(1, "x-webhook-error").as_deref(),
        Some("ERR_KEYGATE_3204")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn twitter_crc_challenge_is_answered_by_the_gateway() {
    let Setup {
        gateway, upstream, ..
    } = setup().await;
    let reply = send(gateway.addr, Req::get("/twitter?crc_token=abc123"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    // base64(HMAC-SHA256("consumer-secret", "abc123")), computed with Python's hmac.
    assert_eq!(
        reply.json()["response_token"],
        "sha256=uWCvRjzPn3Ze439/BvadzeJY3nkdXavefSSjmCbY1dY="
    );
    assert!(upstream.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn zoom_and_xero_endpoint_checks_are_answered_by_the_gateway() {
    let Setup {
        gateway, upstream, ..
    } = setup().await;

    // Zoom's URL validation, signed like any event, gets the plain token's HMAC back.
    let body =
        br#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event":"endpoint.url_validation"}"#;
    let ts = now().to_string();
    let signature = format!(
        "v0={}",
        hmac_hex(ZOOM_SECRET, &[b"v0:", ts.as_bytes(), b":", body])
    );
    let zoom = |signature: String| {
        Req::post("/zoom", body.to_vec())
            .header("x-zm-request-timestamp", ts.clone())
            .header("x-zm-signature", signature)
    };
    let reply = send(gateway.addr, zoom(signature)).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json();
    assert_eq!(answer["plainToken"], "qgg8vlvZRS6UYooatFL8Aw");
    assert_eq!(
        answer["encryptedToken"],
        hmac_hex(ZOOM_SECRET, &[b"qgg8vlvZRS6UYooatFL8Aw"])
    );
    // Unsigned, it is refused: the answer would be a signing oracle.
    let reply = send(gateway.addr, zoom(format!("v0={}", "0".repeat(64))))
        .await
        .unwrap();
    assert_refused(&reply, "zoom webhook verification failed");

    // Xero's intent to receive: a signed empty event list gets 200, a bad signature 401.
    let intent =
        br#"{"events":[],"firstEventSequence":0,"lastEventSequence":0,"entropy":"S0M3R4ND0M"}"#;
    // base64(HMAC-SHA256("xero-key", intent)), computed with Python's hmac.
    let signed = "zWtvWh4cFp1gPNzShj+UAYFW39m0UrO7c13XS5jWK20=";
    let reply = send(
        gateway.addr,
        Req::post("/xero", intent.to_vec()).header("x-xero-signature", signed),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.body.is_empty());
    let reply = send(
        gateway.addr,
        Req::post("/xero", intent.to_vec()).header("x-xero-signature", "AAAA"),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "ERR_KEYGATE_3401");
    assert!(
        upstream.requests().is_empty(),
        "handshakes never reach the upstream"
    );
}

/// `keygate policy check` on one `verify-webhook` config: (exit code, stderr).
fn check(config: &str) -> (Option<i32>, String) {
    common::policy_check(&format!(
        "on_http_request:\n  - actions:\n      - type: verify-webhook\n        config:\n{config}"
    ))
}

#[test]
fn load_time_refusals_name_the_field_and_the_reason() {
    let (code, err) = check("          provider: github\n          secret: s3cret\n");
    assert_eq!((code, err.as_str()), (Some(0), ""));

    let (code, err) = check("          provider: gitbub\n          secret: s3cret\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("config.provider") && err.contains("unknown provider 'gitbub'"),
        "{err}"
    );

    let (code, err) = check("          provider: sns\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("config.provider") && err.contains("amazonaws.com"),
        "{err}"
    );

    let (code, err) = check("          provider: stripe\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("provider 'stripe' needs a secret"), "{err}");

    let (code, err) = check("          provider: sendgrid\n          secret: not-a-key\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("config.secret") && err.contains("P-256 public key"),
        "{err}"
    );
}
