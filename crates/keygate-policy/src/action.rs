//! The `Action` trait, what running one yields, and the registry of action types by name.

use std::future::Future;
use std::pin::Pin;

use http::Response;
use keygate_cel::EvalError;

use crate::access_keys::AccessKeyMode;
use crate::body::Body;
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::error::GatewayError;
use crate::exchange::Exchange;

/// What an action decided.
pub enum Flow {
    /// Go on with the next action.
    Continue,
    /// Answer with this response; the phase ends.
    Respond(Response<Body>),
    /// Drop the client connection; the phase ends.
    Close,
}

/// Why an action failed at run time.
#[derive(Debug)]
pub enum ActionError {
    /// An expression or interpolation failed: the engine answers 500 naming the rule.
    Eval(EvalError),
    /// The action produced a gateway error response (in the client's API format).
    Gateway(GatewayError),
}

impl From<EvalError> for ActionError {
    fn from(err: EvalError) -> Self {
        ActionError::Eval(err)
    }
}

impl From<GatewayError> for ActionError {
    fn from(err: GatewayError) -> Self {
        ActionError::Gateway(err)
    }
}

/// The future an action returns.
pub type ActionFuture<'a> = Pin<Box<dyn Future<Output = Result<Flow, ActionError>> + Send + 'a>>;

/// A compiled action, built once per policy load.
pub trait Action: Send + Sync {
    /// Runs the action against one exchange. Publish result variables with
    /// `ex.results.set(KIND.result_name, ...)`.
    fn run<'a>(&'a self, ex: &'a mut Exchange) -> ActionFuture<'a>;

    /// Whether this action asks for access keys to be checked before the first rule.
    fn access_keys(&self) -> Option<AccessKeyMode> {
        None
    }
}

/// Wraps a synchronous outcome as an [`ActionFuture`].
pub fn ready<'a>(outcome: Result<Flow, ActionError>) -> ActionFuture<'a> {
    Box::pin(std::future::ready(outcome))
}

/// A policy phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Once per client connection, before TLS and HTTP: only `conn.*` is known.
    OnTcpConnect,
    OnHttpRequest,
    OnHttpResponse,
    /// Once per Server-Sent Event of a streamed response.
    OnEventStreamMessage,
}

impl Phase {
    /// The phase's key in a policy document.
    pub fn key(self) -> &'static str {
        match self {
            Phase::OnTcpConnect => "on_tcp_connect",
            Phase::OnHttpRequest => "on_http_request",
            Phase::OnHttpResponse => "on_http_response",
            Phase::OnEventStreamMessage => "on_event_stream_message",
        }
    }
}

/// Whether an action ends its phase (used to flag unreachable actions at load).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// Never ends the phase.
    Never,
    /// Ends it depending on the request (rate-limit, auth, redirect).
    Sometimes,
    /// Always ends it (custom-response, deny, close-connection).
    Always,
}

/// An action type: its name, where it may run, and how to build it from config.
pub struct ActionKind {
    /// The `type` in a policy (`rate-limit`).
    pub name: &'static str,
    /// The `actions.ngrok.<result_name>` namespace (`rate_limit`).
    pub result_name: &'static str,
    pub phases: &'static [Phase],
    pub termination: Termination,
    /// Whether the action requires a `config` block.
    pub needs_config: bool,
    pub build: fn(&BuildContext<'_>) -> Result<Box<dyn Action>, Diagnostic>,
}
