//! The browser login flow behind `openid-connect` and `oauth`: authorization code with PKCE
//! (S256), state and (OIDC) nonce kept in a short-lived sealed cookie, the session kept in a
//! sealed cookie too (stateless: any gateway holding the same master key accepts it).
//!
//! Paths the action answers itself wherever its rule matches:
//! - [`CALLBACK_PATH`]: the provider's redirect back (register `scheme://host` + this path);
//! - `/ngrok/login` (`?redirect_path=/x`): sign in, then go to `redirect_path`;
//! - `/ngrok/logout`: end the session (and, for OIDC, at the provider's `end_session_endpoint`).

mod cookies;
mod idp;
mod oidc;
mod providers;
mod session;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{header, HeaderValue, Method, Response, StatusCode};
use keygate_cel::Template;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::warn;

use self::cookies::{random_token, CookieAttrs, Sealer};
use self::idp::{exchange_code, userinfo, Client, Endpoints, Identity, LoginError, Tokens};
pub(super) use self::oidc::Oidc;
use self::oidc::{unix_now, Discovered};
pub(super) use self::providers::{Provider, PROVIDERS};
use self::session::{Pending, Session};
use super::parse_duration;
use crate::action::{Action, ActionError, ActionFuture, Flow};
use crate::body::{empty, full};
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::error::{ErrorCode, GatewayError};
use crate::exchange::Exchange;
use keygate_http::HttpClient;

/// Where the identity provider sends the browser back.
pub const CALLBACK_PATH: &str = "/ngrok/oauth2/callback";
const LOGIN_PATH: &str = "/ngrok/login";
const LOGOUT_PATH: &str = "/ngrok/logout";

/// Sessions end this long after sign-in unless `max_session_duration` says otherwise.
const DEFAULT_MAX_SESSION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Query parameters of the authorization request the flow sets itself.
const RESERVED_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
];

/// Who the users sign in with.
pub(super) enum Backend {
    Oidc(Arc<Oidc>),
    OAuth {
        provider: &'static Provider,
        endpoints: Box<Endpoints>,
    },
}

/// The config fields both actions share, as written.
pub(super) struct CommonConfig {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub authz_url_params: Option<HashMap<String, String>>,
    pub max_session_duration: Option<String>,
    /// The idle timeout and the name of its field (the two actions spell it differently).
    pub idle: (&'static str, Option<String>),
    pub userinfo_refresh_interval: Option<String>,
    pub allow_cors_preflight: Option<bool>,
    pub auth_cookie_domain: Option<String>,
}

/// A compiled `openid-connect` or `oauth` action.
pub(super) struct LoginFlow {
    backend: Backend,
    result_name: &'static str,
    client_id: Template,
    client_secret: Option<Template>,
    scopes: String,
    authz_params: Vec<(String, String)>,
    /// Seconds.
    max_session: i64,
    idle: Option<i64>,
    userinfo_refresh: Option<i64>,
    allow_cors_preflight: bool,
    cookie_domain: Option<String>,
    session_cookie: String,
    login_cookie: String,
    sealer: Sealer,
    http: HttpClient,
    /// Whether the policy reads the results (building them costs a little per request).
    publish: bool,
}

impl LoginFlow {
    /// Compiles the shared config. `cookie_id` names the cookies; `default_scopes` applies when
    /// `scopes` is absent.
    pub fn build(
        cx: &BuildContext<'_>,
        result_name: &'static str,
        backend: Backend,
        config: CommonConfig,
        cookie_id: &str,
        default_scopes: &[&str],
    ) -> Result<Self, Diagnostic> {
        let client_id = match &config.client_id {
            Some(source) if !source.trim().is_empty() => cx.template("client_id", source)?,
            _ => return Err(cx.error("client_id", "client_id is required")),
        };
        let client_secret = config
            .client_secret
            .as_deref()
            .map(|source| cx.template("client_secret", source))
            .transpose()?;
        let scopes = match &config.scopes {
            Some(list) => {
                if let Some(i) = list.iter().position(|s| s.is_empty() || s.contains(' ')) {
                    return Err(cx.error(&format!("scopes[{i}]"), "a scope is one non-empty word"));
                }
                list.join(" ")
            }
            None => default_scopes.join(" "),
        };
        let mut authz_params: Vec<(String, String)> = config
            .authz_url_params
            .unwrap_or_default()
            .into_iter()
            .collect();
        authz_params.sort();
        if let Some((name, _)) = authz_params
            .iter()
            .find(|(name, _)| RESERVED_PARAMS.contains(&name.as_str()))
        {
            return Err(cx.error(
                &format!("authz_url_params.{name}"),
                format!("'{name}' is set by the login flow itself"),
            ));
        }
        let seconds = |field: &str, text: Option<&String>| -> Result<Option<i64>, Diagnostic> {
            let Some(text) = text else { return Ok(None) };
            let duration = parse_duration(text).map_err(|err| cx.error(field, err))?;
            if duration < Duration::from_secs(1) {
                return Err(cx.error(field, "use at least 1s"));
            }
            Ok(Some(i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)))
        };
        let max_session = seconds("max_session_duration", config.max_session_duration.as_ref())?
            .unwrap_or(DEFAULT_MAX_SESSION.as_secs() as i64);
        let idle = seconds(config.idle.0, config.idle.1.as_ref())?;
        let userinfo_refresh = seconds(
            "userinfo_refresh_interval",
            config.userinfo_refresh_interval.as_ref(),
        )?;
        if let Some(domain) = &config.auth_cookie_domain {
            let valid = !domain.is_empty()
                && domain
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
            if !valid {
                return Err(cx.error("auth_cookie_domain", "not a domain name"));
            }
        }
        let purpose = match &backend {
            Backend::Oidc(oidc) => format!("oidc:{}", oidc.issuer()),
            Backend::OAuth { provider, .. } => format!("oauth:{}", provider.name),
        };
        Ok(Self {
            sealer: Sealer::new(&cx.deps.session_key, &purpose),
            backend,
            result_name,
            client_id,
            client_secret,
            scopes,
            authz_params,
            max_session,
            idle,
            userinfo_refresh,
            allow_cors_preflight: config.allow_cors_preflight.unwrap_or(false),
            cookie_domain: config.auth_cookie_domain,
            session_cookie: format!("keygate_session_{cookie_id}"),
            login_cookie: format!("keygate_login_{cookie_id}"),
            http: cx.deps.http.clone(),
            publish: cx.results_read(result_name),
        })
    }
}

