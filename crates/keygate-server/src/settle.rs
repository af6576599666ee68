//! What a request still owes once its response is out: dropping the response body (an AI
//! response reads its token usage then), metrics, the usage-ledger event and the access-log
//! line.
//!
//! hyper drops a finished response body *before* it flushes the body's last bytes to the
//! socket, so doing this work in the body's `Drop` would delay every response by it. The body's
//! drop queues it instead, and one task per worker drains the queue when the connection's task
//! has written the response and yielded. A queue and a waker rather than a task per request:
//! spawning a task costs more than queuing (`bench/RESULTS.md`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Poll, Waker};

use keygate_policy::body::{empty, Body};
use keygate_policy::AiRecord;
use keygate_usage::{UsageEvent, UsageSource};
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::access_log::AccessRecord;
use crate::gateway::Gateway;

/// A finished request's remaining work, done when it is dropped: whatever path drops it
/// (drained, or discarded with a stopping runtime) still logs the request.
pub struct Settle {
    body: Body,
    done: Option<(Arc<Gateway>, AccessRecord)>,
}

impl Settle {
    pub fn new(body: Body, gateway: Arc<Gateway>, record: AccessRecord) -> Self {
        Self {
            body,
            done: Some((gateway, record)),
        }
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        drop(std::mem::replace(&mut self.body, empty()));
        if let Some((gateway, record)) = self.done.take() {
            finish(&gateway, record);
        }
    }
}

/// Records metrics, queues the usage event of an AI request and the access-log line.
pub fn finish(gateway: &Gateway, mut record: AccessRecord) {
    // Settled here, on a worker with its runtime, as soon as the usage is final.
    drop(record.log.budget.take());
    let metrics = &gateway.metrics;
    metrics.record_request(record.status, record.duration);
    if let Some(ai) = &record.log.ai {
        metrics.record_ai(ai, record.status, record.duration);
        if let Some(ledger) = &gateway.ledger {
            ledger.record(usage_event(&record, ai));
        }
    }
    if let Some(key) = &record.log.access_key {
        metrics.record_access_key(key, record.log.ai.as_ref());
    }
    // Last before the log line: the spans take the attempt list (the ledger has read it).
    if let Some(traced) = record.trace.take() {
        if let Some(otlp) = &gateway.otlp {
            otlp.record(traced, &mut record);
        }
    }
    gateway.access_log.write(record);
}

/// The ledger's copy of an AI request. The body has been dropped, so the token counts are final.
fn usage_event(record: &AccessRecord, ai: &AiRecord) -> UsageEvent {
    let usage = &ai.usage;
    UsageEvent {
        time: record.time,
        request_id: record.request_id.clone(),
        access_key: record.log.access_key.clone(),
        provider: ai.provider.clone(),
        model: ai.model.clone(),
        status: record.status,
        input_tokens: usage.input_tokens.load(Ordering::Relaxed),
        output_tokens: usage.output_tokens.load(Ordering::Relaxed),
        cached_tokens: usage.cached_input_tokens.load(Ordering::Relaxed),
        reasoning_tokens: usage.reasoning_tokens.load(Ordering::Relaxed),
        usage_source: if usage.estimated.load(Ordering::Relaxed) {
            UsageSource::Estimated
        } else {
            UsageSource::Provider
        },
        cost_micros: cost_micros(ai),
        latency: record.duration,
        time_to_first_token: ai.time_to_first_token,
        attempts: ai.attempts,
        error: match usage.broken.get() {
            Some(broken) => Some(broken.cause.to_string()),
            None => record.log.error.clone(),
        },
        tried: tried(&record.log.attempts),
    }
}

/// The ledger's copy of the attempts: provider, model, the redacted key, how each ended; never a
/// response body.
fn tried(attempts: &[keygate_ai_gateway::ModelTried]) -> Vec<keygate_usage::Attempt> {
    use keygate_ai_gateway::{status_text, AttemptEnd};
    use keygate_usage::AttemptOutcome;
    let millis = |d: std::time::Duration| d.as_micros() as f64 / 1000.0;
    attempts
        .iter()
        .flat_map(|model| {
            model.requests.iter().map(move |made| {
                let (outcome, error) = match &made.end {
                    AttemptEnd::Success => (AttemptOutcome::Success, None),
                    AttemptEnd::Status(code) => (AttemptOutcome::Status, Some(status_text(*code))),
                    AttemptEnd::Timeout => (
                        AttemptOutcome::Timeout,
                        Some("per-request timeout".to_owned()),
                    ),
                    AttemptEnd::Transport(err) => (AttemptOutcome::Unreachable, Some(err.clone())),
                    AttemptEnd::NoKey => (AttemptOutcome::NoKey, Some("no API key".to_owned())),
                };
                keygate_usage::Attempt {
                    provider: model.provider.clone(),
                    model: model.model.clone(),
                    api_key: made.api_key.clone(),
                    outcome,
                    status: made.status_code,
                    error,
                    time_to_first_byte_ms: made.time_to_first_byte.map(millis),
                    duration_ms: millis(made.total),
                }
            })
        })
        .collect()
}

