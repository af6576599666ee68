//! `http-request`: a side request to another service while the policy runs (a lookup, a
//! notification); its answer is published as `actions.ngrok.http_request.*` for later actions.

mod attempt;
mod results;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use http::header::{HeaderName, HeaderValue, USER_AGENT};
use http::{HeaderMap, Method};
use keygate_cel::{EvalError, Expression, Scope, Template, Value, Variable};
use keygate_http::HttpClient;
use serde::Deserialize;
use tracing::warn;
use url::Url;

use crate::action::{Action, ActionError, ActionFuture, ActionKind, Flow, Phase, Termination};
use crate::actions::header_templates::HeaderTemplates;
use crate::actions::parse_duration;
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::error::GatewayError;
use crate::exchange::Exchange;
use attempt::{Attempt, Failure};

pub const KIND: ActionKind = ActionKind {
    name: "http-request",
    result_name: "http_request",
    phases: &[Phase::OnHttpRequest, Phase::OnHttpResponse],
    // Only with `on_error: halt` and a failed request.
    termination: Termination::Sometimes,
    needs_config: true,
    build,
};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
const MIN_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_REDIRECTS: u32 = 10;
/// Attempts after the first one that `retry_condition` may ask for.
const MAX_RETRIES: usize = 3;
const MAX_QUERY_PARAMS: usize = 32;
const MAX_QUERY_KEY: usize = 128;
const MAX_QUERY_VALUE: usize = 8192;
const METHODS: [Method; 7] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
    Method::HEAD,
];
/// Headers Keygate sets on every side request (ngrok's `Ngrok-Req-Type` and `Ngrok-Req-Id`
/// under Keygate's name).
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const REQ_TYPE: HeaderName = HeaderName::from_static("keygate-req-type");
const REQ_ID: HeaderName = HeaderName::from_static("keygate-req-id");
/// Headers a policy may not set: Keygate's own, and the framing the client computes.
const RESERVED: [&str; 6] = [
    "x-forwarded-for",
    "keygate-req-type",
    "keygate-req-id",
    "content-length",
    "transfer-encoding",
    "connection",
];
const USER_AGENT_VALUE: &str = concat!("keygate/", env!("CARGO_PKG_VERSION"));

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    query_params: Vec<QueryParam>,
    body: Option<String>,
    timeout: Option<String>,
    max_redirects: Option<i64>,
    retry_condition: Option<String>,
    #[serde(default)]
    on_error: OnError,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryParam {
    key: String,
    value: String,
}

/// What a failed side request does to the policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OnError {
    /// Record the error in the results and run the next action.
    #[default]
    Continue,
    /// Answer the client with the error.
    Halt,
}

struct HttpRequest {
    url: Template,
    method: Method,
    headers: HeaderTemplates,
    query_params: Vec<(String, Template)>,
    body: Option<Template>,
    /// For the whole action: every attempt and redirect.
    timeout: Duration,
    max_redirects: u32,
    retry_condition: Option<Expression>,
    on_error: OnError,
    http: HttpClient,
    /// `keygate policy test` runs offline: nothing is sent, every request fails.
    offline: bool,
}

