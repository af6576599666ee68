//! An access key's limits at the `ai-gateway`: its requests per window (the shared rate
//! limiter), and its token and spend budgets, reserved before the call and settled when the
//! response ends.
//!
//! A reservation charges every budget counter of the key at once (one atomic store operation):
//! the input estimate plus as many output tokens as fit, up to what the request may produce
//! (its `max_tokens`, else the models' maximum; a stream takes a first step and asks for more
//! as it goes, see [`Allowance`]). Spend is priced at the dearest candidate, so failover never costs more than
//! was reserved. When the response ends the counters are set to the real usage at the answering
//! model's price: the unused part is refunded, a part the estimate missed is added.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{Datelike, TimeZone, Utc};
use http::HeaderValue;
use keygate_ai::{Candidate, ClientRequest, Pricing};
use keygate_ai_gateway::{Allowance, BoxFuture, Exhausted, ALLOWANCE_STEP};
use keygate_keys::{format_usd, AuthenticatedKey, KeyLimits, Rate, StoreFailure};
use keygate_ratelimit::{
    Ask, BudgetFailure, BudgetStore, Counter, Draw, Grant, Limit, RateLimiter,
};

use crate::error::{ErrorCode, GatewayError};
use crate::exchange::Usage;

/// Output tokens reserved for a non-streamed answer when neither the request nor the catalog
/// bounds it; the provider is then asked for at most what was granted.
pub const DEFAULT_OUTPUT_RESERVE: u64 = 4096;

/// Spend counters count nano-USD, so prices under a micro-USD per token ($0.15 per million
/// tokens is 150 nano-USD per token) stay exact integers.
const NANOS_PER_MICRO: u64 = 1000;

/// The rate limiter bucket name of access keys' request limits.
const REQUESTS_LIMITER: &str = "access-key";

const DAY_MS: u64 = 86_400_000;

/// The budget stores a policy's `ai-gateway` uses.
pub struct KeyBudgets {
    pub store: Arc<dyn BudgetStore>,
    pub limiter: Arc<dyn RateLimiter>,
}

/// What one request asks of its key's budgets.
pub struct Demand<'a> {
    pub key: &'a AuthenticatedKey,
    pub request: &'a ClientRequest,
    pub candidates: &'a [Candidate],
    pub input_estimate: u64,
    /// The action's `max_output_tokens`.
    pub output_cap: Option<u64>,
}

impl KeyBudgets {
    /// Counts the request against the key's request limit, then reserves its token and spend
    /// budgets (`None` when the key has none).
    pub async fn admit(
        &self,
        demand: Demand<'_>,
    ) -> Result<Option<Arc<Reservation>>, GatewayError> {
        let key = demand.key;
        let limits = key.limits();
        if let Some(rate) = limits.requests {
            let limit = Limit {
                capacity: rate.count,
                window: rate.window,
            };
            let decision = self
                .limiter
                .check(REQUESTS_LIMITER, key.id().as_bytes(), limit)
                .await;
            if decision.limited {
                return Err(refused(
                    format!("access key {} is over its request limit ({rate})", key.id()),
                    decision.retry_after,
                ));
            }
        }
        if !limits.has_budget() {
            return Ok(None);
        }
        let now_ms = unix_ms(SystemTime::now());
        let (counters, budgets) = counters(key.id(), limits, now_ms);
        let (input_price, output_price) = dearest(demand.candidates);
        let draws: Vec<Draw> = budgets
            .iter()
            .map(|budget| match budget {
                Budget::Tokens(_) => Draw {
                    base: demand.input_estimate,
                    per_unit: 1,
                },
                Budget::DailySpend(_) | Budget::MonthlySpend(_) => Draw {
                    base: demand.input_estimate.saturating_mul(input_price),
                    per_unit: output_price,
                },
            })
            .collect();
        // The most output the call can produce: what the request (or the action) allows, else
        // the largest maximum of the candidate models when the catalog knows every one.
        let bound = demand
            .request
            .max_output_tokens
            .into_iter()
            .chain(demand.output_cap)
            .min()
            .or_else(|| largest_model_output(demand.candidates));
        let stream = demand.request.stream;
        let max_units = if stream {
            bound.unwrap_or(u64::MAX).min(ALLOWANCE_STEP)
        } else {
            bound.unwrap_or(DEFAULT_OUTPUT_RESERVE)
        };
        let on_failure = match limits.on_store_failure {
            StoreFailure::Local => BudgetFailure::Local,
            StoreFailure::Closed => BudgetFailure::Closed,
        };
        let ask = Ask {
            counters: &counters,
            draws: &draws,
            min_units: 1,
            max_units: max_units.max(1),
        };
        match self.store.reserve(ask, on_failure).await {
            Grant::Granted { units, local } => {
                let charged = draws.iter().map(|d| d.base + units * d.per_unit).collect();
                // A top-up draws output tokens only.
                let top_up = draws
                    .iter()
                    .map(|d| Draw {
                        base: 0,
                        per_unit: d.per_unit,
                    })
                    .collect();
                Ok(Some(Arc::new(Reservation {
                    store: self.store.clone(),
                    key_id: key.id().into(),
                    counters: counters.into(),
                    budgets: budgets.into(),
                    top_up,
                    local,
                    on_failure,
                    first_grant: units,
                    // A whole answer that could outgrow its grant is capped at it.
                    output_cap: (!stream && bound.is_none_or(|bound| units < bound))
                        .then_some(units),
                    charged: Arc::new(Mutex::new(charged)),
                    answer: OnceLock::new(),
                    runtime: tokio::runtime::Handle::current(),
                })))
            }
            Grant::Exhausted { counter } => {
                let wait =
                    Duration::from_millis(counters[counter].expires_at_ms.saturating_sub(now_ms));
                Err(refused(budgets[counter].exhausted_message(key.id()), wait))
            }
            Grant::Unavailable => Err(refused(unavailable(key.id()), Duration::from_secs(1))),
        }
    }
}

