//! What the call loop records about its attempts: one [`ModelTried`] per candidate reached, one
//! [`RequestMade`] per attempt (keys redacted, URLs without their query), and the one-line
//! attempt list the exhaustion errors quote. Turning it into a policy-visible value is the
//! caller's business.

use std::time::{Duration, Instant};

use http::HeaderMap;
use keygate_ai::redact;
use serde_json::{Map, Value};

use crate::trace_context::SpanId;

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

/// One upstream attempt.
#[derive(Debug, Clone)]
pub struct RequestMade {
    pub end: AttemptEnd,
    /// The upstream status (0 on transport errors, timeouts and missing keys).
    pub status_code: u16,
    /// Upstream URL without its query (config query parameters may hold secrets).
    pub url: String,
    /// The key sent, redacted.
    pub api_key: Option<String>,
    /// Only filled when the runtime keeps response headers (see `Runtime::keep_response_headers`).
    pub response_headers: Map<String, Value>,
    pub body_on_error: Option<String>,
    pub time_to_first_byte: Option<Duration>,
    pub total: Duration,
    /// When the attempt was sent.
    pub started: Instant,
    /// The attempt's span, sent upstream in `traceparent`: only in a traced request (see
    /// [`crate::TraceContext`]) and never for a candidate without a key (no request was made).
    pub span_id: Option<SpanId>,
}

/// One candidate model that was tried.
#[derive(Debug, Clone)]
pub struct ModelTried {
    pub provider: String,
    pub model: String,
    pub author: String,
    pub requests: Vec<RequestMade>,
}

/// The attempts of one call, in order.
#[derive(Debug)]
pub struct Trace {
    /// Where `total_timeout` counts from: the caller creates the trace when its request starts,
    /// so the time spent before the call (reading the body, selection) counts too.
    pub started: Instant,
    pub tried: Vec<ModelTried>,
    /// Time spent waiting on upstreams.
    pub upstream_wait: Duration,
}

impl Default for Trace {
    fn default() -> Self {
        Self::new()
    }
}

impl Trace {
    /// An empty trace starting now.
    pub fn new() -> Trace {
        Trace {
            started: Instant::now(),
            tried: Vec::new(),
            upstream_wait: Duration::ZERO,
        }
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
}

/// `429 Too Many Requests`: the code and its reason phrase, if it has one.
pub fn status_text(code: u16) -> String {
    let reason = http::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    format!("{code} {reason}").trim_end().to_owned()
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
            Value::String(value.to_str().unwrap_or_default().to_owned()),
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

    #[test]
    fn missing_keys_are_listed_but_not_counted_as_attempts() {
        let made = |end, api_key: Option<&str>| RequestMade {
            end,
            status_code: 0,
            url: String::new(),
            api_key: api_key.map(redact),
            response_headers: Map::new(),
            body_on_error: None,
            time_to_first_byte: None,
            total: Duration::ZERO,
            started: Instant::now(),
            span_id: None,
        };
        let tried = |model: &str, requests| ModelTried {
            provider: "openai".into(),
            model: model.into(),
            author: String::new(),
            requests,
        };
        let mut trace = Trace::new();
        trace.tried = vec![
            tried("gpt-4o", vec![made(AttemptEnd::NoKey, None)]),
            tried(
                "gpt-4o-mini",
                vec![
                    made(
                        AttemptEnd::Transport("cannot connect".into()),
                        Some("short"),
                    ),
                    made(AttemptEnd::Success, None),
                ],
            ),
        ];
        assert_eq!(trace.attempts(), 2);
        assert_eq!(
            trace.attempt_list(),
            "[no-key] openai/gpt-4o: no API key; [unreachable] openai/gpt-4o-mini (...): \
             cannot connect; [ok] openai/gpt-4o-mini: success"
        );
        assert_eq!(status_text(599), "599");
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
