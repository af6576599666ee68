//! What the action records about a request: `actions.ngrok.ai_gateway.*` (reference 4.15, the
//! 2026-01 scheme) and the one-line attempt list used in exhaustion errors.

use std::time::{Duration, Instant};

use http::HeaderMap;
use keygate_ai::{client_credential, redact, Rejection};
use serde_json::{json, Map, Value};

use crate::error::GatewayError;

/// Longest error body kept per attempt.
pub const MAX_ERROR_BODY: usize = 1024;

/// How one upstream attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptEnd {
    /// 2xx/3xx with its first byte read.
    Success,
    /// An HTTP status that is not a success.
    Status(u16),
    /// `per_request_timeout` (or the remaining total budget) ran out.
    Timeout,
    /// Connect, TLS or protocol failure.
    Transport(String),
    /// No key from any source for a provider that needs one.
    NoKey,
}

/// One upstream attempt (`models_tried[].requests_made[]`).
#[derive(Debug, Clone)]
pub struct RequestMade {
    pub end: AttemptEnd,
    /// The upstream status (0 on transport errors, timeouts and missing keys).
    pub status_code: u16,
    /// Upstream URL without its query (config query parameters may hold secrets).
    pub url: String,
    pub api_key: Option<String>,
    pub response_headers: Map<String, Value>,
    pub body_on_error: Option<String>,
    pub time_to_first_byte: Option<Duration>,
    pub total: Duration,
}

/// One candidate model that was tried.
#[derive(Debug, Clone)]
pub struct ModelTried {
    pub provider: String,
    pub model: String,
    pub author: String,
    pub requests: Vec<RequestMade>,
}

/// The request's trace, built while the action runs.
pub struct Trace {
    pub started: Instant,
    /// What the client asked for (`model`, `models`).
    requested: (String, Vec<String>),
    pub rejected: Vec<Rejection>,
    pub selection: Vec<Value>,
    pub tried: Vec<ModelTried>,
    pub input_estimate: u64,
    /// Time spent waiting on upstream (excluded from `gateway_latency_ms`).
    pub upstream_wait: Duration,
}

impl Trace {
    /// Starts a trace; client facts are read from the request head only when published.
    pub fn new() -> Trace {
        Trace {
            started: Instant::now(),
            requested: (String::new(), Vec::new()),
            rejected: Vec::new(),
            selection: Vec::new(),
            tried: Vec::new(),
            input_estimate: 0,
            upstream_wait: Duration::ZERO,
        }
    }

    /// Records what the client asked for.
    pub fn set_requested(&mut self, model: Option<&str>, models: &[String]) {
        self.requested = (model.unwrap_or_default().to_owned(), models.to_vec());
    }

