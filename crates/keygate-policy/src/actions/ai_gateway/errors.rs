//! The `ai-gateway` error answers: each picks its [`ErrorCode`] and words the message.

use keygate_ai::{RequestError, ResolveError, Restriction};

use crate::error::{ErrorCode, GatewayError};

/// 404: the path is not an AI gateway surface.
pub fn not_a_surface(method: &http::Method, path: &str) -> GatewayError {
    GatewayError::new(
        ErrorCode::NoRoute,
        format!(
            "the ai-gateway action does not serve {method} {path}; it serves POST /v1/chat/completions, /v1/completions, \
             /v1/embeddings, /v1/responses, /v1/messages, /v1/messages/count_tokens and GET /v1/models"
        ),
    )
}

/// 3814 (426): a WebSocket upgrade. Clients with an HTTP fallback (Codex CLI tries the
/// Responses WebSocket mode first) take a 426 as "use HTTP" at once, where a 404 makes them
/// retry the socket with backoff first.
pub fn websocket_unsupported(path: &str) -> GatewayError {
    GatewayError::new(
        ErrorCode::AiWebSocketUnsupported,
        format!("{path} is served over HTTP only: send the request as a POST"),
    )
}

/// 3801 (400): malformed body.
pub fn invalid_body(err: &RequestError) -> GatewayError {
    GatewayError::bad_request(format!("invalid request body: {err}"))
}

/// 3801 (400): the body is not a valid request of its format, found while translating it for a
/// provider of another format.
pub fn untranslatable(message: &str) -> GatewayError {
    GatewayError::bad_request(format!("invalid request body: {message}"))
}

/// 3802 (400): no key from any source.
pub fn no_api_key(providers: &[String]) -> GatewayError {
    GatewayError::new(
        ErrorCode::AiNoApiKey,
        format!(
            "no API key found for provider(s) {}: configure api_keys or send a provider key",
            providers.join(", ")
        ),
    )
}

/// 27008 (403): the access key's scopes leave no candidate. Names the key by id, never by token.
pub fn access_key_scope(key_id: &str, requested: &[String]) -> GatewayError {
    let models = match requested {
        [] => "any of the selected models".to_owned(),
        names => format!("model {}", names.join(", ")),
    };
    GatewayError::new(
        ErrorCode::AccessKeyScope,
        format!("access key {key_id} is not allowed to use {models}"),
    )
}

/// 3803 (422): a strategy failed to evaluate.
pub fn selection_failed(strategy: &str, detail: &str) -> GatewayError {
    GatewayError::new(
        ErrorCode::AiSelectionFailed,
        format!("model selection failed: strategy '{strategy}': {detail}"),
    )
}

/// 3804 (422) or 3813 (422): no usable model. When the first rejected model was refused only by
/// the `only_allow_configured_*` switches, the type says which (ngrok's `provider_not_allowed`,
/// `model_not_allowed`), and a single rejection is worded as ngrok words it.
pub fn unresolved(err: &ResolveError) -> GatewayError {
    match err {
        ResolveError::NoMatchingModels { rejected } => {
            let code = match rejected.first().and_then(|r| r.restriction()) {
                Some(Restriction::Provider) => ErrorCode::AiProviderNotAllowed,
                Some(Restriction::Model) => ErrorCode::AiModelNotAllowed,
                None => ErrorCode::AiNoMatchingModels,
            };
            let message = match rejected.as_slice() {
                [single] if code != ErrorCode::AiNoMatchingModels => single.reason(),
                _ => err.to_string(),
            };
            GatewayError::new(code, message)
        }
        ResolveError::IncompatibleFormat { .. } => {
            GatewayError::new(ErrorCode::AiIncompatibleFormat, err.to_string())
        }
    }
}

/// 3804 (422): the request names no model and nothing is configured to choose from.
pub fn no_model_requested() -> GatewayError {
    GatewayError::new(
        ErrorCode::AiNoMatchingModels,
        "no matching models: the request names no model and the policy has no model_selection strategy or configured models",
    )
}

/// 3805 (422): every strategy came back empty.
pub fn selection_empty() -> GatewayError {
    GatewayError::new(
        ErrorCode::AiSelectionEmpty,
        "model selection returned no usable models for this request across all strategies",
    )
}

/// 3806 (422): a strategy returned something other than models.
pub fn selection_wrong_type(strategy: &str, detail: &str) -> GatewayError {
    GatewayError::new(
        ErrorCode::AiSelectionWrongType,
        format!("strategy '{strategy}': {detail}"),
    )
}

/// 3800 (502): every attempt failed to connect.
pub fn unreachable(attempts: &str) -> GatewayError {
    GatewayError::new(
        ErrorCode::UpstreamUnreachable,
        format!("provider unreachable: {attempts}"),
    )
}

/// 3807 (503): every candidate failed.
pub fn all_failed(attempts: &str) -> GatewayError {
    GatewayError::new(
        ErrorCode::AllProvidersFailed,
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
        ErrorCode::TotalTimeout,
        format!("total timeout of {seconds} s exceeded{tried}"),
    )
}

/// 3811 (413): prompt over `max_input_tokens`.
pub fn input_too_large(estimate: u64, max: u64) -> GatewayError {
    GatewayError::new(
        ErrorCode::InputTooLarge,
        format!("input too large: {estimate} tokens (max {max})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_ai::{RejectReason, Rejection};

    fn no_match(reasons: Vec<RejectReason>) -> GatewayError {
        unresolved(&ResolveError::NoMatchingModels {
            rejected: vec![Rejection {
                model: "gpt-4o".into(),
                reasons,
            }],
        })
    }

    #[test]
    fn restriction_messages_follow_ngrok() {
        let err = no_match(vec![RejectReason::ModelNotAllowed {
            model: "gpt-4o".into(),
        }]);
        assert_eq!(err.code, ErrorCode::AiModelNotAllowed);
        assert_eq!(err.code.error_type(), "model_not_allowed");
        assert_eq!(
            err.message,
            "Model 'gpt-4o' is not allowed by gateway configuration"
        );
        let provider = |id: &str| RejectReason::ProviderNotAllowed {
            provider: id.into(),
        };
        let err = no_match(vec![provider("openai"), provider("azure")]);
        assert_eq!(err.code, ErrorCode::AiProviderNotAllowed);
        assert_eq!(
            err.message,
            "Provider 'openai' is not allowed by gateway configuration; Provider 'azure' is not \
             allowed by gateway configuration"
        );
        // Both switches: the first reason's names the type.
        let model = RejectReason::ModelNotAllowed {
            model: "gpt-4o".into(),
        };
        let err = no_match(vec![provider("openai"), model]);
        assert_eq!(err.code, ErrorCode::AiProviderNotAllowed);
        // A reason beyond the switches makes it no restriction.
        let err = no_match(vec![
            provider("openai"),
            RejectReason::ModelDisabled {
                model: "gpt-4o".into(),
            },
        ]);
        assert_eq!(err.code, ErrorCode::AiNoMatchingModels);
        let err = no_match(vec![RejectReason::UnknownModel { name: "x".into() }]);
        assert_eq!(
            (err.code.as_str(), err.code.error_type()),
            ("ERR_KEYGATE_3804", "invalid_request_error")
        );
        assert_eq!(
            err.message,
            "no matching models: 'gpt-4o' (unknown model 'x')"
        );
        assert_eq!(input_too_large(10, 5).status().as_u16(), 413);
        assert_eq!(
            total_timeout(1.5, "").message,
            "total timeout of 1.5 s exceeded"
        );
    }
}
