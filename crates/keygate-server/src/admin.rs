//! The admin listener: `/healthz`, `/readyz`, `/metrics`. Never on the client listener.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::gateway::Gateway;

/// Serves admin requests until the task is aborted.
pub async fn serve(listener: TcpListener, gateway: Arc<Gateway>) {
    let builder = auto::Builder::new(TokioExecutor::new());
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        let gateway = gateway.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let gateway = gateway.clone();
                async move { Ok::<_, Infallible>(answer(&gateway, &request)) }
            });
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(gateway: &Gateway, request: &Request<Incoming>) -> Response<Full<bytes::Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => (
            StatusCode::OK,
            "application/json",
            "{\"status\":\"ok\"}".to_owned(),
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
            (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                gateway.metrics.render(),
            )
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
