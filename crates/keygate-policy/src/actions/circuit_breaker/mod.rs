//! `circuit-breaker`: refuses requests with 503 while the upstream keeps failing.
//!
//! An error is a response whose status is 5xx when `on_http_response` starts: the upstream's
//! own, or the gateway's 502/504 for an upstream it could not reach. 4xx are successes. Once a
//! window holds `volume_threshold` finished requests and at least `error_threshold` of them
//! failed, the breaker opens for `tripped_duration`; then one probe request goes through:
//! success closes it (with an empty window), failure opens it again. Each action of each
//! loaded policy has its own breaker, so a reload starts closed.

mod breaker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use tracing::{info, warn};

use crate::action::{
    ready, Action, ActionError, ActionFuture, ActionKind, Flow, Phase, Termination,
};
use crate::actions::parse_duration;
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::error::{ErrorCode, GatewayError};
use crate::exchange::Exchange;

use breaker::{Admission, Breaker, Settings, Transition, NUM_BUCKETS};

pub const KIND: ActionKind = ActionKind {
    name: "circuit-breaker",
    result_name: "circuit_breaker",
    phases: &[Phase::OnHttpRequest],
    termination: Termination::Sometimes,
    needs_config: false,
    build,
};

const MAX_VOLUME: i64 = 2_000_000_000;
const MIN_DURATION: Duration = Duration::from_secs(1);
const MAX_DURATION: Duration = Duration::from_secs(120);
const DEFAULT_DURATION: &str = "10s";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    error_threshold: Option<f64>,
    volume_threshold: Option<i64>,
    window_duration: Option<String>,
    tripped_duration: Option<String>,
    num_buckets: Option<i64>,
    enforce: Option<bool>,
}

struct CircuitBreaker {
    state: Arc<State>,
}

/// What the action and the observers of its requests share.
struct State {
    breaker: Breaker,
    origin: Instant,
    /// The action's place in the policy (`on_http_request[0].actions[1]`), for the log.
    label: String,
    enforce: bool,
}

fn build(cx: &BuildContext<'_>) -> Result<Box<dyn Action>, Diagnostic> {
    let config: Config = cx.config()?;
    let error_threshold = config.error_threshold.unwrap_or(0.5);
    if !(0.0..=1.0).contains(&error_threshold) {
        return Err(cx.error(
            "error_threshold",
            format!("error_threshold must be from 0.0 to 1.0, got {error_threshold}"),
        ));
    }
    let volume_threshold = config.volume_threshold.unwrap_or(10);
    if !(1..=MAX_VOLUME).contains(&volume_threshold) {
        return Err(cx.error(
            "volume_threshold",
            format!("volume_threshold must be from 1 to {MAX_VOLUME}, got {volume_threshold}"),
        ));
    }
    if let Some(n) = config.num_buckets.filter(|&n| n != NUM_BUCKETS as i64) {
        return Err(cx.error(
            "num_buckets",
            format!("num_buckets is fixed at {NUM_BUCKETS}, got {n}"),
        ));
    }
    let duration = |field: &str, value: Option<&str>| {
        let value = value.unwrap_or(DEFAULT_DURATION);
        match parse_duration(value) {
            Ok(d) if (MIN_DURATION..=MAX_DURATION).contains(&d) => Ok(d.as_millis() as u64),
            Ok(_) => Err(cx.error(
                field,
                format!("{field} must be from 1s to 2m, got '{value}'"),
            )),
            Err(message) => Err(cx.error(field, message)),
        }
    };
    let window_ms = duration("window_duration", config.window_duration.as_deref())?;
    let tripped_ms = duration("tripped_duration", config.tripped_duration.as_deref())?;
    let enforce = config.enforce.unwrap_or(true);
    Ok(Box::new(CircuitBreaker {
        state: Arc::new(State {
            breaker: Breaker::new(Settings {
                error_threshold,
                volume_threshold: volume_threshold as u64,
                window_ms,
                tripped_ms,
            }),
            origin: Instant::now(),
            label: cx.path.clone(),
            enforce,
        }),
    }))
}

impl Action for CircuitBreaker {
    fn run<'a>(&'a self, ex: &'a mut Exchange) -> ActionFuture<'a> {
        ready(self.admit(ex))
    }
}

impl CircuitBreaker {
    fn admit(&self, ex: &mut Exchange) -> Result<Flow, ActionError> {
        let admission = match self.state.breaker.admit(self.state.now()) {
            Admission::Refused { retry_after_ms } if self.state.enforce => {
                let seconds = retry_after_ms.div_ceil(1_000).max(1);
                return Err(GatewayError::new(
                    ErrorCode::CircuitBreakerOpen,
                    format!(
                        "the upstream is failing and the circuit breaker is open: retry after {seconds} s"
                    ),
                )
                .with_header(http::header::RETRY_AFTER, HeaderValue::from(seconds))
                .into());
            }
            // Not enforcing: the request goes on and counts like any other.
            Admission::Refused { .. } => Admission::Normal,
            admitted => admitted,
        };
        let outcome = PendingOutcome {
            state: self.state.clone(),
            admission,
            reported: false,
        };
        ex.response_observers
            .push(Box::new(move |status| outcome.report(status)));
        Ok(Flow::Continue)
    }
}

impl State {
    fn now(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }
}

/// One admitted request's outcome, still to be learned; a probe whose request never got a
/// response gives its slot back when this is dropped unreported.
struct PendingOutcome {
    state: Arc<State>,
    admission: Admission,
    reported: bool,
}

impl PendingOutcome {
    fn report(mut self, status: StatusCode) {
        self.reported = true;
        let state = &self.state;
        let transition =
            state
                .breaker
                .record(state.now(), self.admission, status.is_server_error());
        let (label, enforce) = (&state.label, state.enforce);
        match transition {
            Some(Transition::Tripped { requests, errors }) => {
                warn!(breaker = %label, requests, errors, enforce, "circuit breaker tripped: the upstream is failing");
            }
            Some(Transition::Retripped) => {
                warn!(breaker = %label, status = status.as_u16(), enforce, "circuit breaker probe failed: open again");
            }
            Some(Transition::Closed) => {
                info!(breaker = %label, enforce, "circuit breaker probe succeeded: closed");
            }
            None => {}
        }
    }
}

impl Drop for PendingOutcome {
    fn drop(&mut self) {
        if !self.reported {
            self.state.breaker.abandon(self.admission);
        }
    }
}

#[cfg(test)]
mod tests;