impl Action for LoginFlow {
    fn run<'a>(&'a self, ex: &'a mut Exchange) -> ActionFuture<'a> {
        Box::pin(async move {
            self.handle(ex).await.map_err(|err| match err {
                Failure::Eval(err) => ActionError::Eval(err),
                Failure::Login(err) => ActionError::Gateway(self.login_error(ex, err)),
            })
        })
    }
}

/// What can stop a request: a failed interpolation, or a login step.
enum Failure {
    Eval(keygate_cel::EvalError),
    Login(LoginError),
}

impl From<keygate_cel::EvalError> for Failure {
    fn from(err: keygate_cel::EvalError) -> Self {
        Failure::Eval(err)
    }
}

impl From<LoginError> for Failure {
    fn from(err: LoginError) -> Self {
        Failure::Login(err)
    }
}

impl LoginFlow {
    async fn handle(&self, ex: &mut Exchange) -> Result<Flow, Failure> {
        match ex.request.uri.path() {
            CALLBACK_PATH => self.callback(ex).await,
            LOGOUT_PATH => self.logout(ex).await,
            LOGIN_PATH => {
                let to = query_param(ex, "redirect_path")
                    .map_or_else(|| "/".to_owned(), |path| safe_return(&path));
                match self.session(ex).await? {
                    Some(_) => Ok(Flow::Respond(redirect(&to, Vec::new()))),
                    None => self.begin(ex, to).await,
                }
            }
            _ if self.allow_cors_preflight && is_preflight(ex) => {
                // No one is signed in; empty results keep later interpolations working.
                if self.publish {
                    ex.results
                        .set(self.result_name, Session::default().results(false));
                }
                Ok(Flow::Continue)
            }
            _ => match self.session(ex).await? {
                Some(session) => {
                    if self.publish {
                        ex.results.set(self.result_name, session);
                    }
                    Ok(Flow::Continue)
                }
                None => {
                    let to = ex
                        .request
                        .uri
                        .path_and_query()
                        .map_or("/", |pq| pq.as_str());
                    let to = safe_return(to);
                    self.begin(ex, to).await
                }
            },
        }
    }

