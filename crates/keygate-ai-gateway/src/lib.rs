//! The runtime of one LLM call: the attempts over the candidates and their keys, failover, the
//! per-attempt and total timeouts, the metered response stream, the trace of what was tried and
//! the usage record left for the access log.
//!
//! Seams: [`Upstream`] answers one attempt ([`HttpUpstream`] over `keygate-http`,
//! [`MockUpstream`] in process; [`Upstreams`] picks one per candidate); [`KeySource`] gives the
//! keys of a candidate; an [`Allowance`] grants a budgeted call its output as it streams; a
//! [`Call`] carries one request through a [`Runtime`], which is built once per action. A
//! [`HealthTracker`] (process-wide) demotes providers that stop answering.
//!
//! It knows nothing of the server, the policy engine or CEL: the caller selects the candidates,
//! renders its templates into [`Rendered`], maps [`CallError`] to its error answers and publishes
//! the [`Trace`]. The LLM domain itself (catalog, wire formats, the mock's answers) is
//! `keygate-ai`'s, which does no I/O.

mod allowance;
mod call;
mod health;
mod keys;
mod metered;
mod rewritten;
mod trace;
mod trace_context;
mod upstream;
mod usage;

pub use allowance::{Allowance, Exhausted};
pub use call::{strip_provider_headers, Call, CallError, Rendered, Runtime, Served};
pub use health::{Health, HealthTracker};
pub use keys::{Credential, KeySource};
pub use metered::{JsonChunks, MeteredBody, Scan, UsageFill, ALLOWANCE_STEP};
pub use trace::{
    error_body_excerpt, response_headers, status_text, AttemptEnd, ModelTried, RequestMade, Trace,
    MAX_ERROR_BODY,
};
pub use trace_context::{parse_traceparent, SpanId, TraceContext, TraceId, TRACEPARENT};
pub use upstream::{
    BoxFuture, HttpUpstream, MockUpstream, Sent, Transport, Upstream, UpstreamBody,
    UpstreamRequest, Upstreams,
};
pub use usage::{AiRecord, BrokenStream, StreamFailure, Usage};

#[cfg(test)]
mod tests;
