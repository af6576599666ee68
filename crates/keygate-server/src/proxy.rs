//! The plain reverse proxy to `--upstream`: streams bodies both ways, adds forwarding headers.

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, Request, Response, Uri};
use http_body_util::BodyExt;
use keygate_ai_gateway::TRACEPARENT;
use keygate_http::{strip_hop_by_hop, Body, HttpClient};
use keygate_policy::{Exchange, GatewayError, InternalHops};
use tracing::warn;

use crate::client_ip::{self, X_FORWARDED_FOR};

const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Forwards the exchange's (possibly rewritten) request to `upstream` and returns its response.
pub async fn forward(client: &HttpClient, upstream: &Uri, ex: &mut Exchange) -> Response<Body> {
    let Some(uri) = target_uri(upstream, &ex.request.uri) else {
        return GatewayError::bad_request("the request path cannot be forwarded")
            .into_response(ex.api_format);
    };
    let mut headers = ex.request.headers.clone();
    strip_hop_by_hop(&mut headers);
    // An internal endpoint's request got them on its way in (`forward-internal`).
    if InternalHops::of(&ex.request) == 0 {
        add_forwarded(&mut headers, ex);
    }
    if let Some(trace) = &ex.trace {
        // Traced (`--otlp-endpoint`): the upstream's spans hang under the request's.
        headers.insert(TRACEPARENT, trace.traceparent(trace.span_id));
    }
    let mut request = Request::new(ex.take_body());
    *request.method_mut() = ex.request.method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    match client.send(request).await {
        Ok(response) => {
            let (mut head, body) = response.into_parts();
            strip_hop_by_hop(&mut head.headers);
            // The client's connection decides its protocol version, not the upstream's: hyper
            // would otherwise write an HTTP/1.0 upstream's status line to an HTTP/1.1 client.
            head.version = http::Version::default();
            Response::from_parts(head, body.boxed())
        }
        Err(err) if is_body_limit(&err) => {
            GatewayError::body_too_large(ex.max_body_bytes).into_response(ex.api_format)
        }
        Err(err) => {
            let error = GatewayError::upstream_unreachable(&err.with_causes());
            warn!(request_id = %ex.id, error = %error.message, "upstream request failed");
            ex.log.error = Some(error.message.clone());
            error.into_response(ex.api_format)
        }
    }
}

/// Sets `Host` to the original host (the request's `Host`, else its URI's authority) and
/// `X-Forwarded-Host`, `X-Forwarded-Proto` and `X-Forwarded-For` (the client appended) in
/// `headers`, the request's own or a copy of them.
pub(crate) fn add_forwarded(headers: &mut HeaderMap, ex: &Exchange) {
    let original_host = headers.get(header::HOST).cloned().or_else(|| {
        ex.request
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    if let Some(host) = original_host {
        headers.insert(header::HOST, host.clone());
        headers.insert(X_FORWARDED_HOST, host);
    }
    let mut forwarded_for = Vec::with_capacity(64);
    if let Some(existing) = headers.get(X_FORWARDED_FOR) {
        forwarded_for.extend_from_slice(existing.as_bytes());
        forwarded_for.extend_from_slice(b", ");
    }
    client_ip::push_text(&mut forwarded_for, ex.conn.client_ip);
    if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(forwarded_for)) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(ex.scheme));
}

/// `upstream` with the request's path and query appended to its path (`http://h:1/base` +
/// `/v1/x?y` = `http://h:1/base/v1/x?y`); the request's path is reused as is when `upstream` has none.
fn target_uri(upstream: &Uri, request: &Uri) -> Option<Uri> {
    let request_path = request.path_and_query().map_or("/", PathAndQuery::as_str);
    let base_path = upstream.path().trim_end_matches('/');
    let mut parts = upstream.clone().into_parts();
    parts.path_and_query = Some(match (base_path, request.path_and_query()) {
        ("", Some(path)) => path.clone(),
        _ => format!("{base_path}{request_path}").parse().ok()?,
    });
    Uri::from_parts(parts).ok()
}

/// Whether a client error was caused by the request body going over `--max-body-bytes`.
fn is_body_limit(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}