/// What an AI request cost in micro-USD; `None` when it used tokens of a model without a price.
pub(crate) fn cost_micros(ai: &AiRecord) -> Option<u64> {
    let input = ai.usage.input_tokens.load(Ordering::Relaxed);
    let output = ai.usage.output_tokens.load(Ordering::Relaxed);
    match ai.pricing {
        Some(price) => Some(keygate_usage::cost_micros(
            input,
            output,
            price.input,
            price.output,
        )),
        // No tokens cost nothing at any price (a failed call's record carries none).
        None if input == 0 && output == 0 => Some(0),
        None => None,
    }
}

/// The state of this thread's draining task.
enum Drainer {
    /// None runs on this thread.
    Absent,
    /// Waiting for work.
    Idle(Waker),
    /// Woken (or just spawned): it will drain the queue.
    Scheduled,
}

thread_local! {
    static QUEUE: RefCell<VecDeque<Settle>> = const { RefCell::new(VecDeque::new()) };
    static DRAINER: Cell<Drainer> = const { Cell::new(Drainer::Absent) };
}

/// Settles `settle` on this thread once the running task yields. Off a current-thread runtime
/// (whose tasks never move to another thread) it is settled at once. The draining task belongs to
/// the thread that spawned it, so a runtime must be dropped on the thread that ran it, as the
/// workers and `#[tokio::test]` do.
pub fn defer(settle: Settle) {
    match DRAINER.replace(Drainer::Scheduled) {
        Drainer::Scheduled => QUEUE.with_borrow_mut(|queue| queue.push_back(settle)),
        Drainer::Idle(waker) => {
            QUEUE.with_borrow_mut(|queue| queue.push_back(settle));
            waker.wake();
        }
        Drainer::Absent => match Handle::try_current() {
            Ok(runtime) if runtime.runtime_flavor() == RuntimeFlavor::CurrentThread => {
                QUEUE.with_borrow_mut(|queue| queue.push_back(settle));
                runtime.spawn(drain());
            }
            _ => {
                DRAINER.set(Drainer::Absent);
                drop(settle);
            }
        },
    }
}

/// Drops what is queued, in order, each outside the queue's borrow (the queue keeps its
/// allocation).
fn drain_queue() {
    while let Some(settle) = QUEUE.with_borrow_mut(VecDeque::pop_front) {
        drop(settle);
    }
}

/// This thread's draining task. The guard is created before the task first runs, so a task
/// dropped unpolled by a stopping runtime still resets the state and settles the queue.
fn drain() -> impl Future<Output = ()> + Send {
    let stopped = Stopped;
    async move {
        let _stopped = stopped;
        poll_fn(|cx| {
            drain_queue();
            DRAINER.set(Drainer::Idle(cx.waker().clone()));
            Poll::<()>::Pending
        })
        .await;
    }
}

/// Resets the drainer state and settles what is left when the draining task is dropped.
struct Stopped;

impl Drop for Stopped {
    fn drop(&mut self) {
        DRAINER.set(Drainer::Absent);
        drain_queue();
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::Mutex;
    use std::task::Context;

    use bytes::Bytes;
    use http_body::Frame;
    use http_body_util::BodyExt;
    use keygate_policy::body::BoxError;

    use super::*;

    type Dropped = Arc<Mutex<Vec<u32>>>;

    /// An empty body that notes its number in `dropped` when dropped.
    struct Probe(u32, Dropped);

    impl http_body::Body for Probe {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(None)
        }
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            self.1.lock().unwrap().push(self.0);
        }
    }

    fn probe(number: u32, dropped: &Dropped) -> Settle {
        Settle {
            body: Probe(number, dropped.clone()).boxed(),
            done: None,
        }
    }

    fn seen(dropped: &Dropped) -> Vec<u32> {
        dropped.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn settles_in_order_once_the_task_yields() {
        let dropped = Dropped::default();
        for number in 1..=3 {
            defer(probe(number, &dropped));
        }
        assert!(
            seen(&dropped).is_empty(),
            "nothing settles before the task yields"
        );
        tokio::task::yield_now().await;
        assert_eq!(seen(&dropped), [1, 2, 3]);
        // The same draining task serves the next requests.
        defer(probe(4, &dropped));
        assert_eq!(seen(&dropped), [1, 2, 3]);
        tokio::task::yield_now().await;
        assert_eq!(seen(&dropped), [1, 2, 3, 4]);
    }

    #[test]
    fn off_a_current_thread_runtime_it_settles_at_once() {
        let dropped = Dropped::default();
        defer(probe(1, &dropped));
        assert_eq!(seen(&dropped), [1]);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        runtime.block_on(async { defer(probe(2, &dropped)) });
        assert_eq!(seen(&dropped), [1, 2]);
    }

    #[test]
    fn a_stopping_runtime_settles_what_is_queued() {
        let dropped = Dropped::default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // block_on returns before the draining task ever runs.
        runtime.block_on(async { defer(probe(1, &dropped)) });
        assert!(seen(&dropped).is_empty());
        drop(runtime);
        assert_eq!(seen(&dropped), [1]);
        // The thread has no drainer any more: outside a runtime, work settles at once.
        defer(probe(2, &dropped));
        assert_eq!(seen(&dropped), [1, 2]);
    }
}
