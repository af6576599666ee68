//! A small open-loop load generator (the `keygate-load` binary): sends requests at a fixed rate
//! over a set of keep-alive HTTP/1.1 connections, or as fast as possible, and reports latency
//! percentiles and, for streams, time to the first SSE `data:` chunk.
//!
//! Latency is measured from when a request was *due*, as wrk2 does, whenever the connection was
//! still busy with the previous response at that moment (coordinated omission); when the
//! connection was idle it is measured from the actual send, so timer wake-up jitter is not
//! counted as server latency.

mod pacer;
mod stats;
mod target;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};

pub use stats::{Percentiles, Report};
pub use target::{Target, TargetError};

/// The request every connection sends, over and over.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    /// HTTP method.
    pub method: Method,
    /// Where to send it.
    pub target: Target,
    /// Extra request headers (`host` and `content-length` are added automatically).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Request body (may be empty).
    pub body: Bytes,
}

/// One load run.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// The request to send.
    pub request: RequestSpec,
    /// Requests per second across all connections; `None` sends back to back (maximum rate).
    pub rate: Option<f64>,
    /// Measured period (after the warm-up).
    pub duration: Duration,
    /// Initial period whose requests are sent but not counted.
    pub warmup: Duration,
    /// Number of keep-alive connections.
    pub connections: usize,
    /// Whether to record time to the first SSE `data:` chunk.
    pub stream: bool,
    /// Per-request limit; a request over it counts as an error and its connection is replaced.
    pub timeout: Duration,
}

/// Runs the plan on the current tokio runtime and summarizes the measured period.
pub async fn run(plan: LoadPlan, label: &str) -> Report {
    let plan = Arc::new(plan);
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..plan.connections.max(1) {
        tasks.spawn(worker::run(Arc::clone(&plan), index, start));
    }
    let mut samples = worker::Samples::default();
    while let Some(result) = tasks.join_next().await {
        if let Ok(s) = result {
            samples.merge(s);
        }
    }
    Report::new(label, &plan, samples)
}
