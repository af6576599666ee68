//! The `ai-gateway` error responses (reference 4.14), as [`GatewayError`]s with Keygate codes.

use http::StatusCode;
use keygate_ai::{RequestError, ResolveError};

use crate::error::GatewayError;

const INVALID: &str = "invalid_request_error";

/// 404: the path is not an AI gateway surface.
pub fn not_a_surface(method: &http::Method, path: &str) -> GatewayError {
    GatewayError::new(
        StatusCode::NOT_FOUND,
        "ERR_KEYGATE_404",
        "not_found_error",
        format!(
            "the ai-gateway action does not serve {method} {path}; it serves POST /v1/chat/completions, /v1/completions, \
             /v1/embeddings, /v1/responses, /v1/messages, /v1/messages/count_tokens and GET /v1/models"
        ),
    )
}

/// 3801 (400): malformed body.
pub fn invalid_body(err: &RequestError) -> GatewayError {
    GatewayError::new(
        StatusCode::BAD_REQUEST,
        "ERR_KEYGATE_3801",
        INVALID,
        format!("invalid request body: {err}"),
    )
}

/// 3802 (400): no key from any source.
pub fn no_api_key(providers: &[String]) -> GatewayError {
    GatewayError::new(
        StatusCode::BAD_REQUEST,
        "ERR_KEYGATE_3802",
        INVALID,
        format!(
            "no API key found for provider(s) {}: configure api_keys or send a provider key",
            providers.join(", ")
        ),
    )
}

/// 3803 (422): a strategy failed to evaluate.
pub fn selection_failed(strategy: &str, detail: &str) -> GatewayError {
    GatewayError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "ERR_KEYGATE_3803",
        INVALID,
        format!("model selection failed: strategy '{strategy}': {detail}"),
    )
}

/// 3804 (422) or 3813 (422): no usable model.
pub fn unresolved(err: &ResolveError) -> GatewayError {
    match err {
        ResolveError::NoMatchingModels { rejected } => {
            let reason = rejected
                .first()
                .map(|r| r.reason.as_str())
                .unwrap_or_default();
            let kind = if reason.starts_with("Provider '")
                && reason.ends_with("gateway configuration")
            {
                "provider_not_allowed"
            } else if reason.starts_with("Model '") && reason.ends_with("gateway configuration") {
                "model_not_allowed"
            } else {
                INVALID
            };
            let message = match rejected.as_slice() {
                [single] if kind != INVALID => single.reason.clone(),
                _ => err.to_string(),
            };
            GatewayError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "ERR_KEYGATE_3804",
                kind,
                message,
            )
        }
        ResolveError::IncompatibleFormat { .. } => GatewayError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ERR_KEYGATE_3813",
            INVALID,
            err.to_string(),
        ),
    }
}

/// 3804 (422): the request names no model and nothing is configured to choose from.
pub fn no_model_requested() -> GatewayError {
    GatewayError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "ERR_KEYGATE_3804",
        INVALID,
        "no matching models: the request names no model and the policy has no model_selection strategy or configured models",
    )
}

/// 3805 (422): every strategy came back empty.
pub fn selection_empty() -> GatewayError {
    GatewayError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "ERR_KEYGATE_3805",
        INVALID,
        "model selection returned no usable models for this request across all strategies",
    )
}

/// 3806 (422): a strategy returned something other than models.
pub fn selection_wrong_type(strategy: &str, detail: &str) -> GatewayError {
    GatewayError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "ERR_KEYGATE_3806",
        INVALID,
        format!("strategy '{strategy}': {detail}"),
    )
}

/// 3800 (502): every attempt failed to connect.
pub fn unreachable(attempts: &str) -> GatewayError {
    GatewayError::new(
        StatusCode::BAD_GATEWAY,
        "ERR_KEYGATE_3800",
        "api_error",
        format!("provider unreachable: {attempts}"),
    )
}

/// 3807 (503): every candidate failed.
pub fn all_failed(attempts: &str) -> GatewayError {
    GatewayError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "ERR_KEYGATE_3807",
        "api_error",
        format!("All providers failed: {attempts}"),
    )
}

/// 3810 (504): `total_timeout` ran out.
pub fn total_timeout(seconds: f64, attempts: &str) -> GatewayError {
    let tried = if attempts.is_empty() {
        String::new()
    } else {
        format!("; attempts: {attempts}")
    };
    GatewayError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "ERR_KEYGATE_3810",
        "timeout_error",
        format!("total timeout of {seconds} s exceeded{tried}"),
    )
}

/// 3811 (413): prompt over `max_input_tokens`.
pub fn input_too_large(estimate: u64, max: u64) -> GatewayError {
    GatewayError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "ERR_KEYGATE_3811",
        "request_too_large",
        format!("input too large: {estimate} tokens (max {max})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_ai::Rejection;

    #[test]
    fn restriction_messages_follow_ngrok() {
        let err = unresolved(&ResolveError::NoMatchingModels {
            rejected: vec![Rejection {
                model: "gpt-4o".into(),
                reason: "Model 'gpt-4o' is not allowed by gateway configuration".into(),
            }],
        });
        assert_eq!(err.kind, "model_not_allowed");
        assert_eq!(
            err.message,
            "Model 'gpt-4o' is not allowed by gateway configuration"
        );
        assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
        let err = unresolved(&ResolveError::NoMatchingModels {
            rejected: vec![Rejection {
                model: "x".into(),
                reason: "unknown model 'x'".into(),
            }],
        });
        assert_eq!((err.code, err.kind), ("ERR_KEYGATE_3804", INVALID));
        assert_eq!(input_too_large(10, 5).status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            total_timeout(1.5, "").message,
            "total timeout of 1.5 s exceeded"
        );
    }
}
