//! One request's journey through the policy: the request head (actions may rewrite it), its body,
//! the response head in `on_http_response`, variables, action results and what the access log needs.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, LengthLimitError};
use keygate_ai::ApiFormat;
use keygate_cel::{ActionResults, ConnInfo, RequestView, ResponseView, Scope, SecretSource, Vars};

use crate::action::Phase;
use crate::body::{empty, full, Body, BoxError};
use crate::error::GatewayError;
use crate::event_stream::EventMessage;
/// The call's record types are the AI gateway runtime's; re-exported under their old path.
pub use keygate_ai_gateway::{AiRecord, BrokenStream, StreamFailure, Usage};
use keygate_ai_gateway::{ModelTried, TraceContext};

/// The request body: still streaming from the client, or already read by an action.
pub enum RequestBody {
    Streaming(Body),
    Buffered(Bytes),
}

/// Per-request state shared by the engine, the actions and the server.
pub struct Exchange {
    /// The request id (`x-request-id`, `req.id`).
    pub id: String,
    pub conn: Arc<ConnInfo>,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The request head as it will be forwarded (actions may rewrite it).
    pub request: http::request::Parts,
    pub body: RequestBody,
    /// `--max-body-bytes`.
    pub max_body_bytes: u64,
    /// The phase running now: decides which variables expressions see (`req` is absent in
    /// `on_tcp_connect`).
    pub phase: Phase,
    /// The response head, set while `on_http_response` runs.
    pub response: Option<http::response::Parts>,
    /// The response body while `on_http_response` runs: actions that rewrite it (compression,
    /// find-and-replace) take it and put back a wrapped one.
    pub response_body: Option<Body>,
    /// The event `on_event_stream_message` runs on.
    pub event: Option<EventMessage>,
    /// Headers added to the response the client gets, whoever produced it (a login action's
    /// renewed session cookie).
    pub response_headers: http::HeaderMap,
    /// Told the response's status when `on_http_response` starts (before its rules run), then
    /// dropped; dropped untold when no response is made (the connection was closed).
    pub response_observers: Vec<ResponseObserver>,
    /// `vars.*` of the current phase.
    pub vars: Vars,
    /// `actions.ngrok.*`.
    pub results: ActionResults,
    pub secrets: Arc<dyn SecretSource>,
    /// The client's API format (from the original path): shapes gateway error bodies.
    pub api_format: ApiFormat,
    /// What the access log line reports beyond the request itself.
    pub log: RequestLog,
    /// The access key the request authenticated with (see `access_keys`).
    pub access_key: Option<Arc<keygate_keys::AuthenticatedKey>>,
    /// The request's trace, set by the server when traces are exported (`--otlp-endpoint`).
    pub trace: Option<TraceContext>,
    /// Top-level CEL variables besides the standard ones (`access_key`).
    extra: Vec<(&'static str, keygate_cel::Variable)>,
}

/// Learns the status a request ended with (`circuit-breaker` counts failures with it).
pub type ResponseObserver = Box<dyn FnOnce(http::StatusCode) + Send + Sync>;

/// What a request holds of its access key's budgets: dropping the last holder settles them
/// against the real usage (see the `ai-gateway` budgets).
pub type Settlement = Arc<dyn std::any::Any + Send + Sync>;

/// Access-log facts gathered while the policy runs.
#[derive(Default)]
pub struct RequestLog {
    /// Names (or `#index`) of the rules whose expressions matched, in order.
    pub matched_rules: Vec<Arc<str>>,
    /// The action type that produced the response, if one did.
    pub terminated_by: Option<&'static str>,
    /// `log` action metadata, in execution order.
    pub metadata: Vec<serde_json::Value>,
    /// Set by `ai-gateway`.
    pub ai: Option<AiRecord>,
    /// The upstream failure behind an error the gateway answered (unreachable, TLS refused...).
    pub error: Option<String>,
    /// The id of the access key the request authenticated with.
    pub access_key: Option<String>,
    /// The request's budget reservation; the server drops it once the response has ended.
    pub budget: Option<Settlement>,
    /// The `ai-gateway` attempts (keys redacted), for the usage ledger and, in a traced request
    /// ([`Exchange::trace`]), the trace export.
    pub attempts: Vec<ModelTried>,
}

impl Exchange {
    /// A new exchange for `request`, before any policy ran; the API format follows the path.
    pub fn new(
        id: String,
        conn: Arc<ConnInfo>,
        scheme: &'static str,
        request: http::request::Parts,
        body: RequestBody,
        max_body_bytes: u64,
        secrets: Arc<dyn SecretSource>,
    ) -> Self {
        let api_format = ApiFormat::for_path(request.uri.path());
        Self {
            id,
            conn,
            scheme,
            request,
            body,
            max_body_bytes,
            phase: Phase::OnHttpRequest,
            response: None,
            response_body: None,
            event: None,
            response_headers: http::HeaderMap::new(),
            response_observers: Vec::new(),
            vars: Vars::default(),
            results: ActionResults::default(),
            secrets,
            api_format,
            log: RequestLog::default(),
            access_key: None,
            trace: None,
            extra: Vec::new(),
        }
    }

