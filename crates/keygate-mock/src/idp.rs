//! A local OpenID Connect provider for login tests (`oauth`, `openid-connect`): discovery, an
//! authorization endpoint that approves at once and redirects back with a code, a token
//! endpoint that checks the client secret and the PKCE verifier (S256) and signs ID tokens
//! (ES256), the JWKS, userinfo and an end-session endpoint. Endpoints are matched by the end of
//! the path (`.../authorize` or `.../auth`, `.../token`, `.../userinfo`), so the same server
//! can stand in for an OAuth provider whose endpoints were moved under it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Who signs in.
#[derive(Debug, Clone)]
pub struct IdpUser {
    pub sub: String,
    pub email: String,
    pub name: String,
}

/// How the provider is set up.
#[derive(Clone)]
pub struct IdpConfig {
    pub client_id: String,
    pub client_secret: String,
    /// PKCS#8 PEM of the P-256 key that signs ID tokens.
    pub signing_key_pem: String,
    /// The public JWK of that key (with its `kid`), served as the JWKS.
    pub jwk: String,
    pub user: IdpUser,
    /// `token_endpoint_auth_methods_supported` in the discovery document.
    pub token_auth_methods: Vec<String>,
    /// Seconds an ID token lives.
    pub id_token_ttl: u64,
}

/// A running provider; stops when dropped.
pub struct MockIdp {
    pub addr: SocketAddr,
    state: Arc<IdpState>,
    task: JoinHandle<()>,
}

/// Calls the provider saw, for assertions.
#[derive(Debug, Default, Clone)]
pub struct IdpCalls {
    pub authorize: usize,
    /// Successful code exchanges.
    pub tokens_issued: usize,
    /// Refused token requests, with why (`invalid_client`, `pkce`, `invalid_grant`, ...).
    pub token_refusals: Vec<String>,
    pub userinfo: usize,
    pub end_session: usize,
    /// How the last accepted token request authenticated: `basic` or `post`.
    pub last_client_auth: Option<String>,
}

struct Grant {
    challenge: String,
    nonce: Option<String>,
    redirect_uri: String,
}

struct IdpState {
    config: IdpConfig,
    issuer: String,
    kid: String,
    key: EncodingKey,
    user: Mutex<IdpUser>,
    codes: Mutex<HashMap<String, Grant>>,
    access_tokens: Mutex<HashMap<String, ()>>,
    calls: Mutex<IdpCalls>,
    counter: AtomicU64,
}

