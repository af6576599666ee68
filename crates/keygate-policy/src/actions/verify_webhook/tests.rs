//! Scheme tests. Vectors marked "documented" are the vendor's own published examples; the
//! others were computed independently with Python's `hmac` / `cryptography`, e.g. for Stripe:
//! `hmac.new(b"whsec_test_secret", b'1700000000.{"id":"evt_1",...}', hashlib.sha256).hexdigest()`.

use http::HeaderMap;

use super::providers::{self, Scheme, PROVIDERS};
use super::request::Signed;
use super::{check, ecdsa, handshake, Failure};

const NOW: i64 = 1_700_000_000;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    map
}

/// Verifies a POST carrying `pairs` and `body`, called at `urls`, at time `now`.
fn verify_at(
    provider: &str,
    secret: &str,
    pairs: &[(&str, &str)],
    body: &[u8],
    urls: &[&str],
    now: i64,
) -> Result<(), Failure> {
    let provider = providers::find(provider).expect("known provider");
    let headers = headers(pairs);
    let urls: Vec<String> = urls.iter().map(|u| u.to_string()).collect();
    let public_key = match provider.scheme {
        Scheme::Ecdsa { .. } => Some(ecdsa::public_key(secret)?),
        _ => None,
    };
    check(
        provider.scheme,
        public_key.as_ref(),
        secret,
        &Signed {
            method: "POST",
            headers: &headers,
            body,
            urls: &urls,
            now,
        },
    )
}

fn verify(
    provider: &str,
    secret: &str,
    pairs: &[(&str, &str)],
    body: &[u8],
) -> Result<(), Failure> {
    verify_at(provider, secret, pairs, body, &[], NOW)
}

#[track_caller]
fn assert_mismatch(outcome: Result<(), Failure>) {
    assert!(matches!(outcome, Err(Failure::Mismatch)), "{outcome:?}");
}

#[test]
fn github_documented_example() {
    let secret = "It's a Secret to Everybody";
    let signature = (
        "x-hub-signature-256",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    );
    verify("github", secret, &[signature], b"Hello, World!").unwrap();
    // The Meta family shares the scheme.
    verify("whatsapp", secret, &[signature], b"Hello, World!").unwrap();
    assert_mismatch(verify("github", secret, &[signature], b"Hello, World?"));
    assert_mismatch(verify(
        "github",
        "another secret",
        &[signature],
        b"Hello, World!",
    ));
    assert!(matches!(
        verify("github", secret, &[], b"Hello, World!"),
        Err(Failure::MissingHeader("x-hub-signature-256"))
    ));
    // Without the `sha256=` prefix the value is not a signature of this scheme.
    assert!(matches!(
        verify(
            "github",
            secret,
            &[("x-hub-signature-256", &signature.1[7..])],
            b"Hello, World!"
        ),
        Err(Failure::Malformed(_))
    ));
}

const STRIPE_BODY: &[u8] = br#"{"id":"evt_1","type":"charge.succeeded"}"#;
const STRIPE_V1: &str = "c0475716eb2200f1fe97fcf35a3c05d1fd4f8ba9a07a596730c8d18bb87c0672";

fn stripe(header: &str, body: &[u8], now: i64) -> Result<(), Failure> {
    verify_at(
        "stripe",
        "whsec_test_secret",
        &[("stripe-signature", header)],
        body,
        &[],
        now,
    )
}

#[test]
fn stripe_signature_and_five_minute_tolerance() {
    let header = format!("t=1700000000,v1={STRIPE_V1},v0=ignored");
    stripe(&header, STRIPE_BODY, NOW).unwrap();
    stripe(&header, STRIPE_BODY, NOW + 300).unwrap();
    stripe(&header, STRIPE_BODY, NOW - 300).unwrap();
    assert!(matches!(
        stripe(&header, STRIPE_BODY, NOW + 301),
        Err(Failure::Stale { tolerance: 300 })
    ));
    assert!(matches!(
        stripe(&header, STRIPE_BODY, NOW - 301),
        Err(Failure::Stale { tolerance: 300 })
    ));
    // A rolled secret: any v1 entry may match.
    stripe(
        &format!("t=1700000000,v1={},v1={STRIPE_V1}", "ab".repeat(32)),
        STRIPE_BODY,
        NOW,
    )
    .unwrap();
    // The timestamp is signed: moving it breaks the signature.
    assert_mismatch(stripe(
        &format!("t=1700000001,v1={STRIPE_V1}"),
        STRIPE_BODY,
        NOW,
    ));
    assert_mismatch(stripe(
        &header,
        br#"{"id":"evt_2","type":"charge.succeeded"}"#,
        NOW,
    ));
    assert!(matches!(
        stripe(&format!("v1={STRIPE_V1}"), STRIPE_BODY, NOW),
        Err(Failure::Malformed("stripe-signature"))
    ));
}