    /// The request's live session as result variables, renewing its cookie when the idle timer
    /// or a userinfo refresh asks for it; `None` when there is none (or it ended).
    async fn session(&self, ex: &mut Exchange) -> Result<Option<keygate_cel::Value>, Failure> {
        let Some(mut session) = self
            .sealer
            .open_cookie::<Session>(&ex.request.headers, &self.session_cookie)
        else {
            return Ok(None);
        };
        let now = unix_now();
        let max_reached = now - session.created >= self.max_session;
        let idled_out = self.idle.is_some_and(|idle| now - session.active >= idle);
        if max_reached || idled_out {
            return Ok(None);
        }
        let mut renew = self
            .idle
            .is_some_and(|idle| now - session.active >= (idle / 10).clamp(1, 60));
        let mut refreshed = false;
        if let (Some(interval), Some(token)) = (self.userinfo_refresh, session.access_token.clone())
        {
            if now - session.userinfo_at >= interval {
                match self.fresh_identity(&token, &session).await {
                    Ok(Some(identity)) => {
                        session.update(identity, now);
                        refreshed = true;
                        renew = true;
                    }
                    Ok(None) => {}
                    Err(LoginError::Refused(_)) => return Ok(None),
                    Err(LoginError::Unavailable(why)) => {
                        warn!(request_id = %ex.id, error = %why, "userinfo refresh failed; keeping the session");
                    }
                }
            }
        }
        if renew {
            session.active = now;
            let value = session.seal(&self.sealer, &self.session_cookie);
            let cookie = self.attrs(ex).set(
                &self.session_cookie,
                &value,
                Some(self.remaining(&session, now)),
            );
            ex.response_headers.append(header::SET_COOKIE, cookie);
        }
        Ok(Some(session.results(refreshed)))
    }

    /// A fresh identity from userinfo, when the provider has that endpoint; it must name the
    /// same user.
    async fn fresh_identity(
        &self,
        access_token: &str,
        session: &Session,
    ) -> Result<Option<Identity>, LoginError> {
        let discovered;
        let (endpoints, read): (&Endpoints, fn(&serde_json::Value) -> Option<Identity>) =
            match &self.backend {
                Backend::OAuth {
                    provider,
                    endpoints,
                } => (endpoints, provider.identity),
                Backend::Oidc(oidc) => {
                    discovered = oidc.discovered().await?;
                    (&discovered.endpoints, providers::standard_identity)
                }
            };
        fetch_userinfo(&self.http, endpoints, access_token, read)
            .await
            .map(|found| found.filter(|who| who.id == session.id))
    }

