//! End to end: `openid-connect` and `oauth` through the real binary, against the local OpenID
//! Connect provider of `keygate_mock::idp` (ID tokens signed with the fixture key `ec-1`). A
//! small cookie jar plays the browser; redirects are followed by hand.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::{seed_secrets, send, EchoUpstream, Gateway, Options, Reply, Req, TempDir};
use keygate_mock::idp::{IdpConfig, IdpUser, MockIdp};

const EC_1_KEY: &str = include_str!("fixtures/jwt/ec-1.key.pem");
const EC_1_JWK: &str = include_str!("fixtures/jwt/ec-1.jwk.json");
const CLIENT_ID: &str = "keygate-test";
const CLIENT_SECRET: &str = "idp-client-secret-1";
const SESSION_COOKIE: &str = "keygate_session_oidc";

fn ada() -> IdpUser {
    IdpUser {
        sub: "user-ada".into(),
        email: "ada@example.test".into(),
        name: "Ada Lovelace".into(),
    }
}

async fn idp(token_auth_methods: &[&str]) -> MockIdp {
    MockIdp::start(IdpConfig {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        signing_key_pem: EC_1_KEY.into(),
        jwk: EC_1_JWK.into(),
        user: ada(),
        token_auth_methods: token_auth_methods.iter().map(|m| m.to_string()).collect(),
        id_token_ttl: 300,
    })
    .await
    .expect("start the mock identity provider")
}

/// An `openid-connect` policy for `issuer` (client secret from the vault) with `extra` config
/// lines, passing the identity upstream in headers.
fn oidc_policy(issuer: &str, extra: &str) -> String {
    format!(
        r#"
on_http_request:
  - actions:
      - type: openid-connect
        config:
          issuer_url: {issuer}
          client_id: {CLIENT_ID}
          client_secret: "${{secrets.get('idp', 'client-secret')}}"
{extra}
      - type: add-headers
        config:
          headers:
            x-user-email: "${{actions.ngrok.oidc.identity.email}}"
            x-user-id: "${{actions.ngrok.oidc.identity.id}}"
            x-user-name: "${{actions.ngrok.oidc.identity.name}}"
"#
    )
}

struct Setup {
    idp: MockIdp,
    upstream: EchoUpstream,
    gateway: Gateway,
    _data: TempDir,
}

async fn start_oidc(extra: &str) -> Setup {
    let idp = idp(&["client_secret_basic", "client_secret_post"]).await;
    let upstream = EchoUpstream::start().await;
    let data = TempDir::new("oidc-data");
    seed_secrets(data.path(), &[("idp", "client-secret", CLIENT_SECRET)]);
    let gateway = Gateway::start_with(
        &oidc_policy(&idp.issuer(), extra),
        Options {
            args: vec!["--upstream".into(), upstream.url()],
            data_dir: Some(data.path()),
            ..Options::default()
        },
    );
    Setup {
        idp,
        upstream,
        gateway,
        _data: data,
    }
}

/// A browser's cookie jar for the gateway (the provider sets none).
#[derive(Default)]
struct Browser {
    cookies: HashMap<String, String>,
}

impl Browser {
    /// GET `path` on `addr` with the jar's cookies; keeps what the answer sets.
    async fn get(&mut self, addr: SocketAddr, path: &str) -> Reply {
        let mut req = Req::get(path);
        if !self.cookies.is_empty() {
            let header: Vec<String> = self
                .cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            req = req.header("cookie", header.join("; "));
        }
        let reply = send(addr, req).await.expect("request");
        for (name, value) in &reply.headers {
            if name != "set-cookie" {
                continue;
            }
            let pair = value.split(';').next().unwrap();
            let (cookie, content) = pair.split_once('=').unwrap();
            if value.contains("Max-Age=0") {
                self.cookies.remove(cookie);
            } else {
                self.cookies.insert(cookie.to_owned(), content.to_owned());
            }
        }
        reply
    }

    /// Follows an absolute `Location` (on the gateway or the provider).
    async fn follow(&mut self, reply: &Reply) -> Reply {
        assert_eq!(reply.status, 302, "expected a redirect: {}", reply.text());
        let location = reply.header("location").expect("location");
        let (addr, path) = split_url(location);
        self.get(addr, &path).await
    }
}

/// `http://ADDR/path?query` → (ADDR, `/path?query`).
fn split_url(url: &str) -> (SocketAddr, String) {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    (
        authority.parse().expect("a loopback address"),
        path.to_owned(),
    )
}

