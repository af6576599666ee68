//! Talking to an identity provider's endpoints: the code exchange at the token endpoint and the
//! userinfo lookup. Every call has a deadline and a size cap; errors never quote a secret.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::{header, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;

use crate::body::{empty, full};
use keygate_http::HttpClient;

/// One call (connect, headers, body) must finish within this.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Larger answers are refused.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Why a login step failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum LoginError {
    /// The provider (or the user) refused: the login cannot go on. The message is for clients.
    #[error("{0}")]
    Refused(String),
    /// The provider could not be reached or answered nonsense.
    #[error("{0}")]
    Unavailable(String),
}

/// Where a provider's endpoints are.
pub(in crate::actions) struct Endpoints {
    pub authorization: Uri,
    pub token: Uri,
    pub userinfo: Option<Uri>,
    pub end_session: Option<Uri>,
    /// How the client authenticates at the token endpoint.
    pub token_auth: TokenAuth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::actions) enum TokenAuth {
    /// `client_secret_basic`: HTTP Basic with the URL-encoded id and secret.
    Basic,
    /// `client_secret_post`: both in the form body.
    Post,
}

/// The client credentials, evaluated for one request.
pub(super) struct Client {
    pub id: String,
    pub secret: Option<String>,
}

/// What the token endpoint returned.
#[derive(Debug, Default)]
pub(super) struct Tokens {
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    /// Seconds the access token lives.
    pub expires_in: Option<i64>,
}

/// Who signed in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Identity {
    /// The provider's stable user id (`sub`).
    pub id: String,
    pub email: String,
    pub name: String,
    /// The provider's session id (an ID token's `sid`), when it has one.
    pub provider_session: String,
}

/// A boxed future, so action futures stay provably `Send`.
pub(super) type CallFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, LoginError>> + Send + 'a>>;

/// Exchanges an authorization `code` (with its PKCE `verifier`) for tokens.
pub(super) fn exchange_code<'a>(
    http: &'a HttpClient,
    endpoints: &'a Endpoints,
    client: &'a Client,
    code: &'a str,
    verifier: &'a str,
    redirect_uri: &'a str,
) -> CallFuture<'a, Tokens> {
    Box::pin(async move {
        let request = token_request(endpoints, client, code, verifier, redirect_uri)?;
        let (status, body) = call(http, request, &endpoints.token).await?;
        // GitHub answers 200 with an `error` field; others answer 400/401.
        if let Some(error) = body.get("error").and_then(Value::as_str) {
            return Err(LoginError::Refused(format!(
                "the token endpoint refused the authorization code: {}",
                safe_code(error)
            )));
        }
        if !status.is_success() {
            return Err(LoginError::Unavailable(format!(
                "the token endpoint {} answered HTTP {}",
                endpoints.token,
                status.as_u16()
            )));
        }
        let text = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
        Ok(Tokens {
            access_token: text("access_token"),
            refresh_token: text("refresh_token"),
            id_token: text("id_token"),
            expires_in: body.get("expires_in").and_then(|v| {
                v.as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            }),
        })
    })
}

/// The token request: the form, with the client authenticated as the endpoint takes it.
fn token_request(
    endpoints: &Endpoints,
    client: &Client,
    code: &str,
    verifier: &str,
    redirect_uri: &str,
) -> Result<Request<crate::body::Body>, LoginError> {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("code_verifier", verifier);
    let mut request = Request::post(endpoints.token.clone())
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json");
    match (endpoints.token_auth, &client.secret) {
        (TokenAuth::Basic, Some(secret)) => {
            let pair = format!("{}:{}", form_encode(&client.id), form_encode(secret));
            let value = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(pair)))
                .map_err(|_| {
                    LoginError::Refused("the client credentials are not valid in a header".into())
                })?;
            request = request.header(header::AUTHORIZATION, value);
        }
        (_, secret) => {
            form.append_pair("client_id", &client.id);
            if let Some(secret) = secret {
                form.append_pair("client_secret", secret);
            }
        }
    }
    request
        .body(full(form.finish()))
        .map_err(|err| LoginError::Unavailable(format!("cannot build the token request: {err}")))
}