/// The budgets one request holds: settled when the last holder drops it (the action's log
/// entry and, for a stream, the metered body).
pub struct Reservation {
    store: Arc<dyn BudgetStore>,
    key_id: Arc<str>,
    /// The store's counters, and the budget each one enforces (same order). Shared with the
    /// futures of top-ups.
    counters: Arc<[Counter]>,
    budgets: Arc<[Budget]>,
    /// What a top-up asks of each counter per output token.
    top_up: Arc<[Draw]>,
    /// Charged to the in-process fallback: settled there too.
    local: bool,
    on_failure: BudgetFailure,
    /// Output tokens granted by the reservation itself.
    first_grant: u64,
    /// What the provider must be asked for at most: a whole answer's grant, when the answer
    /// could be longer.
    output_cap: Option<u64>,
    /// What each counter was charged so far, top-ups included (shared with their futures).
    charged: Arc<Mutex<Vec<u64>>>,
    /// The usage of the answer and its model's price, once a provider answered.
    answer: OnceLock<(Arc<Usage>, Option<Pricing>)>,
    /// Settling needs a runtime, and the last holder may drop it on a thread without one.
    runtime: tokio::runtime::Handle,
}

impl Reservation {
    /// The output-token cap the provider must be given, if any.
    pub fn output_cap(&self) -> Option<u64> {
        self.output_cap
    }

    /// Settles against `usage` (filled in as the response passes) at `pricing`.
    pub fn answered_with(&self, usage: Arc<Usage>, pricing: Option<Pricing>) {
        let _ = self.answer.set((usage, pricing));
    }

    /// What each counter should hold for this request: its real usage (nothing when no
    /// provider answered).
    fn actual(&self) -> Vec<u64> {
        let Some((usage, pricing)) = self.answer.get() else {
            return vec![0; self.counters.len()];
        };
        let input = usage.input_tokens.load(Ordering::Relaxed);
        let output = usage.output_tokens.load(Ordering::Relaxed);
        let (input_price, output_price) =
            pricing.map_or((0, 0), |p| (nanos(p.input), nanos(p.output)));
        self.budgets
            .iter()
            .map(|budget| match budget {
                Budget::Tokens(_) => input + output,
                Budget::DailySpend(_) | Budget::MonthlySpend(_) => input
                    .saturating_mul(input_price)
                    .saturating_add(output.saturating_mul(output_price)),
            })
            .collect()
    }
}

impl Allowance for Reservation {
    fn granted(&self) -> u64 {
        self.first_grant
    }