fn query(url: &str) -> HashMap<String, String> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// Signs in starting from `path`: returns the gateway's final redirect (to `path`).
async fn sign_in(browser: &mut Browser, gateway: &Gateway, path: &str) -> Reply {
    let start = browser.get(gateway.addr, path).await;
    assert_eq!(start.status, 302, "{}", start.text());
    let at_idp = browser.follow(&start).await;
    assert_eq!(
        at_idp.status,
        302,
        "the provider approves: {}",
        at_idp.text()
    );
    browser.follow(&at_idp).await
}

#[tokio::test(flavor = "multi_thread")]
async fn login_reaches_the_upstream_with_the_identity() {
    let setup = start_oidc("").await;
    let gw = &setup.gateway;
    let mut browser = Browser::default();

    let start = browser.get(gw.addr, "/chat?x=1").await;
    assert_eq!(start.status, 302, "{}", start.text());
    assert!(setup.upstream.requests().is_empty());
    let location = start.header("location").unwrap();
    assert!(location.starts_with(&format!("{}/authorize?", setup.idp.issuer())));
    let params = query(location);
    assert_eq!(params["response_type"], "code");
    assert_eq!(params["client_id"], CLIENT_ID);
    assert_eq!(
        params["redirect_uri"],
        format!("http://{}/ngrok/oauth2/callback", gw.addr)
    );
    assert_eq!(params["scope"], "openid profile email");
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["code_challenge"].len(), 43);
    assert!(params["state"].len() >= 43 && params["nonce"].len() >= 43);
    let login_cookie = start.header("set-cookie").unwrap();
    assert!(login_cookie.starts_with("keygate_login_oidc="));
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=600"] {
        assert!(login_cookie.contains(attribute), "{login_cookie}");
    }
    assert!(!login_cookie.contains("Secure"), "plain http: no Secure");

    let at_idp = browser.follow(&start).await;
    let back = browser.follow(&at_idp).await;
    assert_eq!(back.status, 302, "{}", back.text());
    assert_eq!(back.header("location"), Some("/chat?x=1"));
    assert!(browser.cookies.contains_key(SESSION_COOKIE));
    assert!(
        !browser.cookies.contains_key("keygate_login_oidc"),
        "the login cookie is cleared"
    );
    let calls = setup.idp.calls();
    assert_eq!(calls.tokens_issued, 1);
    assert_eq!(calls.last_client_auth.as_deref(), Some("basic"));

    let page = browser.get(gw.addr, "/chat?x=1").await;
    assert_eq!(page.status, 200, "{}", page.text());
    let seen = setup.upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/chat?x=1");
    assert_eq!(seen[0].headers["x-user-email"], ["ada@example.test"]);
    assert_eq!(seen[0].headers["x-user-id"], ["user-ada"]);
    assert_eq!(seen[0].headers["x-user-name"], ["Ada Lovelace"]);

    // Other paths ride the same session; no new login.
    assert_eq!(browser.get(gw.addr, "/v1/models").await.status, 200);
    assert_eq!(setup.idp.calls().authorize, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn altered_or_foreign_session_cookies_go_back_to_login() {
    let setup = start_oidc("").await;
    let gw = &setup.gateway;
    let mut browser = Browser::default();
    sign_in(&mut browser, gw, "/").await;
    let good = browser.cookies[SESSION_COOKIE].clone();

    // Flip one character in the middle of the sealed value.
    let mut bytes = good.clone().into_bytes();
    let middle = bytes.len() / 2;
    bytes[middle] = if bytes[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    for value in [tampered.as_str(), "forged", ""] {
        let reply = send(
            gw.addr,
            Req::get("/secret").header("cookie", format!("{SESSION_COOKIE}={value}")),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 302, "{value}");
        assert!(reply
            .header("location")
            .unwrap()
            .starts_with(&setup.idp.issuer()));
    }
    assert!(setup.upstream.requests().is_empty());

    // A session sealed by another gateway (another master key) opens nowhere else.
    let other = start_oidc("").await;
    let reply = send(
        other.gateway.addr,
        Req::get("/secret").header("cookie", format!("{SESSION_COOKIE}={good}")),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 302);

    // The untouched cookie still works.
    assert_eq!(browser.get(gw.addr, "/secret").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_redeemed_with_another_logins_verifier_is_refused() {
    let setup = start_oidc("").await;
    let gw = &setup.gateway;
    // Browser A gets a code from the provider; browser B has its own login in progress.
    let mut a = Browser::default();
    let a_start = a.get(gw.addr, "/").await;
    let a_back = a.follow(&a_start).await;
    let a_code = query(a_back.header("location").unwrap())["code"].clone();
    let mut b = Browser::default();
    let b_start = b.get(gw.addr, "/").await;
    let b_state = query(b_start.header("location").unwrap())["state"].clone();

    // B's callback with A's code: the state matches B's login, so the gateway redeems A's code
    // with B's PKCE verifier, and the provider refuses it.
    let path = format!("/ngrok/oauth2/callback?code={a_code}&state={b_state}");
    let reply = b.get(gw.addr, &path).await;
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "ERR_KEYGATE_3320");
    assert!(reply.text().contains("invalid_grant"), "{}", reply.text());
    assert_eq!(setup.idp.calls().token_refusals, vec!["pkce".to_owned()]);
    assert!(!b.cookies.contains_key(SESSION_COOKIE));

    // A callback whose state is not the browser's own login is refused before any exchange.
    let mut c = Browser::default();
    c.get(gw.addr, "/").await;
    let forged = c
        .get(
            gw.addr,
            &format!("/ngrok/oauth2/callback?code={a_code}&state={b_state}"),
        )
        .await;
    assert_eq!(forged.status, 401);
    assert!(forged.text().contains("state"), "{}", forged.text());
    // Without any login cookie at all.
    let none = send(gw.addr, Req::get("/ngrok/oauth2/callback?code=x&state=y"))
        .await
        .unwrap();
    assert_eq!(none.status, 401);
    assert_eq!(setup.idp.calls().token_refusals.len(), 1);
    assert!(setup.upstream.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_clears_the_session_and_ends_it_at_the_provider() {
    let setup = start_oidc("").await;
    let gw = &setup.gateway;
    let mut browser = Browser::default();
    sign_in(&mut browser, gw, "/").await;
    assert_eq!(browser.get(gw.addr, "/").await.status, 200);

    let out = browser.get(gw.addr, "/ngrok/logout").await;
    assert_eq!(out.status, 302, "{}", out.text());
    let location = out.header("location").unwrap();
    assert!(location.starts_with(&format!("{}/end_session?", setup.idp.issuer())));
    let params = query(location);
    assert_eq!(params["client_id"], CLIENT_ID);
    assert_eq!(params["id_token_hint"].split('.').count(), 3);
    assert!(!browser.cookies.contains_key(SESSION_COOKIE));
    assert_eq!(browser.follow(&out).await.status, 200);
    assert_eq!(setup.idp.calls().end_session, 1);

    let again = browser.get(gw.addr, "/").await;
    assert_eq!(again.status, 302);
    assert!(again
        .header("location")
        .unwrap()
        .starts_with(&format!("{}/authorize", setup.idp.issuer())));

    // /ngrok/login?redirect_path=... signs in and lands on the path; never off the gateway.
    let start = browser
        .get(gw.addr, "/ngrok/login?redirect_path=/after")
        .await;
    let at_idp = browser.follow(&start).await;
    let back = browser.follow(&at_idp).await;
    assert_eq!(back.header("location"), Some("/after"));
    let signed_in = browser
        .get(gw.addr, "/ngrok/login?redirect_path=//evil.test/x")
        .await;
    assert_eq!(signed_in.status, 302);
    assert_eq!(signed_in.header("location"), Some("/"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_end_after_max_session_duration() {
    let setup = start_oidc("          max_session_duration: 3s").await;
    let gw = &setup.gateway;
    let mut browser = Browser::default();
    let back = sign_in(&mut browser, gw, "/").await;
    let session = back
        .headers
        .iter()
        .find(|(n, v)| n == "set-cookie" && v.starts_with(SESSION_COOKIE))
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(
        session.contains("Max-Age=3") || session.contains("Max-Age=2"),
        "{session}"
    );
    assert_eq!(browser.get(gw.addr, "/").await.status, 200);
    tokio::time::sleep(Duration::from_millis(4100)).await;
    // The browser would have dropped the cookie; one that is replayed is refused all the same.
    let expired = browser.get(gw.addr, "/").await;
    assert_eq!(expired.status, 302);
    assert!(expired
        .header("location")
        .unwrap()
        .starts_with(&setup.idp.issuer()));
    assert_eq!(setup.upstream.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn userinfo_refresh_updates_the_identity_and_renews_the_cookie() {
    let setup = start_oidc("          userinfo_refresh_interval: 1s").await;
    let gw = &setup.gateway;
    let mut browser = Browser::default();
    sign_in(&mut browser, gw, "/").await;
    let before = browser.cookies[SESSION_COOKIE].clone();
    setup.idp.set_user(IdpUser {
        email: "ada@new.test".into(),
        ..ada()
    });
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let page = browser.get(gw.addr, "/").await;
    assert_eq!(page.status, 200);
    assert_ne!(browser.cookies[SESSION_COOKIE], before, "renewed");
    assert_eq!(
        setup.upstream.requests()[0].headers["x-user-email"],
        ["ada@new.test"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_preflights_pass_only_when_allowed() {
    let preflight = || {
        let mut req = Req::get("/api");
        req.method = "OPTIONS";
        req.header("origin", "https://app.example.test")
            .header("access-control-request-method", "POST")
    };
    let closed = start_oidc("").await;
    let reply = send(closed.gateway.addr, preflight()).await.unwrap();
    assert_eq!(reply.status, 302);
    assert!(closed.upstream.requests().is_empty());

    let open = start_oidc("          allow_cors_preflight: true").await;
    let reply = send(open.gateway.addr, preflight()).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(open.upstream.requests()[0].method, "OPTIONS");
    // Without the preflight headers it is an ordinary request: sign in first.
    let mut plain = Req::get("/api");
    plain.method = "OPTIONS";
    assert_eq!(send(open.gateway.addr, plain).await.unwrap().status, 302);
    assert_eq!(open.upstream.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_provider_leaves_the_gateway_running() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let upstream = EchoUpstream::start().await;
    let data = TempDir::new("oidc-dead");
    seed_secrets(data.path(), &[("idp", "client-secret", CLIENT_SECRET)]);
    let gateway = Gateway::start_with(
        &oidc_policy(&issuer, ""),
        Options {
            args: vec!["--upstream".into(), upstream.url()],
            data_dir: Some(data.path()),
            ..Options::default()
        },
    );
    let reply = send(gateway.addr, Req::get("/")).await.unwrap();
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "ERR_KEYGATE_3321");
    assert!(upstream.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth_provider_moved_to_the_local_provider() {
    let idp = idp(&["client_secret_basic"]).await;
    let upstream = EchoUpstream::start().await;
    let policy = format!(
        r#"
on_http_request:
  - actions:
      - type: oauth
        config:
          provider: google
          client_id: {CLIENT_ID}
          client_secret: {CLIENT_SECRET}
      - type: add-headers
        config:
          headers:
            x-user-email: "${{actions.ngrok.oauth.identity.email}}"
"#
    );
    let gateway = Gateway::start(
        &policy,
        &[
            "--upstream",
            &upstream.url(),
            "--provider-url",
            &format!("oauth-google={}", idp.issuer()),
        ],
    );
    let mut browser = Browser::default();
    let start = browser.get(gateway.addr, "/inbox").await;
    let location = start.header("location").unwrap();
    assert!(
        location.starts_with(&format!("{}/o/oauth2/v2/auth?", idp.issuer())),
        "{location}"
    );
    assert!(
        !query(location).contains_key("nonce"),
        "no nonce outside OIDC"
    );
    let at_idp = browser.follow(&start).await;
    let back = browser.follow(&at_idp).await;
    assert_eq!(back.header("location"), Some("/inbox"));
    assert!(browser.cookies.contains_key("keygate_session_google"));
    let calls = idp.calls();
    assert_eq!(calls.last_client_auth.as_deref(), Some("post"));
    assert_eq!(calls.userinfo, 1);
    assert_eq!(browser.get(gateway.addr, "/inbox").await.status, 200);
    assert_eq!(
        upstream.requests()[0].headers["x-user-email"],
        ["ada@example.test"]
    );
}

/// `keygate policy check` on `policy`: (exit code, stderr).
fn check(policy: &str) -> (Option<i32>, String) {
    common::policy_check(policy)
}

#[test]
fn policy_check_refuses_misconfigured_login_actions() {
    let good = oidc_policy("https://idp.example.test", "");
    let (code, stderr) = check(&good);
    assert_eq!(code, Some(0), "{stderr}");

    let two = format!(
        "{good}      - type: oauth\n        config:\n          provider: github\n          client_id: a\n          client_secret: b\n"
    );
    let (code, stderr) = check(&two);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("at most one oauth or openid-connect"),
        "{stderr}"
    );

    let managed = "on_http_request:\n  - actions:\n      - type: oauth\n        config:\n          provider: github\n";
    let (code, stderr) = check(managed);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("ngrok-managed OAuth"), "{stderr}");

    let unknown = managed.replace("github", "myspace");
    let (code, stderr) = check(&unknown);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("config.provider"), "{stderr}");
    assert!(stderr.contains("google"), "{stderr}");

    let no_issuer = "on_http_request:\n  - actions:\n      - type: openid-connect\n        config:\n          client_id: a\n";
    let (code, stderr) = check(no_issuer);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("issuer_url"), "{stderr}");

    let reserved = oidc_policy(
        "https://idp.example.test",
        "          authz_url_params:\n            state: fixed",
    );
    let (code, stderr) = check(&reserved);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("authz_url_params.state"), "{stderr}");
}
