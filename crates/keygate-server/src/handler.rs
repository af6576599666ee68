//! One request, start to end: policy request phase, upstream or 404, response phase, then the
//! access-log line and metrics once the response body has been sent.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use keygate_ai_gateway::TraceContext;
use keygate_cel::ConnInfo;
use keygate_policy::body::{empty, Body, BoxError};
use keygate_policy::{Exchange, GatewayError, HttpClient, Outcome, Policy, RequestBody};

use crate::access_log::AccessRecord;
use crate::admission::{Cap, Place};
use crate::gateway::Gateway;
use crate::otlp::Traced;
use crate::settle::{self, Settle};
use crate::{client_ip, proxy, request_id};

/// Returned to hyper to make it drop the connection (`close-connection`).
#[derive(Debug, thiserror::Error)]
#[error("connection closed by policy")]
pub struct CloseConnection;

/// Handles one request from a connection described by `conn`; `admitted` is false for a
/// connection over `--max-connections`, whose requests are answered 503.
pub async fn handle(
    gateway: Arc<Gateway>,
    conn: Arc<ConnInfo>,
    scheme: &'static str,
    request: Request<Incoming>,
    admitted: bool,
) -> Result<Response<LoggedBody>, CloseConnection> {
    let arrival = Arrival {
        time: SystemTime::now(),
        at: Instant::now(),
        method: request.method().clone(),
        path: request.uri().path().to_owned(),
    };
    let policy = gateway.policy.load_full();
    let (mut head, body) = request.into_parts();
    let id = request_id::for_request(&head.headers);
    if let Ok(value) = HeaderValue::from_str(&id) {
        head.headers.insert(request_id::HEADER, value);
    }
    let client_ip = client_ip::resolve(
        conn.client_ip,
        &head.headers,
        &gateway.config.trust_forwarded_for,
    );
    let conn = if client_ip == conn.client_ip {
        conn
    } else {
        Arc::new(ConnInfo {
            client_ip,
            ..(*conn).clone()
        })
    };
    let max_body = gateway.config.max_body_bytes;
    let declared_too_large = head
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|len| len > max_body);
    let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
    let mut ex = Exchange::new(
        id,
        conn,
        scheme,
        head,
        RequestBody::Streaming(Limited::new(body, limit).boxed()),
        max_body,
        gateway.deps.secrets.clone(),
    );
    if gateway.otlp.is_some() {
        ex.trace = Some(TraceContext::for_request(&ex.request.headers));
    }
    let place = admitted.then(|| gateway.admission.request()).flatten();
    let refused_by = match (admitted, &place) {
        (false, _) => Some(Cap::Connections),
        (true, None) => Some(Cap::Requests),
        (true, Some(_)) => None,
    };
    let response = if let Some(cap) = refused_by {
        gateway.metrics.record_overload(cap);
        let mut response = cap.error().into_response(ex.api_format);
        cap.finish(&mut response);
        Some(response)
    } else if declared_too_large {
        let too_large = GatewayError::body_too_large(max_body).into_response(ex.api_format);
        policy.on_http_response(&mut ex, too_large).await
    } else {
        let upstream = gateway.config.upstream.as_ref();
        respond(&policy, &gateway.http, upstream, &mut ex).await
    };
    let Some(mut response) = response else {
        return Err(close(&gateway, arrival, ex));
    };
    if let Ok(value) = HeaderValue::from_str(&ex.id) {
        response.headers_mut().insert(request_id::HEADER, value);
    }
    // Appended, never replacing: an upstream's own Set-Cookie stays.
    let mut name = None;
    for (next, value) in std::mem::take(&mut ex.response_headers) {
        name = next.or(name);
        if let Some(name) = &name {
            response.headers_mut().append(name, value);
        }
    }
    let started = arrival.at;
    let record = arrival.record(ex, response.status().as_u16());
    Ok(response.map(|body| LoggedBody {
        body,
        pending: Some(Pending {
            gateway,
            record,
            started,
            _place: place,
        }),
    }))
}

/// Runs `ex` through `policy`: its request phase, then `upstream` (404 without one) unless an
/// action answered, then its response phase. `None`: an action closed the connection. The
/// public listener and internal endpoints (`forward-internal`) both serve requests with it.
pub(crate) async fn respond(
    policy: &Policy,
    http: &HttpClient,
    upstream: Option<&Uri>,
    ex: &mut Exchange,
) -> Option<Response<Body>> {
    let response = match policy.on_http_request(ex).await {
        Outcome::Respond(response) => response,
        Outcome::Close => return None,
        Outcome::Continue => match upstream {
            Some(upstream) => proxy::forward(http, upstream, ex).await,
            None => GatewayError::no_route().into_response(ex.api_format),
        },
    };
    policy.on_http_response(ex, response).await
}

/// What the access log needs from the moment a request arrived (before actions rewrite it).
struct Arrival {
    time: SystemTime,
    at: Instant,
    method: http::Method,
    path: String,
}

impl Arrival {
    fn record(self, ex: Exchange, status: u16) -> AccessRecord {
        AccessRecord {
            time: self.time,
            request_id: ex.id,
            client_ip: ex.conn.client_ip,
            method: self.method,
            path: self.path,
            status,
            duration: self.at.elapsed(),
            log: ex.log,
            trace: ex.trace.map(|context| Traced {
                context,
                arrival: self.at,
            }),
        }
    }
}

/// Logs a request whose connection a policy closed (status 0) and tells hyper to drop it.
fn close(gateway: &Gateway, arrival: Arrival, ex: Exchange) -> CloseConnection {
    settle::finish(gateway, arrival.record(ex, 0));
    CloseConnection
}

struct Pending {
    gateway: Arc<Gateway>,
    record: AccessRecord,
    started: Instant,
    /// The request's place under `--max-requests`, held until its body has been sent.
    _place: Option<Place>,
}

/// The response body; when it is dropped (sent, or the client went away) the request is logged.
pub struct LoggedBody {
    body: Body,
    pending: Option<Pending>,
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some(Pending {
            gateway,
            mut record,
            started,
            ..
        }) = self.pending.take()
        {
            record.duration = started.elapsed();
            let body = std::mem::replace(&mut self.body, empty());
            settle::defer(Settle::new(body, gateway, record));
        }
    }
}
