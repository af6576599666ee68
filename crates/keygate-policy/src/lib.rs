//! Traffic Policy documents: parse YAML/JSON with positions, validate, compile into a [`Policy`],
//! and run it against requests. One module per action under [`actions`].

pub mod access_keys;
pub mod action;
pub mod actions;
pub mod build;
pub mod diagnostic;
pub mod document;
pub mod engine;
pub mod error;
pub mod event_stream;
pub mod exchange;
pub mod internal;
pub mod ip_policies;
pub mod observe;
pub mod policy;

pub use access_keys::{AccessKeyMode, AccessKeys};
pub use action::{Action, ActionError, ActionFuture, ActionKind, Flow, Phase, Termination};
pub use build::{BuildContext, Deps, SessionKey};
pub use diagnostic::{Diagnostic, PolicyError, Severity};
pub use engine::{ConnectionVerdict, Outcome};
pub use error::{ErrorCode, GatewayError};
pub use event_stream::EventMessage;
pub use exchange::{
    AiRecord, BrokenStream, Exchange, RequestBody, RequestLog, ResponseObserver, StreamFailure,
    Usage,
};
pub use internal::{InternalEndpoints, InternalFuture, InternalHops};
pub use ip_policies::IpPolicies;
/// The body type, owned by `keygate-http`; re-exported under its old path.
pub use keygate_http::body;
pub use keygate_http::body::Body;
pub use keygate_http::{HttpClient, SendError};
pub use observe::{ActionStep, NoObserver, Observer};
pub use policy::Policy;