impl MockIdp {
    /// Serves on a free loopback port of the current tokio runtime.
    pub async fn start(config: IdpConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let key = EncodingKey::from_ec_pem(config.signing_key_pem.as_bytes())
            .map_err(|err| std::io::Error::other(format!("signing key: {err}")))?;
        let jwk: Value = serde_json::from_str(&config.jwk)
            .map_err(|err| std::io::Error::other(format!("jwk: {err}")))?;
        let state = Arc::new(IdpState {
            issuer: format!("http://{addr}"),
            kid: jwk["kid"].as_str().unwrap_or_default().to_owned(),
            key,
            user: Mutex::new(config.user.clone()),
            config,
            codes: Mutex::default(),
            access_tokens: Mutex::default(),
            calls: Mutex::default(),
            counter: AtomicU64::new(0),
        });
        let serving = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let state = Arc::clone(&serving);
                let service = hyper::service::service_fn(move |request| {
                    let state = Arc::clone(&state);
                    async move { Ok::<_, Infallible>(state.handle(request).await) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        Ok(Self { addr, state, task })
    }

    /// The issuer URL (`http://ADDR`), also the base of every endpoint.
    pub fn issuer(&self) -> String {
        self.state.issuer.clone()
    }

    /// What the provider saw so far.
    pub fn calls(&self) -> IdpCalls {
        self.state.calls.lock().unwrap().clone()
    }

    /// Changes who userinfo (and later ID tokens) describe.
    pub fn set_user(&self, user: IdpUser) {
        *self.state.user.lock().unwrap() = user;
    }
}

impl Drop for MockIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: Value) -> Reply {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid response")
}

fn text(status: StatusCode, body: &str) -> Reply {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("valid response")
}

fn form(text: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl IdpState {
    async fn handle(&self, request: Request<Incoming>) -> Reply {
        let path = request.uri().path().to_owned();
        let query = form(request.uri().query().unwrap_or_default());
        let headers = request.headers().clone();
        let body = match request.into_body().collect().await {
            Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
            Err(_) => String::new(),
        };
        if path == "/.well-known/openid-configuration" {
            return self.discovery();
        }
        if path.ends_with("/jwks") {
            let jwk: Value = serde_json::from_str(&self.config.jwk).unwrap_or(Value::Null);
            return reply(StatusCode::OK, json!({ "keys": [jwk] }));
        }
        if path.ends_with("/authorize") || path.ends_with("/auth") {
            return self.authorize(&query);
        }
        if path.ends_with("/token") {
            return self.token(&headers, &form(&body));
        }
        if path.ends_with("/userinfo") {
            return self.userinfo(&headers);
        }
        if path.ends_with("/end_session") {
            self.calls.lock().unwrap().end_session += 1;
            return text(StatusCode::OK, "signed out at the provider");
        }
        text(StatusCode::NOT_FOUND, "no such endpoint")
    }

    fn discovery(&self) -> Reply {
        let base = &self.issuer;
        reply(
            StatusCode::OK,
            json!({
                "issuer": base,
                "authorization_endpoint": format!("{base}/authorize"),
                "token_endpoint": format!("{base}/token"),
                "userinfo_endpoint": format!("{base}/userinfo"),
                "jwks_uri": format!("{base}/jwks"),
                "end_session_endpoint": format!("{base}/end_session"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": self.config.token_auth_methods,
            }),
        )
    }

    /// Approves at once: redirects to `redirect_uri` with a one-time code and the state.
    fn authorize(&self, query: &HashMap<String, String>) -> Reply {
        self.calls.lock().unwrap().authorize += 1;
        let get = |name: &str| query.get(name).map(String::as_str).unwrap_or_default();
        if get("response_type") != "code" || get("client_id") != self.config.client_id {
            return text(StatusCode::BAD_REQUEST, "unknown client or response type");
        }
        if get("code_challenge_method") != "S256" || get("code_challenge").is_empty() {
            return text(StatusCode::BAD_REQUEST, "PKCE (S256) is required");
        }
        let redirect_uri = get("redirect_uri");
        if redirect_uri.is_empty() {
            return text(StatusCode::BAD_REQUEST, "redirect_uri is required");
        }
        let code = self.unique("code");
        self.codes.lock().unwrap().insert(
            code.clone(),
            Grant {
                challenge: get("code_challenge").to_owned(),
                nonce: query.get("nonce").cloned(),
                redirect_uri: redirect_uri.to_owned(),
            },
        );
        let mut location = url::form_urlencoded::Serializer::new(format!("{redirect_uri}?"));
        location
            .append_pair("code", &code)
            .append_pair("state", get("state"));
        Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, location.finish())
            .body(Full::new(Bytes::new()))
            .expect("valid response")
    }

    fn token(&self, headers: &http::HeaderMap, form: &HashMap<String, String>) -> Reply {
        let refuse = |status: StatusCode, error: &str, why: &str| {
            self.calls
                .lock()
                .unwrap()
                .token_refusals
                .push(why.to_owned());
            reply(status, json!({ "error": error }))
        };
        let basic = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|v| STANDARD.decode(v).ok())
            .and_then(|v| String::from_utf8(v).ok());
        let (client_id, secret, auth) = match &basic {
            Some(pair) => {
                let (id, secret) = pair.split_once(':').unwrap_or((pair, ""));
                let decode = |s: &str| {
                    url::form_urlencoded::parse(format!("x={s}").as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default()
                };
                (decode(id), decode(secret), "basic")
            }
            None => (
                form.get("client_id").cloned().unwrap_or_default(),
                form.get("client_secret").cloned().unwrap_or_default(),
                "post",
            ),
        };
        if client_id != self.config.client_id || secret != self.config.client_secret {
            return refuse(StatusCode::UNAUTHORIZED, "invalid_client", "invalid_client");
        }
        if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
            return refuse(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type",
            );
        }
        let code = form.get("code").cloned().unwrap_or_default();
        let Some(grant) = self.codes.lock().unwrap().remove(&code) else {
            return refuse(StatusCode::BAD_REQUEST, "invalid_grant", "unknown code");
        };
        if form.get("redirect_uri") != Some(&grant.redirect_uri) {
            return refuse(StatusCode::BAD_REQUEST, "invalid_grant", "redirect_uri");
        }
        let verifier = form.get("code_verifier").cloned().unwrap_or_default();
        if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != grant.challenge {
            return refuse(StatusCode::BAD_REQUEST, "invalid_grant", "pkce");
        }
        let user = self.user.lock().unwrap().clone();
        let issued = now();
        let mut claims = json!({
            "iss": self.issuer,
            "sub": user.sub,
            "aud": self.config.client_id,
            "iat": issued,
            "exp": issued + self.config.id_token_ttl,
            "email": user.email,
            "name": user.name,
            "sid": self.unique("sid"),
        });
        if let Some(nonce) = grant.nonce {
            claims["nonce"] = Value::String(nonce);
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let id_token = match jsonwebtoken::encode(&header, &claims, &self.key) {
            Ok(token) => token,
            Err(err) => return text(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()),
        };
        let access_token = self.unique("at");
        self.access_tokens
            .lock()
            .unwrap()
            .insert(access_token.clone(), ());
        {
            let mut calls = self.calls.lock().unwrap();
            calls.tokens_issued += 1;
            calls.last_client_auth = Some(auth.to_owned());
        }
        reply(
            StatusCode::OK,
            json!({
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": 3600,
                "refresh_token": self.unique("rt"),
                "id_token": id_token,
            }),
        )
    }

    fn userinfo(&self, headers: &http::HeaderMap) -> Reply {
        self.calls.lock().unwrap().userinfo += 1;
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !self.access_tokens.lock().unwrap().contains_key(token) {
            return reply(
                StatusCode::UNAUTHORIZED,
                json!({ "error": "invalid_token" }),
            );
        }
        let user = self.user.lock().unwrap().clone();
        reply(
            StatusCode::OK,
            json!({ "sub": user.sub, "email": user.email, "name": user.name }),
        )
    }

    /// A value unique within this provider (codes and tokens need no secrecy here).
    fn unique(&self, prefix: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!("{prefix}-{n}-{nanos:08x}")
    }
}