#[test]
fn slack_documented_example() {
    // Slack's "Verifying requests from Slack" walk-through.
    let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    let pairs = [
        (
            "x-slack-signature",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        ),
        ("x-slack-request-timestamp", "1531420618"),
    ];
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    verify_at("slack", secret, &pairs, body, &[], 1_531_420_618 + 300).unwrap();
    assert!(matches!(
        verify_at("slack", secret, &pairs, body, &[], 1_531_420_618 + 301),
        Err(Failure::Stale { tolerance: 300 })
    ));
    let mut tampered = body.to_vec();
    tampered[6] = b'X';
    assert_mismatch(verify_at(
        "slack",
        secret,
        &pairs,
        &tampered,
        &[],
        1_531_420_618,
    ));
    assert!(matches!(
        verify_at("slack", secret, &pairs[..1], body, &[], 1_531_420_618),
        Err(Failure::MissingHeader("x-slack-request-timestamp"))
    ));
}

#[test]
fn svix_documented_example_under_both_header_names() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let body = br#"{"test": 2432232314}"#;
    let signature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    let at = 1_614_265_330;
    let svix = [
        ("svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
        ("svix-timestamp", "1614265330"),
        ("svix-signature", signature),
    ];
    verify_at("svix", secret, &svix, body, &[], at).unwrap();
    verify_at("clerk", secret, &svix, body, &[], at + 300).unwrap();
    assert!(matches!(
        verify_at("svix", secret, &svix, body, &[], at + 301),
        Err(Failure::Stale { tolerance: 300 })
    ));
    // Standard Webhooks header names (Brex), several signatures in one header.
    let standard = [
        ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
        ("webhook-timestamp", "1614265330"),
        (
            "webhook-signature",
            "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
    ];
    verify_at("brex", secret, &standard, body, &[], at).unwrap();
    let replayed_id = [("svix-id", "msg_other"), svix[1], svix[2]];
    assert_mismatch(verify_at("svix", secret, &replayed_id, body, &[], at));
    assert!(matches!(
        verify_at("svix", "whsec_not*base64", &svix, body, &[], at),
        Err(Failure::Secret(_))
    ));
}

#[test]
fn twilio_documented_example_signs_url_and_sorted_form_params() {
    // Twilio's "Webhooks security" example: the parameters arrive in any order.
    let body = b"To=%2B18005551212&CallSid=CA1234567890ABCDE&Caller=%2B12349013030&From=%2B12349013030&Digits=1234";
    let pairs = [
        ("x-twilio-signature", "0/KCTR6DLpKmkAf8muzZqo1nDgQ="),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let urls = [
        "https://mycompany.com:443/myapp.php?foo=1&bar=2",
        "https://mycompany.com/myapp.php?foo=1&bar=2",
    ];
    verify_at("twilio", "12345", &pairs, body, &urls, NOW).unwrap();
    assert_mismatch(verify_at("twilio", "12345", &pairs, body, &urls[..1], NOW));
    let tampered = b"To=%2B18005551212&CallSid=CA1234567890ABCDE&Caller=%2B12349013030&From=%2B12349013030&Digits=9999";
    assert_mismatch(verify_at("twilio", "12345", &pairs, tampered, &urls, NOW));
}

#[test]
fn twilio_json_bodies_are_vouched_for_by_body_sha256() {
    let hash = "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862";
    let url = format!("https://hooks.example.com/twilio?bodySHA256={hash}");
    let pairs = [
        ("x-twilio-signature", "RBTNh9TRunV8UFayinfKu1JBGDg="),
        ("content-type", "application/json"),
    ];
    verify_at("twilio", "12345", &pairs, br#"{"a":1}"#, &[&url], NOW).unwrap();
    assert_mismatch(verify_at(
        "twilio",
        "12345",
        &pairs,
        br#"{"a":2}"#,
        &[&url],
        NOW,
    ));
    assert!(matches!(
        verify_at(
            "twilio",
            "12345",
            &pairs,
            br#"{"a":1}"#,
            &["https://hooks.example.com/twilio"],
            NOW
        ),
        Err(Failure::Body(_))
    ));
}

#[test]
fn mandrill_shares_twilios_url_and_form_scheme() {
    let pairs = [
        ("x-mandrill-signature", "zmNUN7raIQX2/pwojDGJuFgnd8Y="),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let body = b"mandrill_events=%5B%7B%22event%22%3A%22send%22%7D%5D";
    let url = ["https://hooks.example.com/mandrill"];
    verify_at("mailchimp", "mandrill-key", &pairs, body, &url, NOW).unwrap();
}

#[test]
fn base64_body_schemes() {
    verify(
        "shopify",
        "hush",
        &[(
            "x-shopify-hmac-sha256",
            "qBvrsZF7RfB1iS6BX6IHqJTp5L911P7intnPeTPsH0I=",
        )],
        br#"{"id":820982911946154508}"#,
    )
    .unwrap();
    assert_mismatch(verify(
        "shopify",
        "hush",
        &[(
            "x-shopify-hmac-sha256",
            "qBvrsZF7RfB1iS6BX6IHqJTp5L911P7intnPeTPsH0I=",
        )],
        br#"{"id":820982911946154509}"#,
    ));
    // Teams keys the HMAC with the base64-decoded security token.
    verify(
        "microsoft_teams",
        "dGVhbXMtcmF3LWtleS0wMTIzNDU2Nzg5",
        &[(
            "authorization",
            "HMAC 3VZI2Ovz91YyPZA3ZxCMaqdRulFQqS2Kx805WHoM00M=",
        )],
        br#"{"type":"message"}"#,
    )
    .unwrap();
}

#[test]
fn sha512_and_signature_lists() {
    verify(
        "terraform",
        "tfe-token",
        &[(
            "x-tfe-notification-signature",
            "b28867ec6757e6d81bec6c696e2ab2d456d8def470f930938d4d8889433b166880b836f6f8c1ca788ae7cbce4507ebba673feedbc74efaa3e586e5266c618dea",
        )],
        br#"{"run_id":"run-1"}"#,
    )
    .unwrap();
    let pagerduty = format!(
        "v1={},v1=77fb999cdab1e010c5ae57458638a56696f56610cdadede6c7ceb94c77843e0b",
        "00".repeat(32)
    );
    verify(
        "pagerduty",
        "pd-secret",
        &[("x-pagerduty-signature", &pagerduty)],
        br#"{"event":{}}"#,
    )
    .unwrap();
}

#[test]
fn gitlab_compares_the_token() {
    verify("gitlab", "tok-1", &[("x-gitlab-token", "tok-1")], b"{}").unwrap();
    assert_mismatch(verify(
        "gitlab",
        "tok-1",
        &[("x-gitlab-token", "tok-2")],
        b"{}",
    ));
    assert_mismatch(verify(
        "gitlab",
        "tok-1",
        &[("x-gitlab-token", "tok-1x")],
        b"{}",
    ));
}

#[test]
fn timestamp_header_schemes_and_formats() {
    // Zendesk: ISO 8601 timestamp, then the body.
    verify(
        "zendesk",
        "zd-secret",
        &[
            (
                "x-zendesk-webhook-signature",
                "dBxfV9kN8cK00u3Y9T4JPm7UMN4dCBs1ks//9miRbd0=",
            ),
            (
                "x-zendesk-webhook-signature-timestamp",
                "2023-11-14T22:13:20Z",
            ),
        ],
        br#"{"type":"ticket"}"#,
    )
    .unwrap();
    // Box: the body, then the timestamp; either signature header; ten minutes.
    let box_pairs = [
        ("box-signature-primary", "AAAA"),
        (
            "box-signature-secondary",
            "zBsqv/doJttrhXnPygWPP4KdrncAaFt3woz1xaZ/JAA=",
        ),
        ("box-delivery-timestamp", "2023-11-14T22:13:20Z"),
    ];
    let box_body = br#"{"type":"webhook_event"}"#;
    verify_at("box", "box-primary", &box_pairs, box_body, &[], NOW + 600).unwrap();
    assert!(matches!(
        verify_at("box", "box-primary", &box_pairs, box_body, &[], NOW + 601),
        Err(Failure::Stale { tolerance: 600 })
    ));
    // Orb: an ISO timestamp without offset reads as UTC.
    verify(
        "orb",
        "orb-secret",
        &[
            (
                "x-orb-signature",
                "v1=d0d2c5612af8f10af166611d76984777879a31622056ec10062ab82028ec47c2",
            ),
            ("x-orb-timestamp", "2023-11-14T22:13:20.123456"),
        ],
        br#"{"type":"invoice.issued"}"#,
    )
    .unwrap();
    // Airship: `<timestamp>:<body>`, default 180-second window.
    let airship = [
        (
            "x-ua-signature",
            "1e8af33c622b3dfffe4bac00339b24d91cb0e6840e9c331f6d79b5cf4d4c4299",
        ),
        ("x-ua-timestamp", "1700000000"),
    ];
    verify_at(
        "airship",
        "ua-secret",
        &airship,
        br#"{"push":1}"#,
        &[],
        NOW + 180,
    )
    .unwrap();
    assert!(matches!(
        verify_at(
            "airship",
            "ua-secret",
            &airship,
            br#"{"push":1}"#,
            &[],
            NOW + 181
        ),
        Err(Failure::Stale { tolerance: 180 })
    ));
    // TikTok: Stripe's layout with `s=`.
    verify(
        "tiktok",
        "tt-secret",
        &[(
            "tiktok-signature",
            "t=1700000000,s=b674f6e6b61e2e273eacd5ffe640faa25d2cf15174dc6161a292f5954861d41b",
        )],
        br#"{"event":"x"}"#,
    )
    .unwrap();
}

#[test]
fn url_schemes() {
    // HubSpot v3: method, URL, body, timestamp in milliseconds.
    let hubspot = [
        (
            "x-hubspot-signature-v3",
            "oM58os/eqf1zcHCznzRvAcmAdNCNYvEMs1wNORoqzRY=",
        ),
        ("x-hubspot-request-timestamp", "1700000000123"),
    ];
    let url = ["https://hooks.example.com/hubspot?x=1"];
    verify_at(
        "hubspot",
        "hs-secret",
        &hubspot,
        br#"[{"eventId":1}]"#,
        &url,
        NOW,
    )
    .unwrap();
    assert_mismatch(verify_at(
        "hubspot",
        "hs-secret",
        &hubspot,
        br#"[{"eventId":1}]"#,
        &["https://hooks.example.com/other?x=1"],
        NOW,
    ));
    // Square: URL + body.
    verify_at(
        "square",
        "sq-key",
        &[(
            "x-square-hmacsha256-signature",
            "TliDSn/F8B0HsHZRdt/ZIehDOlOaUq3Psoxl35HUSVo=",
        )],
        br#"{"merchant_id":"M1"}"#,
        &["https://hooks.example.com/square"],
        NOW,
    )
    .unwrap();
    // Plivo V2: the URL without its query, then the nonce.
    verify_at(
        "plivo",
        "plivo-token",
        &[
            (
                "x-plivo-signature-v2",
                "FZBnarpe9Y9vd3tQr8bVpvXY4/JzWVP3WOSHssyda3g=",
            ),
            ("x-plivo-signature-v2-nonce", "12345678901234567890"),
        ],
        b"",
        &["https://hooks.example.com/plivo?CallUUID=1"],
        NOW,
    )
    .unwrap();
}

const SENDGRID_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAERxw+dYxJBChbun5TEY7Q9SSt6wdX0lvS+Oew1236cUzdUg96yoqLkXrMN/Ud6PDJu+OthYOC5wLcJaEtCfeoWA==";
const SENDGRID_SIGNATURE: &str = "MEUCIQCoEG8Khwu00w2eSWI6HBC9RskzpA12SLsbdDRvlOVpMQIgUXZCKHTTnxGaXu9Ejt3r0meaYEk2hKIBw+kvjq5Gx9M=";

#[test]
fn sendgrid_ecdsa() {
    // Key pair and signature made with Python's `cryptography` (ECDSA P-256, SHA-256, DER).
    let body = br#"[{"email":"a@example.com","event":"delivered"}]"#;
    let pairs = [
        ("x-twilio-email-event-webhook-signature", SENDGRID_SIGNATURE),
        ("x-twilio-email-event-webhook-timestamp", "1700000000"),
    ];
    verify("sendgrid", SENDGRID_KEY, &pairs, body).unwrap();
    let pem = format!("-----BEGIN PUBLIC KEY-----\n{SENDGRID_KEY}\n-----END PUBLIC KEY-----\n");
    verify("sendgrid", &pem, &pairs, body).unwrap();
    assert_mismatch(verify(
        "sendgrid",
        SENDGRID_KEY,
        &pairs,
        br#"[{"email":"b@example.com","event":"delivered"}]"#,
    ));
    let later = [
        pairs[0],
        ("x-twilio-email-event-webhook-timestamp", "1700000001"),
    ];
    assert_mismatch(verify("sendgrid", SENDGRID_KEY, &later, body));
    assert!(matches!(
        verify_at("sendgrid", SENDGRID_KEY, &pairs, body, &[], NOW + 181),
        Err(Failure::Stale { tolerance: 180 })
    ));
    assert!(matches!(
        ecdsa::public_key("not a key"),
        Err(Failure::Secret(_))
    ));
}

#[test]
fn mailgun_reads_the_body() {
    let signature = "faa14eeb10514f6cd3aa81396f057148bba996b40e67ab5bc78e24079b0cbe54";
    let json = format!(
        r#"{{"signature":{{"timestamp":"1700000000","token":"tok123","signature":"{signature}"}},"event-data":{{}}}}"#
    );
    verify("mailgun", "key-mailgun", &[], json.as_bytes()).unwrap();
    let form = format!("timestamp=1700000000&token=tok123&signature={signature}&event=opened");
    verify("mailgun", "key-mailgun", &[], form.as_bytes()).unwrap();
    let forged = json.replace("tok123", "tok124");
    assert_mismatch(verify("mailgun", "key-mailgun", &[], forged.as_bytes()));
    assert!(matches!(
        verify("mailgun", "key-mailgun", &[], b"{}"),
        Err(Failure::Body(_))
    ));
}

#[test]
fn an_empty_secret_never_verifies() {
    // HMAC under an empty key is computable by anyone.
    assert!(matches!(
        verify("github", "", &[("x-hub-signature-256", "sha256=00")], b""),
        Err(Failure::EmptySecret)
    ));
}

fn get(uri: &str, pairs: &[(&str, &str)]) -> http::request::Parts {
    let mut builder = http::Request::get(uri);
    for (name, value) in pairs {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap().into_parts().0
}

async fn text(response: http::Response<crate::body::Body>) -> String {
    use http_body_util::BodyExt;
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn twitter_crc_is_answered_for_plausible_tokens_only() {
    let crc = providers::Handshake::TwitterCrc;
    let answer = handshake::before(crc, "consumer-secret", &get("/hook?crc_token=abc123", &[]))
        .expect("answered");
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = serde_json::from_str(&text(answer).await).unwrap();
    assert_eq!(
        body["response_token"],
        "sha256=uWCvRjzPn3Ze439/BvadzeJY3nkdXavefSSjmCbY1dY="
    );
    // A "token" shaped like an event body would turn the answer into a signature for it.
    let forged = "/hook?crc_token=%7B%22event%22%3A1%7D";
    assert!(handshake::before(crc, "consumer-secret", &get(forged, &[])).is_none());
    assert!(handshake::before(crc, "consumer-secret", &get("/hook", &[])).is_none());
}

#[tokio::test]
async fn worldline_echoes_its_verification_header() {
    let echo = providers::Handshake::WorldlineEcho;
    let head = get(
        "/hook",
        &[("x-gcs-webhooks-endpoint-verification", "r4nd0m")],
    );
    let answer = handshake::before(echo, "", &head).expect("answered");
    assert_eq!(answer.headers()["content-type"], "text/plain");
    assert_eq!(text(answer).await, "r4nd0m");
    assert!(handshake::before(echo, "", &get("/hook", &[])).is_none());
}

#[tokio::test]
async fn zoom_url_validation_is_answered_once_signed() {
    let body = br#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1700000000000,"event":"endpoint.url_validation"}"#;
    let pairs = [
        (
            "x-zm-signature",
            "v0=60b4888a9ac138efe561f64791acb0cea3db8f71fdad6cc16b31ef86384f2235",
        ),
        ("x-zm-request-timestamp", "1700000000"),
    ];
    verify("zoom", "zoom-secret", &pairs, body).unwrap();
    let zoom = providers::Handshake::ZoomUrlValidation;
    let answer = handshake::after(zoom, "zoom-secret", body).expect("answered");
    let answer: serde_json::Value = serde_json::from_str(&text(answer).await).unwrap();
    assert_eq!(answer["plainToken"], "qgg8vlvZRS6UYooatFL8Aw");
    assert_eq!(
        answer["encryptedToken"],
        "b17f0320a1322a509340a1a835b3d9edbc491f0b0790ed2d20d0604d39dfe922"
    );
    assert!(handshake::after(zoom, "zoom-secret", br#"{"event":"meeting.started"}"#).is_none());
}

#[test]
fn xero_intent_to_receive() {
    let body =
        br#"{"events":[],"firstEventSequence":0,"lastEventSequence":0,"entropy":"S0M3R4ND0M"}"#;
    let pairs = [(
        "x-xero-signature",
        "zWtvWh4cFp1gPNzShj+UAYFW39m0UrO7c13XS5jWK20=",
    )];
    verify("xero", "xero-key", &pairs, body).unwrap();
    let xero = providers::Handshake::XeroIntent;
    let answer = handshake::after(xero, "xero-key", body).expect("answered");
    assert_eq!(answer.status(), 200);
    assert!(
        handshake::after(xero, "xero-key", br#"{"events":[{"eventType":"CREATE"}]}"#).is_none()
    );
}

/// ngrok's provider list (reference section 3.14), in its order.
const NGROK_PROVIDERS: &str = "aftership, airship, alchemy, sns, autodesk, bitbucket, bolt, box, \
    brex, buildkite, calendly, castle, chargify, circleci, clearbit, clerk, coinbase, contentful, \
    docusign, dropbox, facebook_graph_api, facebook_messenger, frameio, github, gitlab, go1, \
    heroku, hostedhooks, hubspot, graphcms, instagram, intercom, jira, launch_darkly, linear, \
    mailchimp, mailgun, microsoft_teams, modern_treasury, mongodb, mux, orb, orbit, pagerduty, \
    pinwheel, plivo, pusher, sendgrid, sentry, shopify, signal_sciences, slack, sonatype, square, \
    stripe, svix, terraform, tiktok, trendmicro_conformity, twilio, twitter, typeform, vmware, \
    webex, whatsapp, worldline, xero, zendesk, zoom";

#[test]
fn the_table_lists_ngroks_providers_once_each() {
    let expected: Vec<&str> = NGROK_PROVIDERS.split(", ").map(str::trim).collect();
    let listed: Vec<&str> = PROVIDERS.iter().map(|p| p.name).collect();
    assert_eq!(listed, expected);
    let unsupported: Vec<&str> = PROVIDERS
        .iter()
        .filter(|p| matches!(p.scheme, Scheme::Unsupported(_)))
        .map(|p| p.name)
        .collect();
    assert_eq!(
        unsupported,
        [
            "sns",
            "contentful",
            "go1",
            "hostedhooks",
            "graphcms",
            "orbit",
            "pinwheel",
            "signal_sciences",
            "trendmicro_conformity",
            "vmware"
        ]
    );
}
