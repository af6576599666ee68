//! Error replies in each provider's shape: OpenAI `{"error":{...}}`, Anthropic
//! `{"type":"error","error":{...}}`.

use http::StatusCode;
use serde_json::json;

use crate::reply::Reply;

/// Which provider's wire format a path speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    OpenAi,
    Anthropic,
}

/// An error reply with the given status and message, shaped for `shape`. A 429 carries
/// `retry-after: 1`, as both providers send one.
pub(crate) fn error_reply(shape: Shape, status: StatusCode, message: &str) -> Reply {
    let body = match shape {
        Shape::OpenAi => {
            let (kind, code) = openai_kind(status);
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        }
        Shape::Anthropic => {
            json!({"type": "error", "error": {"type": anthropic_kind(status), "message": message}})
        }
    };
    let mut reply = Reply::json(&body);
    reply.status = status;
    if status == StatusCode::TOO_MANY_REQUESTS {
        reply = reply.with_header("retry-after", "1");
    }
    reply
}

/// A message for an error status requested through the mock's controls.
pub(crate) fn scripted_message(status: StatusCode) -> String {
    format!(
        "mock error: status {} {} requested by the mock's controls",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
}

fn openai_kind(status: StatusCode) -> (&'static str, Option<&'static str>) {
    match status.as_u16() {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        403 => (
            "invalid_request_error",
            Some("unsupported_country_region_territory"),
        ),
        404 => ("invalid_request_error", Some("model_not_found")),
        429 => ("requests", Some("rate_limit_exceeded")),
        500..=599 => ("server_error", None),
        _ => ("invalid_request_error", None),
    }
}

fn anthropic_kind(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::Payload;

    fn body(reply: &Reply) -> serde_json::Value {
        match &reply.payload {
            Payload::Json(bytes) => serde_json::from_slice(bytes).expect("JSON body"),
            Payload::Sse(_) => panic!("error replies are JSON"),
        }
    }

    #[test]
    fn openai_shape() {
        let r = error_reply(Shape::OpenAi, StatusCode::TOO_MANY_REQUESTS, "slow down");
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        let b = body(&r);
        assert_eq!(b["error"]["message"], "slow down");
        assert_eq!(b["error"]["code"], "rate_limit_exceeded");
        assert!(r
            .headers
            .iter()
            .any(|(n, v)| n == "retry-after" && v == "1"));
    }

    #[test]
    fn anthropic_shape() {
        let r = error_reply(
            Shape::Anthropic,
            StatusCode::from_u16(529).expect("valid"),
            "busy",
        );
        let b = body(&r);
        assert_eq!(b["type"], "error");
        assert_eq!(b["error"]["type"], "overloaded_error");
        assert_eq!(b["error"]["message"], "busy");
        let r = error_reply(Shape::Anthropic, StatusCode::UNAUTHORIZED, "no");
        assert_eq!(body(&r)["error"]["type"], "authentication_error");
    }
}
