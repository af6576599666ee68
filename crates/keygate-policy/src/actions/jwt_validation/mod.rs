//! `jwt-validation`: require signed JWTs (keys from JWKS URLs) carrying an allowed issuer and
//! audience, and publish their claims as `actions.ngrok.jwt_validation.tokens[]`.

mod config;
mod extract;
pub(super) mod jwks;
pub(super) mod keys;
pub(super) mod token;

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderName, HeaderValue};
use jsonwebtoken::Algorithm;
use keygate_cel::{from_json, EvalError, Scope, Template, Value};

use self::config::{Config, FieldError, Method};
use self::jwks::{Candidates, Jwks};
use self::token::{Parsed, TokenError};
use crate::action::{Action, ActionError, ActionFuture, ActionKind, Flow, Phase, Termination};
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::error::GatewayError;
use crate::exchange::Exchange;

pub const KIND: ActionKind = ActionKind {
    name: "jwt-validation",
    result_name: "jwt_validation",
    phases: &[Phase::OnHttpRequest],
    termination: Termination::Sometimes,
    needs_config: true,
    build,
};

struct JwtValidation {
    issuers: Vec<Text>,
    audiences: Vec<String>,
    tokens: Vec<TokenSpec>,
    algorithms: Vec<Algorithm>,
    jwks: Jwks,
}

/// Where one configured token is read from.
struct TokenSpec {
    method: Method,
    name: Text,
    prefix: Option<Text>,
}

/// A config string: literal, or interpolated per request.
enum Text {
    Literal(String),
    Template(Template),
}

impl Text {
    fn build(cx: &BuildContext<'_>, field: &str, source: &str) -> Result<Self, Diagnostic> {
        if source.contains("${") {
            Ok(Text::Template(cx.template(field, source)?))
        } else {
            Ok(Text::Literal(source.to_owned()))
        }
    }

    fn resolve(&self, scope: &Scope<'_>) -> Result<Cow<'_, str>, EvalError> {
        match self {
            Text::Literal(text) => Ok(Cow::Borrowed(text)),
            Text::Template(template) => template.eval_string(scope).map(Cow::Owned),
        }
    }
}

fn build(cx: &BuildContext<'_>) -> Result<Box<dyn Action>, Diagnostic> {
    let config: Config = cx.config()?;
    let located = |err: FieldError| cx.error(&err.field, err.message);
    if config.issuer.allow_list.is_empty() {
        return Err(cx.error("issuer.allow_list", "list at least one allowed issuer"));
    }
    let issuers = config
        .issuer
        .allow_list
        .iter()
        .enumerate()
        .map(|(i, item)| Text::build(cx, &format!("issuer.allow_list[{i}].value"), &item.value))
        .collect::<Result<_, _>>()?;
    let audiences = match config.audience {
        None => Vec::new(),
        Some(list) if list.allow_list.is_empty() => {
            return Err(cx.error(
                "audience.allow_list",
                "list at least one audience, or remove audience",
            ))
        }
        Some(list) => list.allow_list.into_iter().map(|item| item.value).collect(),
    };
    if config.http.tokens.is_empty() {
        return Err(cx.error("http.tokens", "configure at least one token location"));
    }
    let mut tokens: Vec<TokenSpec> = Vec::with_capacity(config.http.tokens.len());
    for (i, token) in config.http.tokens.iter().enumerate() {
        let method = config::token_method(i, token).map_err(located)?;
        let name_field = format!("http.tokens[{i}].name");
        let name = Text::build(cx, &name_field, token.name.trim())?;
        if let Text::Literal(literal) = &name {
            if method == Method::Header && HeaderName::from_bytes(literal.as_bytes()).is_err() {
                return Err(cx.error(
                    &name_field,
                    format!("'{literal}' is not a valid header name"),
                ));
            }
            let duplicate = tokens.iter().any(|t| {
                t.method == method
                    && matches!(&t.name, Text::Literal(n) if n.eq_ignore_ascii_case(literal))
            });
            if duplicate {
                return Err(cx.error(
                    &name_field,
                    format!("the {} '{literal}' is listed twice", method.as_str()),
                ));
            }
        }
        let prefix = token
            .prefix
            .as_deref()
            .map(|p| Text::build(cx, &format!("http.tokens[{i}].prefix"), p))
            .transpose()?;
        tokens.push(TokenSpec {
            method,
            name,
            prefix,
        });
    }
    let algorithms = config::allowed_algorithms(&config.jws.allowed_algorithms).map_err(located)?;
    let urls = config::jwks_urls(&config.jws.keys).map_err(located)?;
    for url in &urls {
        let loopback = url
            .host()
            .is_some_and(|h| h == "localhost" || h.starts_with("127.") || h == "[::1]");
        if url.scheme_str() == Some("http") && !loopback {
            cx.warn(
                "jws.keys",
                format!("JWKS URL {url} is plain http: use https outside local testing"),
            );
        }
    }
    let jwks = Jwks::new(urls, cx.deps.http.clone());
    if !cx.deps.offline {
        jwks.start();
    }
    Ok(Box::new(JwtValidation {
        issuers,
        audiences,
        tokens,
        algorithms,
        jwks,
    }))
}

/// A token location with its interpolations evaluated for one request.
struct Resolved {
    method: Method,
    name: String,
    prefix: Option<String>,
}

/// What one located token yielded, for `tokens[]`.
struct Found {
    token: String,
    method: Method,
    name: String,
}

impl Action for JwtValidation {
    fn run<'a>(&'a self, ex: &'a mut Exchange) -> ActionFuture<'a> {
        Box::pin(self.validate(ex))
    }
}

impl JwtValidation {
    async fn validate(&self, ex: &mut Exchange) -> Result<Flow, ActionError> {
        self.jwks.start();
        let (specs, issuers) = self.resolve(&ex.scope())?;
        let issuers: Vec<&str> = issuers.iter().map(String::as_str).collect();
        let mut published = Vec::with_capacity(specs.len());
        let mut failure = None;
        for spec in specs {
            let found = match locate(ex, &spec).await? {
                Ok(token) => Found {
                    token,
                    method: spec.method,
                    name: spec.name,
                },
                Err(err) => {
                    failure = Some(err);
                    break;
                }
            };
            match self.check(&found.token, &issuers).await {
                Ok(parsed) => published.push(token_result(&parsed, &found, true)),
                Err((parsed, err)) => {
                    published.extend(parsed.map(|p| token_result(&p, &found, false)));
                    failure = Some(err);
                    break;
                }
            }
        }
        let mut results = HashMap::from([("tokens", Value::List(published.into()))]);
        if let Some(err) = &failure {
            results.insert(
                "error",
                Value::from(HashMap::from([
                    ("code", Value::from(err.code().as_str())),
                    ("message", Value::from(err.to_string())),
                ])),
            );
        }
        ex.results.set(KIND.result_name, Value::from(results));
        match failure {
            None => Ok(Flow::Continue),
            Some(err) => Err(ActionError::Gateway(rejection(&err))),
        }
    }

