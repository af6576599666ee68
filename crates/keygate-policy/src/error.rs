//! Errors the gateway itself answers with: one table of codes (status, code string, error type)
//! and the [`GatewayError`] that carries one of them with its message.

use http::{HeaderName, HeaderValue, Response, StatusCode};
use keygate_ai::{error_body, ApiFormat};

use crate::body::{full, Body};

/// Declares [`ErrorCode`] and its table from one list, so every variant has exactly one row.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $name:ident => ($status:ident, $code:literal, $kind:literal),)*) => {
        /// Every error Keygate answers with itself. Codes reuse ngrok's numbers where ngrok has
        /// one; `docs/errors.md` lists them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $name,)*
        }

        impl ErrorCode {
            /// Every variant, in table order.
            #[cfg(test)]
            pub(crate) const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];

            /// The row of the table: HTTP status, `ERR_KEYGATE_*` code and error `type`.
            fn spec(self) -> (StatusCode, &'static str, &'static str) {
                match self {
                    $(ErrorCode::$name => (StatusCode::$status, $code, $kind),)*
                }
            }
        }
    };
}

error_codes! {
    /// The request could not be understood: a malformed or unreadable body, a path that cannot
    /// be forwarded, an AI request body that is not what the surface takes.
    BadRequest => (BAD_REQUEST, "ERR_KEYGATE_3801", "invalid_request_error"),
    /// An access key was required and missing, or it is unknown, expired, disabled or deleted.
    AccessKeyInvalid => (UNAUTHORIZED, "ERR_KEYGATE_27007", "authentication_error"),
    /// `ai-gateway`: the request's access key may not use any of the candidate models.
    AccessKeyScope => (FORBIDDEN, "ERR_KEYGATE_27008", "permission_error"),
    /// `ai-gateway`: the request's access key is over its request limit or has spent a token
    /// or spend budget (or its budget store is unreachable and it fails closed).
    AccessKeyBudget => (TOO_MANY_REQUESTS, "ERR_KEYGATE_27009", "rate_limit_error"),
    /// Missing or invalid credentials (`basic-auth`, or a JWT refused for its signature,
    /// algorithm, key, claims or lifetime; `verify-webhook` for Xero, whose intent-to-receive
    /// check wants a 401).
    Unauthorized => (UNAUTHORIZED, "ERR_KEYGATE_3401", "authentication_error"),
    /// `jwt-validation`: the configured body field or query parameter holding the token is absent.
    JwtTokenMissing => (UNAUTHORIZED, "ERR_KEYGATE_3406", "authentication_error"),
    /// `jwt-validation`: the configured header holding the token is absent.
    JwtHeaderMissing => (UNAUTHORIZED, "ERR_KEYGATE_3408", "authentication_error"),
    /// `jwt-validation`: the body that should carry the token cannot be parsed.
    JwtBodyUnreadable => (UNAUTHORIZED, "ERR_KEYGATE_3411", "authentication_error"),
    /// `jwt-validation`: the token lacks the configured prefix (`Bearer `).
    JwtPrefixMissing => (UNAUTHORIZED, "ERR_KEYGATE_3413", "authentication_error"),
    /// `jwt-validation`: the body is neither JSON nor form-urlencoded.
    JwtBodyContentType => (UNAUTHORIZED, "ERR_KEYGATE_3414", "authentication_error"),
    /// `jwt-validation`: a token in the body, on a method other than POST, PUT or PATCH.
    JwtBodyMethod => (UNAUTHORIZED, "ERR_KEYGATE_3415", "authentication_error"),
    /// `jwt-validation`: the token is not a well-formed JWT.
    JwtMalformed => (UNAUTHORIZED, "ERR_KEYGATE_3416", "authentication_error"),
    /// `jwt-validation`: the JWKS could not be fetched, so no signature can be checked.
    JwtKeysUnavailable => (UNAUTHORIZED, "ERR_KEYGATE_3422", "authentication_error"),
    /// `verify-webhook`: the request's signature is missing, wrong or outside its replay window.
    WebhookInvalid => (FORBIDDEN, "ERR_KEYGATE_3204", "permission_error"),
    /// `oauth` / `openid-connect`: the login could not complete (the provider or the user refused,
    /// the code exchange or the ID token was refused, the login state is missing or altered).
    LoginFailed => (UNAUTHORIZED, "ERR_KEYGATE_3320", "authentication_error"),
    /// `oauth` / `openid-connect`: the identity provider could not be reached or answered
    /// nonsense (discovery, token endpoint, keys, userinfo).
    IdentityProviderUnavailable => (BAD_GATEWAY, "ERR_KEYGATE_3321", "api_error"),
    /// `restrict-ips` refused the client address.
    Forbidden => (FORBIDDEN, "ERR_KEYGATE_3205", "permission_error"),
    /// A `circuit-breaker` is open: the request was refused without reaching the upstream.
    CircuitBreakerOpen => (SERVICE_UNAVAILABLE, "ERR_KEYGATE_3202", "api_error"),
    /// `forward-internal`: the URL names no internal endpoint this gateway serves.
    InternalEndpointMissing => (NOT_FOUND, "ERR_KEYGATE_3200", "not_found_error"),
    /// `forward-internal`: the request has already made the most internal hops (a loop).
    InternalLoop => (LOOP_DETECTED, "ERR_KEYGATE_3501", "api_error"),
    /// Nothing handled the request: no upstream, or a path that is not an AI surface.
    NoRoute => (NOT_FOUND, "ERR_KEYGATE_404", "not_found_error"),
    /// The request body is over `--max-body-bytes`.
    BodyTooLarge => (PAYLOAD_TOO_LARGE, "ERR_KEYGATE_413", "request_too_large"),
    /// A `rate-limit` action's limit is exceeded.
    RateLimited => (TOO_MANY_REQUESTS, "ERR_KEYGATE_429", "rate_limit_error"),
    /// A rule's expression or an action's interpolation failed at run time.
    PolicyRuntime => (INTERNAL_SERVER_ERROR, "ERR_KEYGATE_2253", "policy_error"),
    /// `response-body-find-replace`: the response body is over the rewrite limit
    /// (`--max-body-bytes`) or could not be read.
    ResponseBodyUnreadable => (BAD_GATEWAY, "ERR_KEYGATE_3903", "api_error"),
    /// The gateway is at `--max-connections` or `--max-requests`: the request was not run.
    Overloaded => (SERVICE_UNAVAILABLE, "ERR_KEYGATE_3808", "overloaded_error"),
    /// The upstream (or, for `ai-gateway`, every provider attempt) could not be reached.
    UpstreamUnreachable => (BAD_GATEWAY, "ERR_KEYGATE_3800", "api_error"),
    /// `ai-gateway`: no provider key from the policy or the client for any candidate.
    AiNoApiKey => (BAD_REQUEST, "ERR_KEYGATE_3802", "invalid_request_error"),
    /// `ai-gateway`: a model selection strategy failed to evaluate.
    AiSelectionFailed => (UNPROCESSABLE_ENTITY, "ERR_KEYGATE_3803", "invalid_request_error"),
    /// `ai-gateway`: no requested model is usable (unknown, disabled), or none was requested
    /// and there is nothing to choose from.
    AiNoMatchingModels => (UNPROCESSABLE_ENTITY, "ERR_KEYGATE_3804", "invalid_request_error"),
    /// `ai-gateway`: the requested model's provider is outside `only_allow_configured_providers`.
    AiProviderNotAllowed => (UNPROCESSABLE_ENTITY, "ERR_KEYGATE_3804", "provider_not_allowed"),
    /// `ai-gateway`: the requested model is outside `only_allow_configured_models`.
    AiModelNotAllowed => (UNPROCESSABLE_ENTITY, "ERR_KEYGATE_3804", "model_not_allowed"),
    /// `ai-gateway`: every strategy came back empty after filtering.
    AiSelectionEmpty => (UNPROCESSABLE_ENTITY, "ERR_KEYGATE_3805", "invalid_request_error"),
    /// `ai-gateway`: a strategy returned something other than models.
    AiSelectionWrongType => (UNPROCESSABLE_ENTITY, "ERR_KEYGATE_3806", "invalid_request_error"),
    /// `ai-gateway`: every attempt failed.
    AllProvidersFailed => (SERVICE_UNAVAILABLE, "ERR_KEYGATE_3807", "api_error"),
    /// `ai-gateway`: `total_timeout` ran out before a provider answered.
    TotalTimeout => (GATEWAY_TIMEOUT, "ERR_KEYGATE_3810", "timeout_error"),
    /// `ai-gateway`: the prompt's estimate is over `max_input_tokens`.
    InputTooLarge => (PAYLOAD_TOO_LARGE, "ERR_KEYGATE_3811", "request_too_large"),
    /// `ai-gateway`: no candidate serves the path's API format or surface.
    AiIncompatibleFormat => (UNPROCESSABLE_ENTITY, "ERR_KEYGATE_3813", "invalid_request_error"),
    /// `ai-gateway`: a WebSocket upgrade on an AI path (the Responses WebSocket mode); the
    /// client is told at once to use HTTP instead.
    AiWebSocketUnsupported => (UPGRADE_REQUIRED, "ERR_KEYGATE_3814", "invalid_request_error"),
    /// `http-request` with `on_error: halt`: the side request got no answer (connection refused,
    /// TLS failure, a URL that renders to no valid target).
    SideRequestFailed => (BAD_GATEWAY, "ERR_KEYGATE_3600", "api_error"),
    /// `http-request` with `on_error: halt`: the answer's body is over 256 KiB.
    SideRequestTooLarge => (BAD_GATEWAY, "ERR_KEYGATE_3601", "api_error"),
    /// `http-request` with `on_error: halt`: `timeout` ran out (attempts and redirects included).
    SideRequestTimeout => (GATEWAY_TIMEOUT, "ERR_KEYGATE_3602", "timeout_error"),
    /// `http-request` with `on_error: halt`: more redirects than `max_redirects`.
    SideRequestRedirects => (BAD_GATEWAY, "ERR_KEYGATE_3214", "api_error"),
}