    /// Number of upstream attempts (missing-key entries excluded).
    pub fn attempts(&self) -> u32 {
        let count = self
            .tried
            .iter()
            .flat_map(|m| &m.requests)
            .filter(|r| r.end != AttemptEnd::NoKey)
            .count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    /// `[429] openai/gpt-4o (sk-proj...7890): 429; ...`, keys redacted.
    pub fn attempt_list(&self) -> String {
        let mut parts = Vec::new();
        for model in &self.tried {
            for request in &model.requests {
                let key = request
                    .api_key
                    .as_deref()
                    .map(|k| format!(" ({k})"))
                    .unwrap_or_default();
                let (tag, detail) = match &request.end {
                    AttemptEnd::Success => ("ok".to_owned(), "success".to_owned()),
                    AttemptEnd::Status(code) => (code.to_string(), status_text(*code)),
                    AttemptEnd::Timeout => ("timeout".to_owned(), "per-request timeout".to_owned()),
                    AttemptEnd::Transport(err) => ("unreachable".to_owned(), err.clone()),
                    AttemptEnd::NoKey => ("no-key".to_owned(), "no API key".to_owned()),
                };
                parts.push(format!(
                    "[{tag}] {}/{}{key}: {detail}",
                    model.provider, model.model
                ));
            }
        }
        parts.join("; ")
    }

    /// The `actions.ngrok.ai_gateway` value for the request `head` and how it ended.
    pub fn to_value(&self, head: &http::request::Parts, outcome: Outcome<'_>) -> Value {
        let total = self.started.elapsed();
        let headers = &head.headers;
        let user_agent = headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let mut value = json!({
            "status": if matches!(outcome, Outcome::Success { .. }) { "success" } else { "error" },
            "client": {
                "method": head.method.as_str(),
                "path": head.uri.path(),
                "user_agent": user_agent,
                "request_headers": trimmed_headers(headers),
                "api_key_hash": client_credential(headers).map(|k| redact(&k)).unwrap_or_default(),
                "model": self.requested.0,
                "models": self.requested.1,
            },
            "input_ngrok_tokens": self.input_estimate,
            "output_ngrok_tokens": 0,
            "gateway_latency_ms": millis(total.saturating_sub(self.upstream_wait)),
            "model_selection": self.selection,
            "models_tried": self.tried.iter().map(model_value).collect::<Vec<_>>(),
        });
        value["client"]["rejected_models"] = self
            .rejected
            .iter()
            .map(|r| json!({"model": r.model, "reason": r.reason()}))
            .collect();
        match outcome {
            Outcome::Success {
                model_index,
                request_index,
            } => {
                if let Some(model) = self.tried.get(model_index) {
                    value["success"] = json!({
                        "model_index": model_index, "request_index": request_index,
                        "model": model.model, "provider": model.provider, "author": model.author,
                    });
                }
            }
            Outcome::Failed(err) => {
                value["error"] = json!({"code": err.code.as_str(), "message": err.message});
            }
            Outcome::Refused { provider, status } => {
                value["error"] = json!({
                    "code": PROVIDER_REFUSED,
                    "message": format!(
                        "provider '{provider}' refused the request with status {}",
                        status.as_u16()
                    ),
                });
            }
        }
        value
    }
}

/// The `error.code` of a request whose provider refused it with its own 4xx, which went to the
/// client unchanged: not a gateway answer, so not an [`crate::ErrorCode`].
const PROVIDER_REFUSED: &str = "ERR_KEYGATE_UPSTREAM";

/// How a request through the action ended, as the published results describe it.
#[derive(Clone, Copy)]
pub enum Outcome<'a> {
    /// Request `request_index` of model `model_index` (indices into the trace) succeeded.
    Success {
        model_index: usize,
        request_index: usize,
    },
    /// The gateway answered with an error.
    Failed(&'a GatewayError),
    /// The provider's own 4xx answer was passed to the client.
    Refused {
        provider: &'a str,
        status: http::StatusCode,
    },
}

fn model_value(model: &ModelTried) -> Value {
    json!({
        "model": model.model,
        "provider": model.provider,
        "author": model.author,
        "api_key_selection": [],
        "requests_made": model.requests.iter().map(request_value).collect::<Vec<_>>(),
    })
}

fn request_value(request: &RequestMade) -> Value {
    let (status, error) = match &request.end {
        AttemptEnd::Success => ("success", Value::Null),
        AttemptEnd::Status(code) => ("error", json!(status_text(*code))),
        AttemptEnd::Timeout => ("error", json!("timeout")),
        AttemptEnd::Transport(err) => ("error", json!(err)),
        AttemptEnd::NoKey => ("error", json!("no API key")),
    };
    json!({
        "status": status,
        "error": error,
        "upstream_input_tokens": null,
        "upstream_output_tokens": null,
        "request": {"url": request.url, "api_key": request.api_key.clone().unwrap_or_default()},
        "response": {"status_code": request.status_code, "headers": request.response_headers, "body_on_error": request.body_on_error.clone().unwrap_or_default()},
        "upstream_latency": {
            "time_to_first_byte_ms": request.time_to_first_byte.map(millis),
            "total_ms": millis(request.total),
        },
    })
}

fn status_text(code: u16) -> String {
    let reason = http::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    format!("{code} {reason}").trim_end().to_owned()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Client headers with credential values redacted.
fn trimmed_headers(headers: &HeaderMap) -> Value {
    let mut out = Map::new();
    for (name, value) in headers {
        let text = value.to_str().unwrap_or_default();
        let shown = match name.as_str() {
            "authorization" | "x-api-key" | "api-key" | "proxy-authorization" => {
                let token = text
                    .split_once(' ')
                    .filter(|(scheme, _)| name == "authorization" && !scheme.is_empty());
                match token {
                    Some((scheme, rest)) => format!("{scheme} {}", redact(rest.trim())),
                    None => redact(text),
                }
            }
            "cookie" => "...".to_owned(),
            _ => text.to_owned(),
        };
        out.insert(name.as_str().to_owned(), json!(shown));
    }
    Value::Object(out)
}

/// Upstream response headers as a JSON map (`set-cookie` left out).
pub fn response_headers(headers: &HeaderMap) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, value) in headers {
        if name == http::header::SET_COOKIE {
            continue;
        }
        out.insert(
            name.as_str().to_owned(),
            json!(value.to_str().unwrap_or_default()),
        );
    }
    out
}