    fn extend(&self, more: u64) -> BoxFuture<'static, Result<u64, Exhausted>> {
        let store = self.store.clone();
        let (counters, budgets, top_up) = (
            self.counters.clone(),
            self.budgets.clone(),
            self.top_up.clone(),
        );
        let (key_id, charged, on_failure) =
            (self.key_id.clone(), self.charged.clone(), self.on_failure);
        Box::pin(async move {
            let ask = Ask {
                counters: &counters,
                draws: &top_up,
                min_units: 1,
                max_units: more.max(1),
            };
            let message = match store.reserve(ask, on_failure).await {
                Grant::Granted { units, .. } => {
                    let mut charged = charged.lock().unwrap_or_else(|p| p.into_inner());
                    for (total, draw) in charged.iter_mut().zip(top_up.iter()) {
                        *total += units * draw.per_unit;
                    }
                    return Ok(units);
                }
                Grant::Exhausted { counter } => budgets[counter].exhausted_message(&key_id),
                Grant::Unavailable => unavailable(&key_id),
            };
            Err(Exhausted {
                kind: ErrorCode::AccessKeyBudget.error_type(),
                code: ErrorCode::AccessKeyBudget.as_str(),
                message,
            })
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let actual = self.actual();
        let charged = self.charged.lock().unwrap_or_else(|p| p.into_inner());
        let deltas: Vec<i64> = actual
            .iter()
            .zip(charged.iter())
            .map(|(&actual, &charged)| clamp_i64(actual) - clamp_i64(charged))
            .collect();
        if deltas.iter().all(|&d| d == 0) {
            return;
        }
        let (store, counters, local) = (self.store.clone(), self.counters.clone(), self.local);
        self.runtime.spawn(async move {
            store.settle(&counters, &deltas, local).await;
        });
    }
}

/// Which of a key's limits a budget counter enforces, as the client is told about it
/// (formatted only when a request is refused).
#[derive(Debug, Clone, Copy)]
enum Budget {
    /// Input plus output tokens per window.
    Tokens(Rate),
    /// Nano-USD per UTC day (the limit in micro-USD).
    DailySpend(u64),
    /// Nano-USD per UTC month (the limit in micro-USD).
    MonthlySpend(u64),
}

impl Budget {
    fn exhausted_message(self, key_id: &str) -> String {
        let limit = match self {
            Budget::Tokens(rate) => format!("token budget ({rate})"),
            Budget::DailySpend(micros) => format!("daily spend limit (${})", format_usd(micros)),
            Budget::MonthlySpend(micros) => {
                format!("monthly spend limit (${})", format_usd(micros))
            }
        };
        format!("access key {key_id} has reached its {limit}")
    }
}

/// The key's budget counters for the windows around `now_ms` and the budget each enforces:
/// tokens in a window aligned to the Unix epoch (a `/day` window is a UTC day), spend per UTC
/// day and UTC month.
fn counters(key_id: &str, limits: &KeyLimits, now_ms: u64) -> (Vec<Counter>, Vec<Budget>) {
    let mut out = (Vec::with_capacity(3), Vec::with_capacity(3));
    let mut push = |counter, budget| {
        out.0.push(counter);
        out.1.push(budget);
    };
    if let Some(rate) = limits.tokens {
        let window = (rate.window.as_millis() as u64).max(1);
        let index = now_ms / window;
        let counter = Counter {
            id: counter_id(key_id, "tokens", window, index),
            limit: rate.count,
            expires_at_ms: (index + 1) * window,
        };
        push(counter, Budget::Tokens(rate));
    }
    if let Some(micros) = limits.daily_spend_micros {
        let day = now_ms / DAY_MS;
        let counter = Counter {
            id: counter_id(key_id, "spend:day", DAY_MS, day),
            limit: micros.saturating_mul(NANOS_PER_MICRO),
            expires_at_ms: (day + 1) * DAY_MS,
        };
        push(counter, Budget::DailySpend(micros));
    }
    if let Some(micros) = limits.monthly_spend_micros {
        let (month, next) = month_bounds(now_ms);
        let counter = Counter {
            id: counter_id(key_id, "spend:month", 0, u64::from(month)),
            limit: micros.saturating_mul(NANOS_PER_MICRO),
            expires_at_ms: next,
        };
        push(counter, Budget::MonthlySpend(micros));
    }
    out
}

/// `KEY:KIND:WINDOW_MS:INDEX` (the window's length is left out when it is 0): one counter per
/// key, budget and window. Built by hand: formatting machinery would cost more than the rest of
/// the reservation.
fn counter_id(key_id: &str, kind: &str, window_ms: u64, index: u64) -> String {
    let mut digits = itoa::Buffer::new();
    let mut id = String::with_capacity(key_id.len() + kind.len() + 32);
    for part in [key_id, ":", kind, ":"] {
        id.push_str(part);
    }
    if window_ms > 0 {
        id.push_str(digits.format(window_ms));
        id.push(':');
    }
    id.push_str(digits.format(index));
    id
}

/// The UTC month of `now_ms` as `YYYYMM`, and when the next one starts (Unix ms).
fn month_bounds(now_ms: u64) -> (u32, u64) {
    let now = Utc
        .timestamp_millis_opt(i64::try_from(now_ms).unwrap_or(i64::MAX))
        .single()
        .unwrap_or_default();
    let (year, month) = (now.year(), now.month());
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let next = Utc
        .with_ymd_and_hms(next_year, next_month, 1, 0, 0, 0)
        .single()
        .map_or(u64::MAX, |t| {
            u64::try_from(t.timestamp_millis()).unwrap_or(u64::MAX)
        });
    (year.unsigned_abs() * 100 + month, next)
}

/// The dearest input and output prices among the candidates, in nano-USD per token: the most
/// any of them can cost.
fn dearest(candidates: &[Candidate]) -> (u64, u64) {
    candidates
        .iter()
        .filter_map(|c| c.model.pricing)
        .fold((0, 0), |(input, output), p| {
            (input.max(nanos(p.input)), output.max(nanos(p.output)))
        })
}

/// The largest `max_output_tokens` of the candidate models, when the catalog gives every one.
fn largest_model_output(candidates: &[Candidate]) -> Option<u64> {
    candidates
        .iter()
        .map(|c| c.model.max_output_tokens)
        .try_fold(0, |largest, max| max.map(|max| largest.max(max)))
        .filter(|&largest| largest > 0)
}

/// A price in USD per million tokens as nano-USD per token, rounded up.
fn nanos(per_million: f64) -> u64 {
    // USD per million tokens is micro-USD per token.
    let nanos = (per_million * NANOS_PER_MICRO as f64).ceil();
    if nanos.is_finite() && nanos > 0.0 {
        nanos as u64
    } else {
        0
    }
}

fn refused(message: String, wait: Duration) -> GatewayError {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    GatewayError::new(ErrorCode::AccessKeyBudget, message)
        .with_header(http::header::RETRY_AFTER, HeaderValue::from(seconds))
}

fn unavailable(key_id: &str) -> String {
    format!("the budget store is unreachable and access key {key_id} refuses requests then (on_store_failure: closed)")
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn clamp_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-07T15:30:00Z.
    const NOW_MS: u64 = 1_796_657_400_000;

    #[test]
    fn counters_follow_utc_windows() {
        let limits = KeyLimits {
            tokens: Some(Rate {
                count: 5000,
                window: Duration::from_secs(3600),
            }),
            daily_spend_micros: Some(5_000_000),
            monthly_spend_micros: Some(50_250_000),
            ..KeyLimits::default()
        };
        let (counters, budgets) = counters("aigk_1", &limits, NOW_MS);
        let ids: Vec<&str> = counters.iter().map(|c| c.id.as_str()).collect();
        let hour = NOW_MS / 3_600_000;
        assert_eq!(
            ids,
            [
                format!("aigk_1:tokens:3600000:{hour}").as_str(),
                format!("aigk_1:spend:day:86400000:{}", NOW_MS / DAY_MS).as_str(),
                "aigk_1:spend:month:202612",
            ]
        );
        assert_eq!(counters[0].expires_at_ms, 1_796_659_200_000, "16:00Z");
        assert_eq!(
            counters[1].expires_at_ms, 1_796_688_000_000,
            "next midnight"
        );
        assert_eq!(
            counters[2].expires_at_ms, 1_798_761_600_000,
            "2027-01-01T00:00Z"
        );
        assert_eq!(counters[1].limit, 5_000_000_000, "nano-USD");
        assert_eq!(
            budgets[2].exhausted_message("aigk_1"),
            "access key aigk_1 has reached its monthly spend limit ($50.25)"
        );
        assert_eq!(
            budgets[0].exhausted_message("aigk_1"),
            "access key aigk_1 has reached its token budget (5000/h)"
        );
    }

    #[test]
    fn prices_are_nano_usd_per_token_rounded_up() {
        assert_eq!(nanos(2.5), 2500);
        assert_eq!(nanos(0.15), 150);
        assert_eq!(nanos(0.0000001), 1);
        assert_eq!(nanos(0.0), 0);
        assert_eq!(nanos(f64::NAN), 0);
    }
}