/// The userinfo document for `access_token`. A 401/403 means the token (and so the session) is
/// no longer good.
pub(super) fn userinfo<'a>(
    http: &'a HttpClient,
    url: &'a Uri,
    access_token: &'a str,
) -> CallFuture<'a, Value> {
    Box::pin(async move {
        let bearer = HeaderValue::from_str(&format!("Bearer {access_token}"))
            .map_err(|_| LoginError::Refused("the access token is not valid in a header".into()))?;
        let request = Request::get(url.clone())
            .header(header::ACCEPT, "application/json")
            .header(header::AUTHORIZATION, bearer)
            .body(empty())
            .map_err(|err| {
                LoginError::Unavailable(format!("cannot build the userinfo request: {err}"))
            })?;
        let (status, body) = call(http, request, url).await?;
        match status.as_u16() {
            200..=299 => Ok(body),
            401 | 403 => Err(LoginError::Refused(
                "the identity provider no longer accepts this session's access token".into(),
            )),
            other => Err(LoginError::Unavailable(format!(
                "the userinfo endpoint {url} answered HTTP {other}"
            ))),
        }
    })
}

/// GETs a JSON document (discovery).
pub(super) fn get_json<'a>(http: &'a HttpClient, url: &'a Uri) -> CallFuture<'a, Value> {
    Box::pin(async move {
        let request = Request::get(url.clone())
            .header(header::ACCEPT, "application/json")
            .body(empty())
            .map_err(|err| {
                LoginError::Unavailable(format!("cannot build a request to {url}: {err}"))
            })?;
        let (status, body) = call(http, request, url).await?;
        if !status.is_success() {
            return Err(LoginError::Unavailable(format!(
                "{url} answered HTTP {}",
                status.as_u16()
            )));
        }
        Ok(body)
    })
}

/// Sends `request` and reads a JSON answer (an empty or non-JSON body reads as `null`).
async fn call(
    http: &HttpClient,
    mut request: Request<crate::body::Body>,
    url: &Uri,
) -> Result<(http::StatusCode, Value), LoginError> {
    request.headers_mut().insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("keygate/", env!("CARGO_PKG_VERSION"))),
    );
    let exchange = async {
        let response = http
            .send(request)
            .await
            .map_err(|err| LoginError::Unavailable(format!("request to {url} failed: {err}")))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|err| {
                LoginError::Unavailable(format!("reading the answer of {url} failed: {err}"))
            })?
            .to_bytes();
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    };
    tokio::time::timeout(CALL_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            LoginError::Unavailable(format!(
                "{url} did not answer within {}s",
                CALL_TIMEOUT.as_secs()
            ))
        })?
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749 2.3.1 for Basic auth).
fn form_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// An OAuth error code from a provider, reduced to the characters such codes use, for messages.
pub(super) fn safe_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(64)
        .collect()
}

/// The text at `key` of a JSON object (numbers read as text: GitHub's ids are numbers).
pub(super) fn text_field(document: &Value, key: &str) -> Option<String> {
    match document.get(key)? {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_error_codes_are_reduced() {
        assert_eq!(safe_code("invalid_grant"), "invalid_grant");
        assert_eq!(safe_code("bad<script>\"x"), "badscriptx");
    }

    #[test]
    fn ids_may_be_numbers() {
        let doc = serde_json::json!({"id": 42, "sub": "abc", "email": ""});
        assert_eq!(text_field(&doc, "id").as_deref(), Some("42"));
        assert_eq!(text_field(&doc, "sub").as_deref(), Some("abc"));
        assert_eq!(text_field(&doc, "email"), None);
        assert_eq!(text_field(&doc, "name"), None);
    }
}