/// A provider error body, cut to [`MAX_ERROR_BODY`] bytes, with any key the gateway sent replaced
/// by its redacted form.
pub fn error_body_excerpt(body: &[u8], key: Option<&str>) -> String {
    let cut = &body[..body.len().min(MAX_ERROR_BODY)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if let Some(key) = key.filter(|k| !k.is_empty()) {
        text = text.replace(key, &redact(key));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(headers: &[(&str, &str)]) -> http::request::Parts {
        let mut builder = http::Request::builder()
            .method("POST")
            .uri("/v1/chat/completions");
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn client_credentials_are_trimmed() {
        let token = "kg-abcdefghijklmnopqrstuvwxyz0123";
        let head = head(&[
            ("authorization", &format!("Bearer {token}")),
            ("x-other", "1"),
        ]);
        let value = Trace::new().to_value(&head, Outcome::Failed(&GatewayError::bad_request("x")));
        let text = value.to_string();
        assert!(!text.contains(token), "{text}");
        assert_eq!(
            value["client"]["request_headers"]["authorization"],
            "Bearer kg-abcd...0123"
        );
        assert_eq!(value["client"]["api_key_hash"], "kg-abcd...0123");
        assert_eq!(value["status"], "error");
        assert_eq!(value["error"]["code"], "ERR_KEYGATE_3801");
    }

    #[test]
    fn a_provider_refusal_is_an_upstream_error() {
        let outcome = Outcome::Refused {
            provider: "openai",
            status: http::StatusCode::UNPROCESSABLE_ENTITY,
        };
        let value = Trace::new().to_value(&head(&[]), outcome);
        assert_eq!(value["status"], "error");
        assert_eq!(
            value["error"],
            json!({"code": "ERR_KEYGATE_UPSTREAM",
                "message": "provider 'openai' refused the request with status 422"})
        );
    }

    #[test]
    fn attempts_are_listed_with_redacted_keys() {
        let mut trace = Trace::new();
        let request = |end| RequestMade {
            end,
            status_code: 429,
            url: "https://api.openai.com/v1/chat/completions".into(),
            api_key: Some(redact("sk-proj-0123456789abcdefghij")),
            response_headers: Map::new(),
            body_on_error: None,
            time_to_first_byte: None,
            total: Duration::from_millis(5),
        };
        trace.tried.push(ModelTried {
            provider: "openai".into(),
            model: "gpt-4o".into(),
            author: "openai".into(),
            requests: vec![
                request(AttemptEnd::Status(429)),
                request(AttemptEnd::Timeout),
            ],
        });
        assert_eq!(
            trace.attempt_list(),
            "[429] openai/gpt-4o (sk-proj...ghij): 429 Too Many Requests; [timeout] openai/gpt-4o (sk-proj...ghij): per-request timeout"
        );
        assert_eq!(trace.attempts(), 2);
        let value = trace.to_value(
            &head(&[]),
            Outcome::Success {
                model_index: 0,
                request_index: 1,
            },
        );
        assert_eq!(
            value["models_tried"][0]["requests_made"][0]["response"]["status_code"],
            429
        );
        assert_eq!(value["success"]["provider"], "openai");
    }

    #[test]
    fn error_bodies_never_echo_the_key() {
        let key = "sk-live-abcdefghijklmnopqrstuvwxyz";
        let body = format!("{{\"error\":\"Incorrect API key provided: {key}\"}}");
        let excerpt = error_body_excerpt(body.as_bytes(), Some(key));
        assert!(!excerpt.contains(key));
        assert!(excerpt.contains("sk-live...wxyz"));
        assert_eq!(
            error_body_excerpt(&[b'x'; 5000], None).len(),
            MAX_ERROR_BODY
        );
    }
}
