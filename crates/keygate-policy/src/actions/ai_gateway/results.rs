//! What the action publishes about a request: `actions.ngrok.ai_gateway.*` (ngrok's 2026-01
//! result scheme), from the runtime's trace of attempts and what the pipeline saw before them.

use std::time::Duration;

use http::HeaderMap;
use keygate_ai::{client_credential, redact, Rejection};
use keygate_ai_gateway::{status_text, AttemptEnd, ModelTried, RequestMade};
use serde_json::{json, Map, Value};

use crate::error::GatewayError;

/// The request's trace, built while the action runs: the runtime's attempts and what came
/// before them.
pub struct Trace {
    /// The attempts (`models_tried`); its start is the action's.
    pub call: keygate_ai_gateway::Trace,
    /// What the client asked for (`model`, `models`).
    requested: (String, Vec<String>),
    pub rejected: Vec<Rejection>,
    pub selection: Vec<Value>,
    pub input_estimate: u64,
}

impl Trace {
    /// Starts a trace; client facts are read from the request head only when published.
    pub fn new() -> Trace {
        Trace {
            call: keygate_ai_gateway::Trace::new(),
            requested: (String::new(), Vec::new()),
            rejected: Vec::new(),
            selection: Vec::new(),
            input_estimate: 0,
        }
    }

    /// Records what the client asked for.
    pub fn set_requested(&mut self, model: Option<&str>, models: &[String]) {
        self.requested = (model.unwrap_or_default().to_owned(), models.to_vec());
    }

    /// The `actions.ngrok.ai_gateway` value for the request `head` and how it ended.
    pub fn to_value(&self, head: &http::request::Parts, outcome: Outcome<'_>) -> Value {
        let total = self.call.started.elapsed();
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
            "gateway_latency_ms": millis(total.saturating_sub(self.call.upstream_wait)),
            "model_selection": self.selection,
            "models_tried": self.call.tried.iter().map(model_value).collect::<Vec<_>>(),
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
                if let Some(model) = self.call.tried.get(model_index) {
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
            started: std::time::Instant::now(),
            span_id: None,
        };
        trace.call.tried.push(ModelTried {
            provider: "openai".into(),
            model: "gpt-4o".into(),
            author: "openai".into(),
            requests: vec![
                request(AttemptEnd::Status(429)),
                request(AttemptEnd::Timeout),
            ],
        });
        assert_eq!(
            trace.call.attempt_list(),
            "[429] openai/gpt-4o (sk-proj...ghij): 429 Too Many Requests; [timeout] openai/gpt-4o (sk-proj...ghij): per-request timeout"
        );
        assert_eq!(trace.call.attempts(), 2);
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
}