fn build(cx: &BuildContext<'_>) -> Result<Box<dyn Action>, Diagnostic> {
    let config: Config = cx.config()?;
    let url = cx.template("url", &config.url)?;
    if let Some(literal) = url.as_literal() {
        target(literal).map_err(|message| cx.error("url", message))?;
    }
    let method = match config.method.as_deref() {
        None => Method::GET,
        Some(name) => METHODS
            .iter()
            .find(|m| m.as_str() == name)
            .cloned()
            .ok_or_else(|| {
                cx.error(
                    "method",
                    format!(
                        "unknown method '{name}': use GET, POST, PUT, PATCH, DELETE, OPTIONS or HEAD"
                    ),
                )
            })?,
    };
    let headers = HeaderTemplates::build(cx, "headers", &config.headers)?;
    if let Some(name) = config
        .headers
        .keys()
        .find(|name| RESERVED.iter().any(|r| name.eq_ignore_ascii_case(r)))
    {
        return Err(cx.error(
            &format!("headers.{name}"),
            format!("header '{name}' is set by Keygate"),
        ));
    }
    let query_params = query_params(cx, &config.query_params)?;
    let body = match config.body {
        Some(_) if ![Method::POST, Method::PUT, Method::PATCH].contains(&method) => {
            return Err(cx.error(
                "body",
                format!("a body is only sent with POST, PUT or PATCH, not {method}"),
            ))
        }
        Some(source) => Some(cx.template("body", &source)?),
        None => None,
    };
    let timeout = match config.timeout.as_deref() {
        None => DEFAULT_TIMEOUT,
        Some(text) => parse_duration(text)
            .ok()
            .filter(|t| (MIN_TIMEOUT..=MAX_TIMEOUT).contains(t))
            .ok_or_else(|| {
                cx.error(
                    "timeout",
                    format!("timeout must be a duration from 1s to 30s, got '{text}'"),
                )
            })?,
    };
    let max_redirects = match config.max_redirects {
        None => 0,
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| *n <= MAX_REDIRECTS)
            .ok_or_else(|| {
                cx.error(
                    "max_redirects",
                    format!("max_redirects must be 0-{MAX_REDIRECTS}, got {n}"),
                )
            })?,
    };
    let retry_condition = config
        .retry_condition
        .as_deref()
        .map(|source| cx.expression("retry_condition", source))
        .transpose()?;
    Ok(Box::new(HttpRequest {
        url,
        method,
        headers,
        query_params,
        body,
        timeout,
        max_redirects,
        retry_condition,
        on_error: config.on_error,
        http: cx.deps.http.clone(),
        offline: cx.deps.offline,
    }))
}

fn query_params(
    cx: &BuildContext<'_>,
    params: &[QueryParam],
) -> Result<Vec<(String, Template)>, Diagnostic> {
    if params.len() > MAX_QUERY_PARAMS {
        return Err(cx.error(
            "query_params",
            format!(
                "at most {MAX_QUERY_PARAMS} query parameters, got {}",
                params.len()
            ),
        ));
    }
    params
        .iter()
        .enumerate()
        .map(|(i, param)| {
            if param.key.is_empty() || param.key.len() > MAX_QUERY_KEY {
                return Err(cx.error(
                    &format!("query_params[{i}].key"),
                    format!("a query parameter key has 1-{MAX_QUERY_KEY} characters"),
                ));
            }
            if param.value.len() > MAX_QUERY_VALUE {
                return Err(cx.error(
                    &format!("query_params[{i}].value"),
                    format!("a query parameter value has at most {MAX_QUERY_VALUE} characters"),
                ));
            }
            let value = cx.template(&format!("query_params[{i}].value"), &param.value)?;
            Ok((param.key.clone(), value))
        })
        .collect()
}

/// An absolute `http://` or `https://` URL with a host. Any such target is allowed: Keygate
/// runs where its operator puts it, and ngrok's "internal endpoints only" has no equivalent.
fn target(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|err| format!("invalid URL: {err}"))?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return Err("the URL must be absolute http:// or https:// with a host".to_owned());
    }
    Ok(url)
}

/// The side request as rendered for this exchange.
struct Planned {
    method: Method,
    /// The target, or why the rendered text is not one.
    url: Result<Url, String>,
    headers: HeaderMap,
    body: Option<String>,
    /// What the results show: values that interpolate secrets are masked.
    shown: results::Shown,
}

impl Action for HttpRequest {
    fn run<'a>(&'a self, ex: &'a mut Exchange) -> ActionFuture<'a> {
        Box::pin(self.call(ex))
    }
}

