//! The admin listener: `/healthz`, `/readyz`, `/metrics`, `/v1/usage`, the dashboard (`/ui`).
//! Never on the client listener.

mod auth;
mod keys;
mod ui;
mod usage;

pub use auth::AdminToken;
pub use keys::{KeyAdmin, KeyAdminError, ManagedKey, NewKeyForm};

use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Response, StatusCode, Uri};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::gateway::Gateway;
use crate::metrics::Format as MetricsFormat;

/// Serves admin requests until the task is aborted.
pub async fn serve(listener: TcpListener, gateway: Arc<Gateway>) {
    let builder = auto::Builder::new(TokioExecutor::new());
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        let gateway = gateway.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let gateway = gateway.clone();
                async move {
                    // The dashboard, and the admin token's check on the usage API.
                    let request = match ui::route(&gateway, request).await {
                        Ok(answer) => return Ok(answer),
                        Err(request) => request,
                    };
                    let (head, _) = request.into_parts();
                    let accept = head.headers.get(http::header::ACCEPT);
                    let accept = accept.and_then(|value| value.to_str().ok());
                    Ok::<_, Infallible>(answer(&gateway, &head.method, &head.uri, accept).await)
                }
            });
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    gateway: &Gateway,
    method: &Method,
    uri: &Uri,
    accept: Option<&str>,
) -> Response<Full<bytes::Bytes>> {
    let (status, content_type, body) = match (method, uri.path()) {
        (&Method::GET, "/healthz") => (
            StatusCode::OK,
            "application/json",
            "{\"status\":\"ok\"}".to_owned(),
        ),
        // Listening means the store and the policy are loaded (both happen before the
        // listeners open); after SIGTERM the gateway drains and says so.
        (&Method::GET, "/readyz") if gateway.admission.draining() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "application/json",
            "{\"status\":\"draining\"}".to_owned(),
        ),
        (&Method::GET, "/readyz") => (
            StatusCode::OK,
            "application/json",
            "{\"status\":\"ready\"}".to_owned(),
        ),
        (&Method::GET, "/metrics") => {
            let failures = gateway.deps.rate_limiter.failures();
            gateway
                .metrics
                .rate_limit_store_failures
                .set(i64::try_from(failures).unwrap_or(i64::MAX));
            if let Some(ledger) = &gateway.ledger {
                gateway.metrics.set_usage_ledger_dropped(ledger.dropped());
            }
            // OpenMetrics when the scraper prefers it, else the Prometheus text format 0.0.4.
            let format = MetricsFormat::negotiate(accept);
            (
                StatusCode::OK,
                format.content_type(),
                gateway.metrics.render(format),
            )
        }
        (&Method::GET, "/v1/usage") => {
            let (status, body) = usage::report(gateway, uri.query()).await;
            (status, "application/json", body)
        }
        (&Method::GET, "/v1/usage/events") => {
            let (status, body) = usage::events(gateway, uri.query()).await;
            (status, "application/json", body)
        }
        _ => (
            StatusCode::NOT_FOUND,
            "application/json",
            "{\"error\":{\"message\":\"not found\"}}".to_owned(),
        ),
    };
    let mut response = Response::new(Full::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}