    /// Redirects the browser to the provider, remembering the login in the login cookie.
    async fn begin(&self, ex: &mut Exchange, return_to: String) -> Result<Flow, Failure> {
        let client = self.client(ex)?;
        let redirect_uri = redirect_uri(ex)?;
        let discovered;
        let endpoints = match &self.backend {
            Backend::Oidc(oidc) => {
                discovered = oidc.discovered().await?;
                &discovered.endpoints
            }
            Backend::OAuth { endpoints, .. } => endpoints,
        };
        let pending = Pending {
            state: random_token(),
            nonce: random_token(),
            verifier: random_token(),
            return_to,
            created: unix_now(),
        };
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(pending.verifier.as_bytes()));
        let mut location = endpoints.authorization.to_string();
        location.push(if location.contains('?') { '&' } else { '?' });
        let mut query = url::form_urlencoded::Serializer::new(location);
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &client.id)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("scope", &self.scopes)
            .append_pair("state", &pending.state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        if matches!(self.backend, Backend::Oidc(_)) {
            query.append_pair("nonce", &pending.nonce);
        }
        for (name, value) in &self.authz_params {
            query.append_pair(name, value);
        }
        let location = query.finish();
        let sealed = self.sealer.seal(&self.login_cookie, &pending);
        let cookie =
            self.attrs(ex)
                .set(&self.login_cookie, &sealed, Some(Pending::LIFETIME as u64));
        Ok(Flow::Respond(redirect(&location, vec![cookie])))
    }

    /// The provider's redirect back: check the login, exchange the code, start the session.
    async fn callback(&self, ex: &mut Exchange) -> Result<Flow, Failure> {
        let refused = |why: &str| Failure::Login(LoginError::Refused(why.to_owned()));
        let pending: Pending = self
            .sealer
            .open_cookie(&ex.request.headers, &self.login_cookie)
            .ok_or_else(|| {
                refused("no login is in progress in this browser (its cookie is missing or was altered); start again")
            })?;
        let now = unix_now();
        if now - pending.created > Pending::LIFETIME {
            return Err(refused("the login took too long; start again"));
        }
        let state = query_param(ex, "state").unwrap_or_default();
        if !bool::from(state.as_bytes().ct_eq(pending.state.as_bytes())) {
            return Err(refused(
                "the login state does not match this browser's login",
            ));
        }
        if let Some(error) = query_param(ex, "error") {
            return Err(refused(&format!(
                "the identity provider refused the login: {}",
                idp::safe_code(&error)
            )));
        }
        let code =
            query_param(ex, "code").ok_or_else(|| refused("the callback carries no code"))?;
        let client = self.client(ex)?;
        let redirect_uri = redirect_uri(ex)?;
        let (tokens, identity) = match &self.backend {
            Backend::Oidc(oidc) => {
                let found = oidc.discovered().await?;
                let tokens = exchange_code(
                    &self.http,
                    &found.endpoints,
                    &client,
                    &code,
                    &pending.verifier,
                    &redirect_uri,
                )
                .await?;
                let identity = self
                    .oidc_identity(&found, &tokens, &client, &pending)
                    .await?;
                (tokens, identity)
            }
            Backend::OAuth {
                provider,
                endpoints,
            } => {
                let tokens = exchange_code(
                    &self.http,
                    endpoints,
                    &client,
                    &code,
                    &pending.verifier,
                    &redirect_uri,
                )
                .await?;
                let token = tokens
                    .access_token
                    .as_deref()
                    .ok_or_else(|| refused("the token endpoint returned no access token"))?;
                let identity = fetch_userinfo(&self.http, endpoints, token, provider.identity)
                    .await?
                    .ok_or_else(|| refused("the provider's user document names no user"))?;
                (tokens, identity)
            }
        };
        let session = Session::new(identity, tokens, now);
        let attrs = self.attrs(ex);
        let cookies = vec![
            attrs.set(
                &self.session_cookie,
                &session.seal(&self.sealer, &self.session_cookie),
                Some(self.remaining(&session, now)),
            ),
            attrs.clear(&self.login_cookie),
        ];
        Ok(Flow::Respond(redirect(&pending.return_to, cookies)))
    }

    /// Who the ID token names; email and name come from userinfo when the token lacks them.
    async fn oidc_identity(
        &self,
        found: &Discovered,
        tokens: &Tokens,
        client: &Client,
        pending: &Pending,
    ) -> Result<Identity, LoginError> {
        let id_token = tokens
            .id_token
            .as_deref()
            .ok_or_else(|| LoginError::Refused("the token endpoint returned no ID token".into()))?;
        let mut identity = found
            .verify_id_token(id_token, &client.id, &pending.nonce)
            .await?;
        if identity.email.is_empty() || identity.name.is_empty() {
            if let Some(token) = &tokens.access_token {
                let more = fetch_userinfo(
                    &self.http,
                    &found.endpoints,
                    token,
                    providers::standard_identity,
                )
                .await?;
                if let Some(more) = more.filter(|more| more.id == identity.id) {
                    if identity.email.is_empty() {
                        identity.email = more.email;
                    }
                    if identity.name.is_empty() {
                        identity.name = more.name;
                    }
                }
            }
        }
        Ok(identity)
    }

    /// Ends the session; OIDC providers with an `end_session_endpoint` end theirs too.
    async fn logout(&self, ex: &mut Exchange) -> Result<Flow, Failure> {
        let session: Option<Session> = self
            .sealer
            .open_cookie(&ex.request.headers, &self.session_cookie);
        let attrs = self.attrs(ex);
        let cookies = vec![
            attrs.clear(&self.session_cookie),
            attrs.clear(&self.login_cookie),
        ];
        if let Backend::Oidc(oidc) = &self.backend {
            let end_session = match oidc.discovered().await {
                Ok(found) => found.endpoints.end_session.clone(),
                Err(_) => None,
            };
            if let Some(end) = end_session {
                let client = self.client(ex)?;
                let mut location = end.to_string();
                location.push(if location.contains('?') { '&' } else { '?' });
                let mut query = url::form_urlencoded::Serializer::new(location);
                query.append_pair("client_id", &client.id);
                if let Some(hint) = session.as_ref().and_then(|s| s.id_token.as_deref()) {
                    query.append_pair("id_token_hint", hint);
                }
                return Ok(Flow::Respond(redirect(&query.finish(), cookies)));
            }
        }
        let mut response = Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header(header::CACHE_CONTROL, "no-store");
        for cookie in cookies {
            response = response.header(header::SET_COOKIE, cookie);
        }
        Ok(Flow::Respond(
            response
                .body(full("You have been logged out.\n"))
                .expect("static response parts are valid"),
        ))
    }

    /// The client credentials for this request.
    fn client(&self, ex: &Exchange) -> Result<Client, keygate_cel::EvalError> {
        let scope = ex.scope();
        Ok(Client {
            id: self.client_id.eval_string(&scope)?,
            secret: self
                .client_secret
                .as_ref()
                .map(|t| t.eval_string(&scope))
                .transpose()?,
        })
    }

    fn attrs(&self, ex: &Exchange) -> CookieAttrs<'_> {
        CookieAttrs {
            secure: ex.scheme == "https",
            domain: self.cookie_domain.as_deref(),
        }
    }

    /// Seconds until the session reaches its maximum duration (the cookie's Max-Age).
    fn remaining(&self, session: &Session, now: i64) -> u64 {
        u64::try_from(session.created + self.max_session - now).unwrap_or(0)
    }

    /// The error answer for a failed login step; a refused login also drops the login cookie.
    fn login_error(&self, ex: &Exchange, err: LoginError) -> GatewayError {
        match err {
            LoginError::Refused(why) => {
                GatewayError::new(ErrorCode::LoginFailed, format!("login failed: {why}"))
                    .with_header(header::SET_COOKIE, self.attrs(ex).clear(&self.login_cookie))
            }
            LoginError::Unavailable(why) => {
                warn!(request_id = %ex.id, error = %why, "identity provider unavailable");
                GatewayError::new(
                    ErrorCode::IdentityProviderUnavailable,
                    "the identity provider is unavailable; try again later",
                )
            }
        }
    }
}

