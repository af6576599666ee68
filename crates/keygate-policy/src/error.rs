//! Errors the gateway itself answers with: each knows its status, code and client-facing body.

use http::{HeaderName, HeaderValue, Response, StatusCode};
use keygate_ai::{error_body, ApiFormat};

use crate::body::{full, Body};

/// A response Keygate produces itself (not a `custom-response`): JSON in the client's API shape.
#[derive(Debug, Clone)]
pub struct GatewayError {
    pub status: StatusCode,
    /// `ERR_KEYGATE_NNNN`, reusing ngrok's number where it has one.
    pub code: &'static str,
    /// The error `type` field (`authentication_error`, `rate_limit_error`, ...).
    pub kind: &'static str,
    /// Safe for clients: never holds a secret or token.
    pub message: String,
    /// Extra response headers (`Retry-After`, `WWW-Authenticate`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl GatewayError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        kind: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            kind,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// 400: the request could not be understood.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "ERR_KEYGATE_3801",
            "invalid_request_error",
            message,
        )
    }

    /// 404: nothing in the policy handled the request and there is no upstream.
    pub fn no_route() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ERR_KEYGATE_404",
            "not_found_error",
            "no route: the traffic policy did not handle this request and no upstream is configured",
        )
    }

    /// 413: the request body is over `--max-body-bytes`.
    pub fn body_too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "ERR_KEYGATE_413",
            "request_too_large",
            format!("request body exceeds the limit of {limit} bytes"),
        )
    }

    /// 500: a rule's expression or an action's interpolation failed at run time.
    pub fn policy_runtime(rule: &str, detail: &str) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_KEYGATE_2253",
            "policy_error",
            format!("traffic policy rule '{rule}' failed: {detail}"),
        )
    }

    /// 502: the upstream could not be reached.
    pub fn upstream_unreachable(detail: &str) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "ERR_KEYGATE_3800",
            "api_error",
            format!("upstream unreachable: {detail}"),
        )
    }

    /// The HTTP response, with a body in `format`'s error shape.
    pub fn into_response(self, format: ApiFormat) -> Response<Body> {
        let body = error_body(format, self.kind, &self.message, self.code);
        let mut response = Response::new(full(body));
        *response.status_mut() = self.status;
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
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for GatewayError {}