impl ErrorCode {
    /// The HTTP status of the answer.
    pub fn status(self) -> StatusCode {
        self.spec().0
    }

    /// `ERR_KEYGATE_NNNN`.
    pub fn as_str(self) -> &'static str {
        self.spec().1
    }

    /// The error `type` field (`authentication_error`, `rate_limit_error`, ...).
    pub fn error_type(self) -> &'static str {
        self.spec().2
    }
}

/// A response Keygate produces itself (not a `custom-response`): JSON in the client's API shape.
#[derive(Debug, Clone)]
pub struct GatewayError {
    pub code: ErrorCode,
    /// Safe for clients: never holds a secret or token.
    pub message: String,
    /// Extra response headers (`Retry-After`, `WWW-Authenticate`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl GatewayError {
    /// An answer with `code`'s status and type, worded `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// 400: the request could not be understood.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// 404: nothing in the policy handled the request and there is no upstream.
    pub fn no_route() -> Self {
        Self::new(
            ErrorCode::NoRoute,
            "no route: the traffic policy did not handle this request and no upstream is configured",
        )
    }

    /// 413: the request body is over `--max-body-bytes`.
    pub fn body_too_large(limit: u64) -> Self {
        Self::new(
            ErrorCode::BodyTooLarge,
            format!("request body exceeds the limit of {limit} bytes"),
        )
    }

