//! OpenID Connect specifics: discovery (`/.well-known/openid-configuration`), fetched in the
//! background at load and retried by requests while it fails, and ID token validation against
//! the provider's JWKS (the `jwt-validation` key cache).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use http::Uri;
use jsonwebtoken::Algorithm;
use serde_json::Value;
use subtle::ConstantTimeEq;
use tokio::time::Instant;
use tracing::{info, warn};

use super::idp::{get_json, Endpoints, Identity, LoginError, TokenAuth};
use super::providers::standard_identity;
use crate::actions::jwt_validation::jwks::{Candidates, Jwks};
use crate::actions::jwt_validation::token::{check_claims, parse};
use keygate_http::HttpClient;

/// After a failed discovery, requests wait this long before trying again (they get 502 meanwhile).
const RETRY_PAUSE: Duration = Duration::from_secs(5);

/// ID token signature algorithms accepted (asymmetric only: HMAC would need the client secret
/// as a key, `none` is never accepted).
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// One issuer's discovered configuration, fetched at most once successfully per policy load.
pub(in crate::actions) struct Oidc {
    /// `issuer_url` as configured.
    issuer: String,
    discovery_url: Uri,
    http: HttpClient,
    current: ArcSwapOption<Discovered>,
    /// Single flight for discovery; holds when and why the last attempt failed.
    fetching: tokio::sync::Mutex<Option<(Instant, String)>>,
}

/// What discovery found.
pub(super) struct Discovered {
    pub endpoints: Endpoints,
    /// The `iss` ID tokens must carry (the document's `issuer`).
    issuer: String,
    jwks: Jwks,
}

impl Oidc {
    /// `issuer_url` must be an absolute http(s) URL; nothing is fetched yet.
    pub fn new(issuer: &str, http: HttpClient) -> Result<Self, String> {
        let base = issuer.trim_end_matches('/');
        let discovery_url: Uri = format!("{base}/.well-known/openid-configuration")
            .parse()
            .map_err(|_| format!("'{issuer}' is not a URL"))?;
        if !matches!(discovery_url.scheme_str(), Some("http" | "https"))
            || discovery_url.host().is_none()
        {
            return Err(format!("'{issuer}' is not an http(s) URL"));
        }
        Ok(Self {
            issuer: issuer.to_owned(),
            discovery_url,
            http,
            current: ArcSwapOption::empty(),
            fetching: tokio::sync::Mutex::new(None),
        })
    }

    /// `issuer_url` as configured.
    pub(super) fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Whether the issuer is plain http outside loopback (worth a warning at load).
    pub fn insecure(&self) -> bool {
        let host = self.discovery_url.host().unwrap_or_default();
        self.discovery_url.scheme_str() == Some("http")
            && !(host == "localhost" || host.starts_with("127.") || host == "[::1]")
    }

    /// Starts discovery in the background when a runtime is running (policy load).
    pub fn start(self: &Arc<Self>) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let me = Arc::clone(self);
            runtime.spawn(async move {
                if me.discovered().await.is_ok() {
                    info!(issuer = %me.issuer, "OpenID Connect discovery done");
                }
            });
        }
    }

    /// The discovered configuration, fetching it now if no attempt failed in the last
    /// [`RETRY_PAUSE`].
    pub(super) async fn discovered(&self) -> Result<Arc<Discovered>, LoginError> {
        if let Some(found) = self.current.load_full() {
            return Ok(found);
        }
        let mut failed = self.fetching.lock().await;
        if let Some(found) = self.current.load_full() {
            return Ok(found);
        }
        if let Some((at, why)) = &*failed {
            if at.elapsed() < RETRY_PAUSE {
                return Err(LoginError::Unavailable(why.clone()));
            }
        }
        match self.fetch().await {
            Ok(found) => {
                let found = Arc::new(found);
                found.jwks.start();
                self.current.store(Some(found.clone()));
                *failed = None;
                Ok(found)
            }
            Err(err) => {
                let why = format!("OpenID Connect discovery for {} failed: {err}", self.issuer);
                warn!(error = %why, "identity provider unavailable; requests retry discovery");
                *failed = Some((Instant::now(), why.clone()));
                Err(LoginError::Unavailable(why))
            }
        }
    }

    async fn fetch(&self) -> Result<Discovered, LoginError> {
        let document = get_json(&self.http, &self.discovery_url).await?;
        let bad = |what: &str| LoginError::Unavailable(format!("the discovery document {what}"));
        let url = |key: &str| -> Result<Option<Uri>, LoginError> {
            match document.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) => text
                    .parse()
                    .map(Some)
                    .map_err(|_| bad(&format!("has an invalid {key}"))),
                Some(_) => Err(bad(&format!("has an invalid {key}"))),
            }
        };
        let required = |key: &str| url(key)?.ok_or_else(|| bad(&format!("lacks {key}")));
        let issuer = document
            .get("issuer")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("lacks issuer"))?;
        if issuer.trim_end_matches('/') != self.issuer.trim_end_matches('/') {
            return Err(bad(&format!(
                "names issuer '{issuer}', not the configured '{}'",
                self.issuer
            )));
        }
        let methods: Vec<&str> = document
            .get("token_endpoint_auth_methods_supported")
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        // The spec's default is client_secret_basic; use post only when basic is not offered.
        let token_auth = if methods.is_empty() || methods.contains(&"client_secret_basic") {
            TokenAuth::Basic
        } else if methods.contains(&"client_secret_post") {
            TokenAuth::Post
        } else {
            TokenAuth::Basic
        };
        Ok(Discovered {
            endpoints: Endpoints {
                authorization: required("authorization_endpoint")?,
                token: required("token_endpoint")?,
                userinfo: url("userinfo_endpoint")?,
                end_session: url("end_session_endpoint")?,
                token_auth,
            },
            issuer: issuer.to_owned(),
            jwks: Jwks::new(vec![required("jwks_uri")?], self.http.clone()),
        })
    }
}

impl Discovered {
    /// Verifies an ID token (signature by a JWKS key, `iss`, `aud` = `client_id`, `exp`, `nonce`)
    /// and reads who it names.
    pub async fn verify_id_token(
        &self,
        token: &str,
        client_id: &str,
        nonce: &str,
    ) -> Result<Identity, LoginError> {
        let refused = |why: String| LoginError::Refused(format!("the ID token was refused: {why}"));
        let parsed = parse(token, ALGORITHMS).map_err(|err| refused(err.to_string()))?;
        let keys = match self
            .jwks
            .candidates(parsed.kid.as_deref(), parsed.alg)
            .await
        {
            Candidates::Keys(keys) => keys,
            Candidates::Unavailable => {
                return Err(LoginError::Unavailable(
                    "the identity provider's signing keys could not be fetched".into(),
                ))
            }
        };
        if !parsed.verify(&keys) {
            return Err(refused("the signature is invalid".into()));
        }
        check_claims(
            &parsed.payload,
            &[self.issuer.as_str()],
            &[client_id.to_owned()],
            unix_now(),
        )
        .map_err(|err| refused(err.to_string()))?;
        if parsed.payload.get("exp").is_none() {
            return Err(refused("it has no expiry".into()));
        }
        let presented = parsed
            .payload
            .get("nonce")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !bool::from(presented.as_bytes().ct_eq(nonce.as_bytes())) {
            return Err(refused("the nonce does not match this login".into()));
        }
        let claims = Value::Object(parsed.payload.clone());
        let mut identity =
            standard_identity(&claims).ok_or_else(|| refused("it has no subject".into()))?;
        identity.provider_session = claims
            .get("sid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok(identity)
    }
}

pub(super) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
