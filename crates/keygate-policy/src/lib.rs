//! Traffic Policy documents: parse YAML/JSON with positions, validate, compile into a [`Policy`],
//! and run it against requests. One module per action under [`actions`].

pub mod action;
pub mod actions;
pub mod body;
pub mod build;
pub mod diagnostic;
pub mod document;
pub mod engine;
pub mod error;
pub mod exchange;
pub mod http_client;
pub mod policy;

pub use action::{Action, ActionError, ActionFuture, ActionKind, Flow, Phase, Termination};
pub use body::Body;
pub use build::{BuildContext, Deps};
pub use diagnostic::{Diagnostic, PolicyError, Severity};
pub use engine::Outcome;
pub use error::{ErrorCode, GatewayError};
pub use exchange::{
    AiRecord, BrokenStream, Exchange, RequestBody, RequestLog, StreamFailure, Usage,
};
pub use http_client::{HttpClient, SendError};
pub use policy::Policy;