    /// Sets the top-level CEL variable `name` for the rest of this exchange.
    pub(crate) fn set_extra(&mut self, name: &'static str, value: keygate_cel::Variable) {
        self.extra.retain(|(existing, _)| *existing != name);
        self.extra.push((name, value));
    }

    /// For unit tests: request `req-1` over plain HTTP from 127.0.0.1:40000 to 127.0.0.1:8080,
    /// its body already buffered.
    #[cfg(test)]
    pub(crate) fn for_test(
        request: http::request::Parts,
        body: Bytes,
        max_body_bytes: u64,
        secrets: Arc<dyn SecretSource>,
    ) -> Self {
        let conn = ConnInfo::new(
            "127.0.0.1:40000".parse().expect("literal address"),
            "127.0.0.1:8080".parse().expect("literal address"),
        );
        Self::new(
            "req-1".into(),
            Arc::new(conn),
            "http",
            request,
            RequestBody::Buffered(body),
            max_body_bytes,
            secrets,
        )
    }

    /// The CEL scope over this exchange's current state.
    pub fn scope(&self) -> Scope<'_> {
        Scope {
            conn: &self.conn,
            req: (self.phase != Phase::OnTcpConnect).then_some(RequestView {
                head: &self.request,
                scheme: self.scheme,
                id: &self.id,
            }),
            res: self.response.as_ref().map(|head| ResponseView { head }),
            vars: &self.vars,
            actions: &self.results,
            secrets: &*self.secrets,
            extra: &self.extra,
        }
    }

    /// Reads the whole request body (at most `max_body_bytes`) and keeps it for forwarding.
    pub async fn buffer_body(&mut self) -> Result<Bytes, GatewayError> {
        let mut body = match std::mem::replace(&mut self.body, RequestBody::Buffered(Bytes::new()))
        {
            RequestBody::Buffered(bytes) => {
                self.body = RequestBody::Buffered(bytes.clone());
                return Ok(bytes);
            }
            RequestBody::Streaming(body) => body,
        };
        let bytes = collect_limited(&mut body, self.max_body_bytes)
            .await
            .map_err(|err| match err {
                CollectError::TooLarge => GatewayError::body_too_large(self.max_body_bytes),
                CollectError::Read(err) => {
                    GatewayError::bad_request(format!("reading the request body failed: {err}"))
                }
            })?;
        self.body = RequestBody::Buffered(bytes.clone());
        Ok(bytes)
    }

    /// Takes the body for forwarding, leaving an empty one.
    pub fn take_body(&mut self) -> Body {
        match std::mem::replace(&mut self.body, RequestBody::Buffered(Bytes::new())) {
            RequestBody::Streaming(body) => body,
            RequestBody::Buffered(bytes) if bytes.is_empty() => empty(),
            RequestBody::Buffered(bytes) => full(bytes),
        }
    }
}

/// Why [`collect_limited`] gave up.
pub(crate) enum CollectError {
    /// The body is longer than the limit (or a `Limited` wrapper said so).
    TooLarge,
    /// Reading failed.
    Read(BoxError),
}

/// Reads `body` whole, failing once it passes `limit` bytes.
///
/// Reads frame by frame (not `Limited::collect`, whose future is not provably `Send` inside an
/// action future).
pub(crate) async fn collect_limited(body: &mut Body, limit: u64) -> Result<Bytes, CollectError> {
    let mut buffer = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| {
            if err.is::<LengthLimitError>() {
                CollectError::TooLarge
            } else {
                CollectError::Read(err)
            }
        })?;
        if let Ok(data) = frame.into_data() {
            if (buffer.len() + data.len()) as u64 > limit {
                return Err(CollectError::TooLarge);
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(buffer.freeze())
}