impl HttpRequest {
    async fn call(&self, ex: &mut Exchange) -> Result<Flow, ActionError> {
        let planned = self.render(ex)?;
        let mut attempts = Vec::new();
        let run = self.attempts(ex, &planned, &mut attempts);
        let failure = match tokio::time::timeout(self.timeout, run).await {
            Ok(Ok(())) => attempts
                .last()
                .and_then(|a| a.outcome.as_ref().err())
                .cloned(),
            Ok(Err(err)) => return Err(err.into()),
            Err(_) => Some(Failure::timeout(self.timeout)),
        };
        let value = results::value(&planned, &attempts, failure.as_ref());
        ex.results.set(KIND.result_name, value);
        let Some(failure) = failure else {
            return Ok(Flow::Continue);
        };
        warn!(request_id = %ex.id, code = failure.code.as_str(), error = %failure.message, "http-request failed");
        match self.on_error {
            OnError::Continue => Ok(Flow::Continue),
            OnError::Halt => Err(GatewayError::new(
                failure.code,
                format!("http-request failed: {}", failure.message),
            )
            .into()),
        }
    }

    /// Renders URL, query, headers and body (an interpolation error fails the rule, as in every
    /// action; a URL that renders to no valid target is a request failure).
    fn render(&self, ex: &Exchange) -> Result<Planned, EvalError> {
        let scope = ex.scope();
        let text = self.url.eval_string(&scope)?;
        let mut shown = results::Shown::new(&text, self.url.reads_secrets());
        let mut url = target(&text);
        for (key, template) in &self.query_params {
            let value = template.eval_string(&scope)?;
            shown.query_param(key, &value, template.reads_secrets());
            if let Ok(url) = &mut url {
                url.query_pairs_mut().append_pair(key, &value);
            }
        }
        let mut headers = HeaderMap::new();
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        if let Ok(ip) = HeaderValue::from_str(&ex.conn.client_ip.to_string()) {
            headers.insert(X_FORWARDED_FOR, ip);
        }
        headers.insert(REQ_TYPE, HeaderValue::from_static("http-request"));
        if let Ok(id) = HeaderValue::from_str(&ex.id) {
            headers.insert(REQ_ID, id);
        }
        for (name, value) in self.headers.render(&scope)? {
            shown.header(&name, &value, self.headers.reads_secrets(&name));
            headers.insert(name, value);
        }
        let body = match &self.body {
            Some(template) => {
                let body = template.eval_string(&scope)?;
                shown.body(&body, template.reads_secrets());
                Some(body)
            }
            None => None,
        };
        Ok(Planned {
            method: self.method.clone(),
            url,
            headers,
            body,
            shown,
        })
    }

    /// The first attempt and the retries `retry_condition` asks for, recorded into `attempts`
    /// (which outlive a timeout that cuts this short).
    async fn attempts(
        &self,
        ex: &mut Exchange,
        planned: &Planned,
        attempts: &mut Vec<Attempt>,
    ) -> Result<(), EvalError> {
        let url = match &planned.url {
            Ok(_) if self.offline => {
                attempts.push(Attempt::failed(Failure::offline()));
                return Ok(());
            }
            Ok(url) => url,
            Err(message) => {
                attempts.push(Attempt::failed(Failure::invalid_url(message)));
                return Ok(());
            }
        };
        loop {
            let started = Instant::now();
            let outcome = attempt::send(&self.http, planned, url, self.max_redirects).await;
            attempts.push(Attempt::new(outcome, started.elapsed()));
            let Some(condition) = &self.retry_condition else {
                return Ok(());
            };
            if attempts.len() > MAX_RETRIES || !retry(condition, ex, attempts)? {
                return Ok(());
            }
        }
    }
}

/// Evaluates `retry_condition` with `attempts` (made so far) and `last_attempt` (`req`, `res`,
/// `error`) besides the phase's variables.
fn retry(condition: &Expression, ex: &Exchange, attempts: &[Attempt]) -> Result<bool, EvalError> {
    let scope = ex.scope();
    let mut extra: Vec<(&str, Variable)> = scope.extra.to_vec();
    extra.push(("attempts", Variable::new(Value::Int(attempts.len() as i64))));
    extra.push((
        "last_attempt",
        Variable::new(keygate_cel::from_json(&results::last_attempt(attempts))),
    ));
    condition.eval_bool(&Scope {
        extra: &extra,
        ..scope
    })
}

#[cfg(test)]
mod tests;
