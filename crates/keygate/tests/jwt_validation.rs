//! End to end: `jwt-validation` through the real binary, against a JWKS served by the test on
//! loopback (it counts fetches and can rotate keys). Tokens are minted here with the fixture keys
//! in `fixtures/jwt/` (RSA `rsa-1`, `rsa-2`, P-256 `ec-1`).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{send, EchoUpstream, Gateway, Reply, Req};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::net::TcpListener;

const RSA_1_KEY: &str = include_str!("fixtures/jwt/rsa-1.key.pem");
const RSA_1_PUB: &str = include_str!("fixtures/jwt/rsa-1.pub.pem");
const RSA_1_JWK: &str = include_str!("fixtures/jwt/rsa-1.jwk.json");
const RSA_2_KEY: &str = include_str!("fixtures/jwt/rsa-2.key.pem");
const RSA_2_JWK: &str = include_str!("fixtures/jwt/rsa-2.jwk.json");
const EC_1_KEY: &str = include_str!("fixtures/jwt/ec-1.key.pem");
const EC_1_JWK: &str = include_str!("fixtures/jwt/ec-1.jwk.json");

const ISSUER: &str = "https://idp.keygate.test/";

/// A JWKS endpoint on loopback that counts requests; its document can be replaced (rotation).
struct JwksServer {
    url: String,
    hits: Arc<AtomicUsize>,
    document: Arc<Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(jwks: &[&str]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let hits = Arc::new(AtomicUsize::new(0));
        let document = Arc::new(Mutex::new(jwks_document(jwks)));
        let (count, doc) = (hits.clone(), document.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                stream.set_nodelay(true).unwrap();
                let (count, doc) = (count.clone(), doc.clone());
                let service = hyper::service::service_fn(move |_request| {
                    count.fetch_add(1, Ordering::SeqCst);
                    let body = doc.lock().unwrap().clone();
                    let response = hyper::Response::builder()
                        .header("content-type", "application/json")
                        .header("cache-control", "public, max-age=600")
                        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                        .unwrap();
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        Self {
            url,
            hits,
            document,
            task,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn publish(&self, jwks: &[&str]) {
        *self.document.lock().unwrap() = jwks_document(jwks);
    }

    /// Waits for the gateway's fetch at load.
    async fn wait_for_first_fetch(&self) {
        for _ in 0..500 {
            if self.hits() > 0 {
                // Let the fetched keys land in the gateway's cache.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the gateway never fetched the JWKS");
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn jwks_document(jwks: &[&str]) -> String {
    format!("{{\"keys\": [{}]}}", jwks.join(","))
}

/// Validates a bearer token (RS256 or ES256), then requires scope `read` and forwards `sub`.
fn policy(jwks_url: &str) -> String {
    format!(
        r#"
on_http_request:
  - actions:
      - type: jwt-validation
        config:
          issuer:
            allow_list:
              - value: {ISSUER}
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
            allowed_algorithms:
              - RS256
              - ES256
            keys:
              sources:
                additional_jkus:
                  - {jwks_url}
  - expressions:
      - "!('read' in actions.ngrok.jwt_validation.tokens[0].payload.scope.split(' '))"
    actions:
      - type: custom-response
        config:
          status_code: 403
          body: '{{"error": {{"message": "scope read required", "type": "permission_error"}}}}'
  - actions:
      - type: add-headers
        config:
          headers:
            x-jwt-sub: ${{actions.ngrok.jwt_validation.tokens[0].payload.sub}}
            x-jwt-verified: ${{string(actions.ngrok.jwt_validation.tokens[0].verified)}}
"#
    )
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": ["keygate-gateway", "other"],
        "sub": "user-42",
        "scope": "read write",
        "iat": now(),
        "exp": now() + 600,
    })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn sign(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    encode(&header, claims, key).unwrap()
}

fn rsa(kid: &str, pem: &str, claims: &Value) -> String {
    sign(
        Algorithm::RS256,
        kid,
        &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        claims,
    )
}

fn b64(value: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

fn assert_unauthorized(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {}", reply.text());
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\""),
        "{what}"
    );
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{what}"
    );
    let code = reply.json()["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        code.starts_with("ERR_KEYGATE_34"),
        "{what}: {}",
        reply.text()
    );
}

async fn start() -> (JwksServer, EchoUpstream, Gateway) {
    let jwks = JwksServer::start(&[RSA_1_JWK, EC_1_JWK]).await;
    let upstream = EchoUpstream::start().await;
    let gateway = Gateway::start(&policy(&jwks.url), &["--upstream", &upstream.url()]);
    jwks.wait_for_first_fetch().await;
    (jwks, upstream, gateway)
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_tokens_pass_and_claims_reach_later_rules() {
    let (jwks, upstream, gateway) = start().await;

    let reply = send(
        gateway.addr,
        Req::get("/v1/models").bearer(&rsa("rsa-1", RSA_1_KEY, &claims())),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let ec = sign(
        Algorithm::ES256,
        "ec-1",
        &EncodingKey::from_ec_pem(EC_1_KEY.as_bytes()).unwrap(),
        &claims(),
    );
    let reply = send(gateway.addr, Req::get("/v1/models").bearer(&ec))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = upstream.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].headers["x-jwt-sub"], vec!["user-42"]);
    assert_eq!(seen[0].headers["x-jwt-verified"], vec!["true"]);

    // A valid token without scope `read` is stopped by the later rule.
    let write_only = rsa("rsa-1", RSA_1_KEY, &with(claims(), "scope", json!("write")));
    let reply = send(gateway.addr, Req::get("/v1/models").bearer(&write_only))
        .await
        .unwrap();
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert_eq!(upstream.requests().len(), 2);
    assert_eq!(jwks.hits(), 1, "known keys come from the cache");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_tokens_are_refused_before_the_upstream() {
    let (_jwks, upstream, gateway) = start().await;
    let rsa_key = EncodingKey::from_rsa_pem(RSA_1_KEY.as_bytes()).unwrap();
    let cases: Vec<(&str, Req<'_>)> = vec![
        (
            "expired",
            Req::get("/").bearer(&rsa(
                "rsa-1",
                RSA_1_KEY,
                &with(claims(), "exp", json!(now() - 120)),
            )),
        ),
        (
            "not yet valid",
            Req::get("/").bearer(&rsa(
                "rsa-1",
                RSA_1_KEY,
                &with(claims(), "nbf", json!(now() + 600)),
            )),
        ),
        (
            "wrong issuer",
            Req::get("/").bearer(&rsa(
                "rsa-1",
                RSA_1_KEY,
                &with(claims(), "iss", json!("https://idp.keygate.test")),
            )),
        ),
        (
            "wrong audience",
            Req::get("/").bearer(&rsa(
                "rsa-1",
                RSA_1_KEY,
                &with(claims(), "aud", json!("someone-else")),
            )),
        ),
        (
            "signed by another key",
            Req::get("/").bearer(&rsa("rsa-1", RSA_2_KEY, &claims())),
        ),
        (
            "alg none",
            Req::get("/").bearer(&format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&claims())
            )),
        ),
        (
            "alg none with a signature",
            Req::get("/").bearer(&format!(
                "{}.{}.c2ln",
                b64(&json!({"alg": "none", "kid": "rsa-1"})),
                b64(&claims())
            )),
        ),
        (
            "HS256 signed with the RSA public key",
            Req::get("/").bearer(&sign(
                Algorithm::HS256,
                "rsa-1",
                &EncodingKey::from_secret(RSA_1_PUB.as_bytes()),
                &claims(),
            )),
        ),
        (
            "PS256 is not allowed",
            Req::get("/").bearer(&sign(Algorithm::PS256, "rsa-1", &rsa_key, &claims())),
        ),
        ("not a JWT", Req::get("/").bearer("not-a-jwt")),
        ("missing header", Req::get("/")),
        (
            "wrong prefix",
            Req::get("/").header(
                "authorization",
                format!("Token {}", rsa("rsa-1", RSA_1_KEY, &claims())),
            ),
        ),
    ];
    for (what, request) in cases {
        let reply = send(gateway.addr, request).await.unwrap();
        assert_unauthorized(&reply, what);
    }
    assert!(
        upstream.requests().is_empty(),
        "no refused request reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rotated_keys_are_fetched_and_forged_kids_do_not_flood_the_jwks() {
    let (jwks, upstream, gateway) = start().await;
    assert_eq!(jwks.hits(), 1);

    // A token naming an unknown kid costs one refetch...
    let unknown = rsa("not-yet", RSA_2_KEY, &claims());
    let reply = send(gateway.addr, Req::get("/").bearer(&unknown))
        .await
        .unwrap();
    assert_unauthorized(&reply, "unknown kid");
    assert_eq!(jwks.hits(), 2);

    // ...and the IdP rotating to rsa-2 right after is still honoured: the first token naming it
    // makes the gateway refetch once more (a burst of 3 refetches, one more every 20 s).
    jwks.publish(&[RSA_1_JWK, RSA_2_JWK]);
    let rotated = rsa("rsa-2", RSA_2_KEY, &claims());
    let reply = send(gateway.addr, Req::get("/").bearer(&rotated))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(jwks.hits(), 3);

    // 40 tokens with forged kids, some in parallel: they spend the rest of the burst, no more.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let token = rsa(&format!("forged-{i}"), RSA_2_KEY, &claims());
        let addr = gateway.addr;
        tasks.push(tokio::spawn(async move {
            send(addr, Req::get("/").bearer(&token)).await.unwrap()
        }));
    }
    for task in tasks {
        assert_unauthorized(&task.await.unwrap(), "forged kid");
    }
    assert_eq!(
        jwks.hits(),
        4,
        "forged kids cause at most the burst's fetches, not one per request"
    );
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_in_a_json_body_field() {
    let jwks = JwksServer::start(&[RSA_1_JWK]).await;
    let upstream = EchoUpstream::start().await;
    let policy = policy(&jwks.url)
        .replace("method: header", "method: body")
        .replace("name: Authorization", "name: access_token")
        .replace("prefix: \"Bearer \"\n", "\n");
    let gateway = Gateway::start(&policy, &["--upstream", &upstream.url()]);
    jwks.wait_for_first_fetch().await;

    let body = json!({"model": "gpt-4o-mini", "access_token": rsa("rsa-1", RSA_1_KEY, &claims())})
        .to_string();
    let reply = send(
        gateway.addr,
        Req::post("/v1/chat/completions", body.clone()),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].body,
        body.as_bytes(),
        "the body is forwarded unchanged"
    );
    assert_eq!(seen[0].headers["x-jwt-sub"], vec!["user-42"]);

    let missing = send(
        gateway.addr,
        Req::post("/v1/chat/completions", r#"{"model": "m"}"#),
    )
    .await
    .unwrap();
    assert_unauthorized(&missing, "no token field");
    let get = send(gateway.addr, Req::get("/v1/models")).await.unwrap();
    assert_unauthorized(&get, "GET has no body to read");
    assert_eq!(upstream.requests().len(), 1);
}

/// `keygate policy check` on `policy`: (exit code, stderr).
fn check(policy: &str) -> (Option<i32>, String) {
    common::policy_check(policy)
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_check_validates_without_fetching() {
    let jwks = JwksServer::start(&[RSA_1_JWK]).await;
    let good = policy(&jwks.url);
    assert_eq!(check(&good), (Some(0), String::new()));

    // The list shape of jws.keys (as ngrok's docs also show it) is accepted too.
    let list_shape = good.replace(
        &format!("            keys:\n              sources:\n                additional_jkus:\n                  - {}\n", jwks.url),
        &format!(
            "            keys:\n              - identification:\n                  - token_claims: [kid]\n                sources:\n                  - additional_jkus: ['{}']\n",
            jwks.url
        ),
    );
    assert_ne!(list_shape, good);
    assert_eq!(check(&list_shape).0, Some(0), "{}", check(&list_shape).1);

    let none = good.replace("              - ES256\n", "              - none\n");
    let (code, stderr) = check(&none);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("config.jws.allowed_algorithms[1]: 'none' is never allowed"),
        "{stderr}"
    );

    let hs = good.replace("              - ES256\n", "              - HS256\n");
    assert!(check(&hs)
        .1
        .contains("config.jws.allowed_algorithms[1]: 'HS256' is not supported"));

    let relative = good.replace(&jwks.url, "/jwks.json");
    assert!(check(&relative)
        .1
        .contains("config.jws.keys.sources.additional_jkus[0]: '/jwks.json' is not an absolute"));

    assert_eq!(jwks.hits(), 0, "policy check fetches nothing");
}
