//! One request's journey through the policy: the request head (actions may rewrite it), its body,
//! the response head in `on_http_response`, variables, action results and what the access log needs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, LengthLimitError};
use keygate_ai::ApiFormat;
use keygate_cel::{ActionResults, ConnInfo, RequestView, ResponseView, Scope, SecretSource, Vars};

use crate::body::{empty, full, Body};
use crate::error::GatewayError;

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
    /// The response head, set while `on_http_response` runs.
    pub response: Option<http::response::Parts>,
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
    /// Top-level CEL variables besides the standard ones (`access_key`).
    extra: Vec<(&'static str, keygate_cel::Value)>,
}

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
}

/// What `ai-gateway` did for this request.
#[derive(Debug, Clone)]
pub struct AiRecord {
    pub provider: String,
    pub model: String,
    /// Upstream attempts made (1 when the first try succeeded).
    pub attempts: u32,
    /// Time from the start of the first attempt to the first response byte.
    pub time_to_first_token: Option<Duration>,
    /// Token counts, filled in as the (possibly streamed) response passes.
    pub usage: Arc<Usage>,
}

/// Token usage read from a response; updated while a stream passes, `complete` when it ended.
#[derive(Debug, Default)]
pub struct Usage {
    pub input_tokens: AtomicU64,
    pub output_tokens: AtomicU64,
    pub complete: AtomicBool,
    /// Set when the provider's response broke off after its head went to the client.
    pub broken: OnceLock<BrokenStream>,
}

/// A provider response that ended before its end: why, and how far it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenStream {
    pub cause: StreamFailure,
    /// Stream events received before it ended (0 for a body that is not an event stream).
    pub events: u64,
}

/// Why a provider response ended early. The texts go to the access log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamFailure {
    #[error("upstream stream ended early: connection reset")]
    Reset,
    #[error("upstream stream ended early: the connection closed before the end of the stream")]
    Closed,
    #[error("upstream stream ended early: {0}")]
    Read(String),
    #[error("upstream sent nothing for {} ms", .0.as_millis())]
    Idle(Duration),
    /// The body ended as HTTP frames it, but without the surface's final event (`[DONE]`,
    /// `message_stop`, ...): the provider stopped partway.
    #[error("stream ended before its final event")]
    Unfinished,
}

impl Usage {
    /// Records the provider-reported counts.
    pub fn record(&self, input: u64, output: u64) {
        self.input_tokens.store(input, Ordering::Relaxed);
        self.output_tokens.store(output, Ordering::Relaxed);
    }
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
            response: None,
            vars: Vars::default(),
            results: ActionResults::default(),
            secrets,
            api_format,
            log: RequestLog::default(),
            access_key: None,
            extra: Vec::new(),
        }
    }

    /// Sets the top-level CEL variable `name` for the rest of this exchange.
    pub(crate) fn set_extra(&mut self, name: &'static str, value: keygate_cel::Value) {
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
            req: Some(RequestView {
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
    ///
    /// Reads frame by frame (not `Limited::collect`, whose future is not provably `Send` inside an
    /// action future).
    pub async fn buffer_body(&mut self) -> Result<Bytes, GatewayError> {
        let mut body = match std::mem::replace(&mut self.body, RequestBody::Buffered(Bytes::new()))
        {
            RequestBody::Buffered(bytes) => {
                self.body = RequestBody::Buffered(bytes.clone());
                return Ok(bytes);
            }
            RequestBody::Streaming(body) => body,
        };
        let mut buffer = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|err| {
                if err.is::<LengthLimitError>() {
                    GatewayError::body_too_large(self.max_body_bytes)
                } else {
                    GatewayError::bad_request(format!("reading the request body failed: {err}"))
                }
            })?;
            if let Ok(data) = frame.into_data() {
                if (buffer.len() + data.len()) as u64 > self.max_body_bytes {
                    return Err(GatewayError::body_too_large(self.max_body_bytes));
                }
                buffer.extend_from_slice(&data);
            }
        }
        let bytes = buffer.freeze();
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