    /// Evaluates the interpolated token locations and issuers for this request.
    fn resolve(&self, scope: &Scope<'_>) -> Result<(Vec<Resolved>, Vec<String>), EvalError> {
        let specs = self
            .tokens
            .iter()
            .map(|spec| {
                Ok(Resolved {
                    method: spec.method,
                    name: spec.name.resolve(scope)?.into_owned(),
                    prefix: spec
                        .prefix
                        .as_ref()
                        .map(|p| p.resolve(scope).map(Cow::into_owned))
                        .transpose()?,
                })
            })
            .collect::<Result<_, EvalError>>()?;
        let issuers = self
            .issuers
            .iter()
            .map(|i| i.resolve(scope).map(Cow::into_owned))
            .collect::<Result<_, _>>()?;
        Ok((specs, issuers))
    }

    /// Parses, verifies and checks one token; on failure also returns what could be decoded.
    async fn check<'t>(
        &self,
        token: &'t str,
        issuers: &[&str],
    ) -> Result<Parsed<'t>, (Option<Parsed<'t>>, TokenError)> {
        let parsed = token::parse(token, &self.algorithms).map_err(|err| (None, err))?;
        let keys = match self
            .jwks
            .candidates(parsed.kid.as_deref(), parsed.alg)
            .await
        {
            Candidates::Keys(keys) if keys.is_empty() => {
                return Err((Some(parsed), TokenError::UnknownKey))
            }
            Candidates::Keys(keys) => keys,
            Candidates::Unavailable => return Err((Some(parsed), TokenError::KeysUnavailable)),
        };
        if !parsed.verify(&keys) {
            return Err((Some(parsed), TokenError::Signature));
        }
        match token::check_claims(&parsed.payload, issuers, &self.audiences, unix_now()) {
            Ok(()) => Ok(parsed),
            Err(err) => Err((Some(parsed), err)),
        }
    }
}

/// Finds one token in the request. The outer error stops the request (body too large, ...); the
/// inner one refuses the token.
async fn locate(
    ex: &mut Exchange,
    spec: &Resolved,
) -> Result<Result<String, TokenError>, ActionError> {
    let prefix = spec.prefix.as_deref();
    Ok(match spec.method {
        Method::Header => extract::from_header(&ex.request.headers, &spec.name, prefix),
        Method::Body => match extract::body_allowed(&ex.request.method) {
            Ok(()) => {
                let body = ex.buffer_body().await?;
                extract::from_body(&ex.request.headers, &body, &spec.name, prefix)
            }
            Err(err) => Err(err),
        },
    })
}

/// One `tokens[]` entry: `header`, `payload`, `signature`, `location`, `location_property`, `verified`.
fn token_result(parsed: &Parsed<'_>, found: &Found, verified: bool) -> Value {
    Value::from(HashMap::from([
        (
            "header",
            from_json(&serde_json::Value::Object(parsed.header.clone())),
        ),
        (
            "payload",
            from_json(&serde_json::Value::Object(parsed.payload.clone())),
        ),
        ("signature", Value::from(parsed.signature.to_owned())),
        ("location", Value::from(found.method.as_str())),
        ("location_property", Value::from(found.name.clone())),
        ("verified", Value::Bool(verified)),
    ]))
}

/// The 401 answer for a refused token.
fn rejection(err: &TokenError) -> GatewayError {
    GatewayError::new(err.code(), format!("invalid JWT: {err}")).with_header(
        http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    )
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
