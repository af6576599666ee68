//! `actions.ngrok.http_request.*` and the `last_attempt` variable of `retry_condition`.
//!
//! Values interpolating a secret are masked (`...`) in what is published, and so are credential
//! headers: results can end up in a `log` action's metadata.

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};
use keygate_cel::{from_json, Value};
use serde_json::{json, Map, Value as Json};

use super::attempt::{Attempt, Failure};
use super::Planned;

const MASK: &str = "...";

/// The side request as the results show it.
pub struct Shown {
    url: String,
    query: Vec<(String, String)>,
    headers: Vec<(HeaderName, String)>,
    body: String,
}

impl Shown {
    /// Starts from the rendered URL text (only its origin when it interpolates a secret).
    pub fn new(url: &str, secret: bool) -> Self {
        let url = if secret {
            url::Url::parse(url)
                .map(|u| format!("{}/{MASK}", u.origin().ascii_serialization()))
                .unwrap_or_else(|_| MASK.to_owned())
        } else {
            url.to_owned()
        };
        Self {
            url,
            query: Vec::new(),
            headers: Vec::new(),
            body: String::new(),
        }
    }

    pub fn query_param(&mut self, key: &str, value: &str, secret: bool) {
        let value = if secret { MASK } else { value };
        self.query.push((key.to_owned(), value.to_owned()));
    }

    pub fn header(&mut self, name: &HeaderName, value: &HeaderValue, secret: bool) {
        let credential = matches!(
            name.as_str(),
            "authorization" | "proxy-authorization" | "cookie" | "x-api-key" | "api-key"
        );
        let text = if secret || credential {
            MASK
        } else {
            value.to_str().unwrap_or_default()
        };
        self.headers.push((name.clone(), text.to_owned()));
    }

    pub fn body(&mut self, body: &str, secret: bool) {
        self.body = if secret { MASK } else { body }.to_owned();
    }

    /// The URL with its query parameters.
    pub(super) fn url(&self) -> String {
        let Ok(mut url) = url::Url::parse(&self.url) else {
            return self.url.clone();
        };
        if !self.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (key, value) in &self.query {
                pairs.append_pair(key, value);
            }
        }
        url.into()
    }
}

/// The whole `actions.ngrok.http_request` value: `req`, `res` (the last attempt's answer; a
/// status of 0 and empty fields when it got none), `attempts` and `error` (empty strings when
/// the request succeeded).
pub fn value(planned: &Planned, attempts: &[Attempt], failure: Option<&Failure>) -> Value {
    let shown = &planned.shown;
    let mut header = headers(&planned.headers);
    for (name, text) in &shown.headers {
        header.insert(name.as_str().to_owned(), json!([text]));
    }
    let value = json!({
        "req": {
            "method": planned.method.as_str(),
            "url": shown.url(),
            "header": header,
            "body": shown.body,
        },
        "res": attempts.last().map_or_else(no_response, response),
        "attempts": attempts.iter().map(attempt).collect::<Vec<_>>(),
        "error": error(failure),
    });
    from_json(&value)
}

/// `last_attempt` for `retry_condition`: the last attempt's `req`, `res` and `error`.
/// `res.statusCode` repeats `res.status_code` (ngrok's own example spells it so).
pub fn last_attempt(attempts: &[Attempt]) -> Json {
    let Some(last) = attempts.last() else {
        return Json::Null;
    };
    let mut res = response(last);
    res["statusCode"] = res["status_code"].clone();
    json!({
        "res": res,
        "error": error(last.outcome.as_ref().err()),
    })
}

fn response(attempt: &Attempt) -> Json {
    match &attempt.outcome {
        Ok(answer) => json!({
            "status_code": answer.status.as_u16(),
            "header": headers(&answer.headers),
            "body": String::from_utf8_lossy(&answer.body),
            "time_ms": attempt.time.as_millis() as u64,
            "resolved_ip": answer.resolved_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        }),
        Err(_) => json!({
            "status_code": 0,
            "header": {},
            "body": "",
            "time_ms": attempt.time.as_millis() as u64,
            "resolved_ip": "",
        }),
    }
}

fn no_response() -> Json {
    json!({"status_code": 0, "header": {}, "body": "", "time_ms": 0, "resolved_ip": ""})
}

fn attempt(attempt: &Attempt) -> Json {
    let res = response(attempt);
    json!({
        "resolved_ip": res["resolved_ip"],
        "response_header": res["header"],
        "response_status_code": res["status_code"],
        "response_time_ms": res["time_ms"],
        "error": error(attempt.outcome.as_ref().err()),
    })
}

fn error(failure: Option<&Failure>) -> Json {
    match failure {
        Some(failure) => json!({"code": failure.code.as_str(), "message": failure.message}),
        None => json!({"code": "", "message": ""}),
    }
}

/// Lower-case names to lists of values, as `req.headers` reads.
fn headers(headers: &HeaderMap) -> Map<String, Json> {
    let mut out = Map::new();
    for (name, value) in headers {
        let entry = out
            .entry(name.as_str().to_owned())
            .or_insert_with(|| json!([]));
        if let Some(list) = entry.as_array_mut() {
            list.push(json!(value.to_str().unwrap_or_default()));
        }
    }
    out
}