    /// 500: a rule's expression or an action's interpolation failed at run time.
    pub fn policy_runtime(rule: &str, detail: &str) -> Self {
        Self::new(
            ErrorCode::PolicyRuntime,
            format!("traffic policy rule '{rule}' failed: {detail}"),
        )
    }

    /// 502: the upstream could not be reached.
    pub fn upstream_unreachable(detail: &str) -> Self {
        Self::new(
            ErrorCode::UpstreamUnreachable,
            format!("upstream unreachable: {detail}"),
        )
    }

    /// The HTTP response, with a body in `format`'s error shape.
    pub fn into_response(self, format: ApiFormat) -> Response<Body> {
        let body = error_body(
            format,
            self.code.error_type(),
            &self.message,
            self.code.as_str(),
        );
        let mut response = Response::new(full(body));
        *response.status_mut() = self.code.status();
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        response
    }
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.code.status().as_u16(),
            self.code.as_str(),
            self.message
        )
    }
}

impl std::error::Error for GatewayError {}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn every_code_is_well_formed_and_unique_but_for_the_3804_family() {
        let mut by_code: HashMap<&str, Vec<ErrorCode>> = HashMap::new();
        for &code in ErrorCode::ALL {
            let text = code.as_str();
            let digits = text.strip_prefix("ERR_KEYGATE_").unwrap_or_default();
            assert!(
                !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
                "{code:?}: {text} is not ERR_KEYGATE_<digits>"
            );
            assert!(
                code.status().is_client_error() || code.status().is_server_error(),
                "{code:?}"
            );
            by_code.entry(text).or_default().push(code);
        }
        for (text, codes) in by_code {
            if text == "ERR_KEYGATE_3804" {
                // ngrok's one "no matching models" code, told apart by its error type.
                assert_eq!(
                    codes,
                    [
                        ErrorCode::AiNoMatchingModels,
                        ErrorCode::AiProviderNotAllowed,
                        ErrorCode::AiModelNotAllowed
                    ]
                );
                let mut types: Vec<&str> = codes.iter().map(|c| c.error_type()).collect();
                types.dedup();
                assert_eq!(types.len(), codes.len(), "{types:?}");
            } else {
                assert_eq!(codes.len(), 1, "{text} is used by {codes:?}");
            }
        }
    }

    #[test]
    fn statuses_follow_the_documented_classes() {
        use ErrorCode::*;
        let expected = [
            (BadRequest, 400),
            (Unauthorized, 401),
            (Forbidden, 403),
            (NoRoute, 404),
            (BodyTooLarge, 413),
            (RateLimited, 429),
            (PolicyRuntime, 500),
            (UpstreamUnreachable, 502),
            (AllProvidersFailed, 503),
            (TotalTimeout, 504),
        ];
        for (code, status) in expected {
            assert_eq!(code.status().as_u16(), status, "{code:?}");
        }
        // Credential failures, and only they, are 401 `authentication_error`.
        for &code in ErrorCode::ALL {
            let status = code.status().as_u16();
            assert_eq!(
                status == 401,
                code.error_type() == "authentication_error",
                "{code:?}"
            );
        }
    }

    #[test]
    fn the_response_carries_status_code_and_type() {
        let response = GatewayError::new(ErrorCode::RateLimited, "slow down")
            .with_header(http::header::RETRY_AFTER, HeaderValue::from(3))
            .into_response(ApiFormat::OpenAi);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "3");
        assert_eq!(
            GatewayError::no_route().to_string(),
            "404 ERR_KEYGATE_404: no route: the traffic policy did not handle this request and no \
             upstream is configured"
        );
    }
}