/// Userinfo read with `read`; `None` when the provider has no userinfo endpoint or the document
/// names no user.
async fn fetch_userinfo(
    http: &HttpClient,
    endpoints: &Endpoints,
    access_token: &str,
    read: fn(&serde_json::Value) -> Option<Identity>,
) -> Result<Option<Identity>, LoginError> {
    let Some(url) = &endpoints.userinfo else {
        return Ok(None);
    };
    Ok(read(&userinfo(http, url, access_token).await?))
}

/// `scheme://host` + [`CALLBACK_PATH`] for this request.
fn redirect_uri(ex: &Exchange) -> Result<String, LoginError> {
    let host = ex
        .request
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| ex.request.uri.authority().map(|a| a.as_str()))
        .filter(|host| host.parse::<http::uri::Authority>().is_ok() && !host.contains('@'))
        .ok_or_else(|| LoginError::Refused("the request names no valid host".into()))?;
    Ok(format!("{}://{host}{CALLBACK_PATH}", ex.scheme))
}

/// The first value of query parameter `name`, decoded.
fn query_param(ex: &Exchange, name: &str) -> Option<String> {
    let query = ex.request.uri.query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// A local path to return to: anything else (`//host`, `https://...`) becomes `/`, so the
/// login can never redirect off this gateway.
fn safe_return(path: &str) -> String {
    if path.starts_with('/') && !path.starts_with("//") && !path.starts_with("/\\") {
        path.to_owned()
    } else {
        "/".to_owned()
    }
}

/// A CORS preflight: OPTIONS with `Origin` and `Access-Control-Request-Method`.
fn is_preflight(ex: &Exchange) -> bool {
    ex.request.method == Method::OPTIONS
        && ex.request.headers.contains_key(header::ORIGIN)
        && ex
            .request
            .headers
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// A 302 to `location` setting `cookies`, never cached.
fn redirect(location: &str, cookies: Vec<HeaderValue>) -> Response<crate::body::Body> {
    let mut response = Response::builder()
        .status(StatusCode::FOUND)
        .header(header::CACHE_CONTROL, "no-store");
    match HeaderValue::from_str(location) {
        Ok(value) => response = response.header(header::LOCATION, value),
        Err(_) => response = response.header(header::LOCATION, "/"),
    }
    for cookie in cookies {
        response = response.header(header::SET_COOKIE, cookie);
    }
    response
        .body(empty())
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_paths_stay_on_the_gateway() {
        assert_eq!(safe_return("/chat?x=1"), "/chat?x=1");
        assert_eq!(safe_return("//evil.test/x"), "/");
        assert_eq!(safe_return("/\\evil.test"), "/");
        assert_eq!(safe_return("https://evil.test"), "/");
        assert_eq!(safe_return(""), "/");
    }
}
