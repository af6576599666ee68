//! Local rolling statistics per (provider, model) that feed `m.metrics` in selection strategies.
//! One node's view: the `global`, `region`, `account` and `endpoint` scopes all
//! report the same window.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// How an upstream attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx/3xx.
    Success,
    /// `per_request_timeout` (or the total budget) ran out.
    Timeout,
    /// 429.
    RateLimited,
    /// Another 4xx.
    ClientError,
    /// 5xx.
    ServerError,
    /// Connect/TLS/protocol failure.
    Transport,
}

impl Outcome {
    /// The outcome of an HTTP status.
    pub fn from_status(status: u16) -> Outcome {
        match status {
            429 => Outcome::RateLimited,
            400..=499 => Outcome::ClientError,
            500.. => Outcome::ServerError,
            _ => Outcome::Success,
        }
    }
}

/// One upstream attempt.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub outcome: Outcome,
    /// Time until the response head (or the failure).
    pub upstream: Duration,
    /// Time spent in gateway logic for the request.
    pub gateway: Duration,
    /// Time to the first body byte, when one arrived.
    pub time_to_first_token: Option<Duration>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The token counts are the gateway's estimate: the provider reported none.
    pub estimated: bool,
}

struct Entry {
    at: Instant,
    sample: Sample,
}

/// Rolling windows of samples, bounded in time and count.
pub struct MetricsStore {
    window: Duration,
    max_samples: usize,
    series: Mutex<HashMap<(String, String), VecDeque<Entry>>>,
}

impl MetricsStore {
    /// A store keeping at most `max_samples` per series, none older than `window`.
    pub fn new(window: Duration, max_samples: usize) -> Self {
        Self {
            window,
            max_samples: max_samples.max(1),
            series: Mutex::new(HashMap::new()),
        }
    }

    /// Records one attempt.
    pub fn record(&self, provider: &str, model: &str, sample: Sample) {
        let now = Instant::now();
        let mut series = self
            .series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entries = series
            .entry((provider.to_owned(), model.to_owned()))
            .or_default();
        entries.push_back(Entry { at: now, sample });
        while entries.len() > self.max_samples {
            entries.pop_front();
        }
    }

    /// Adds the token usage of an answer once its body has ended (the attempt was recorded
    /// when its first byte arrived): to the newest successful sample of (provider, model) that
    /// has none yet, so the window's sums hold whichever concurrent answer it was.
    pub fn add_tokens(
        &self,
        provider: &str,
        model: &str,
        input: u64,
        output: u64,
        estimated: bool,
    ) {
        let mut series = self
            .series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(entries) = series.get_mut(&(provider.to_owned(), model.to_owned())) else {
            return;
        };
        let unfilled = entries.iter_mut().rev().find(|e| {
            e.sample.outcome == Outcome::Success
                && e.sample.input_tokens == 0
                && e.sample.output_tokens == 0
        });
        if let Some(entry) = unfilled {
            entry.sample.input_tokens = input;
            entry.sample.output_tokens = output;
            entry.sample.estimated = estimated;
        }
    }

    /// The `m.metrics` value for (provider, model).
    pub fn metrics_value(&self, provider: &str, model: &str) -> Value {
        let scope = self.scope(provider, model);
        json!({"global": scope, "region": scope, "account": scope, "endpoint": scope, "api_keys": {}})
    }

    /// One scope object: counts, error rates, latencies and tokens over the window.
    pub fn scope(&self, provider: &str, model: &str) -> Value {
        let now = Instant::now();
        let mut series = self
            .series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let samples: Vec<Sample> = match series.get_mut(&(provider.to_owned(), model.to_owned())) {
            Some(entries) => {
                while entries
                    .front()
                    .is_some_and(|e| now.duration_since(e.at) > self.window)
                {
                    entries.pop_front();
                }
                entries.iter().map(|e| e.sample).collect()
            }
            None => Vec::new(),
        };
        drop(series);
        let end = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let start = end.saturating_sub(self.window);
        let count = samples.len();
        let tokens = |estimated: bool, field: fn(&Sample) -> u64| {
            samples
                .iter()
                .filter(|s| s.estimated == estimated)
                .map(field)
                .sum::<u64>()
        };
        let rate = |outcome: &dyn Fn(Outcome) -> bool| {
            if count == 0 {
                0.0
            } else {
                samples.iter().filter(|s| outcome(s.outcome)).count() as f64 / count as f64
            }
        };
        let ms = |pick: &dyn Fn(&Sample) -> Option<Duration>| {
            let mut values: Vec<f64> = samples
                .iter()
                .filter_map(pick)
                .map(|d| d.as_secs_f64() * 1000.0)
                .collect();
            summary(&mut values)
        };
        let (gateway_avg, gateway_p95) = ms(&|s| Some(s.gateway));
        let (upstream_avg, upstream_p95) = ms(&|s| Some(s.upstream));
        let (ttft_avg, ttft_p95) = ms(&|s| s.time_to_first_token);
        let ttft = |v: f64| {
            if samples.iter().any(|s| s.time_to_first_token.is_some()) {
                json!(v)
            } else {
                Value::Null
            }
        };
        json!({
            "provider": provider,
            "model": model,
            "request_count": count,
            "start_time": rfc3339(start),
            "end_time": rfc3339(end),
            "latency": {
                "gateway_ms_avg": gateway_avg, "gateway_ms_p95": gateway_p95,
                "upstream_ms_avg": upstream_avg, "upstream_ms_p95": upstream_p95,
                "time_to_first_token_ms_avg": ttft(ttft_avg), "time_to_first_token_ms_p95": ttft(ttft_p95),
                "time_per_output_token_ms_avg": Value::Null, "time_per_output_token_ms_p95": Value::Null,
            },
            "error_rate": {
                "total": rate(&|o| o != Outcome::Success),
                "timeout": rate(&|o| o == Outcome::Timeout),
                "rate_limit": rate(&|o| o == Outcome::RateLimited),
                "client": rate(&|o| o == Outcome::ClientError),
                "server": rate(&|o| o == Outcome::ServerError || o == Outcome::Transport),
            },
            "token": {
                "provider_input": tokens(false, |s| s.input_tokens),
                "provider_output": tokens(false, |s| s.output_tokens),
                "estimated_input": tokens(true, |s| s.input_tokens),
                "estimated_output": tokens(true, |s| s.output_tokens),
            },
        })
    }
}

/// (average, 95th percentile by nearest rank); zeros when empty.
fn summary(values: &mut [f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    values.sort_by(f64::total_cmp);
    let avg = values.iter().sum::<f64>() / values.len() as f64;
    let rank = ((values.len() as f64) * 0.95).ceil() as usize;
    (avg, values[rank.clamp(1, values.len()) - 1])
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a duration since the Unix epoch.
fn rfc3339(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(outcome: Outcome, upstream_ms: u64) -> Sample {
        Sample {
            outcome,
            upstream: Duration::from_millis(upstream_ms),
            gateway: Duration::from_millis(1),
            time_to_first_token: None,
            input_tokens: 10,
            output_tokens: 5,
            estimated: false,
        }
    }

    #[test]
    fn tokens_arrive_after_the_attempt_and_keep_their_source() {
        let store = MetricsStore::new(Duration::from_secs(300), 100);
        let answered = |store: &MetricsStore| {
            let sample = Sample {
                input_tokens: 0,
                output_tokens: 0,
                ..sample(Outcome::Success, 5)
            };
            store.record("llamacpp", "smollm2", sample);
        };
        answered(&store);
        answered(&store);
        store.record("llamacpp", "smollm2", sample(Outcome::Timeout, 2000));
        store.add_tokens("llamacpp", "smollm2", 30, 12, true);
        store.add_tokens("llamacpp", "smollm2", 20, 8, false);
        // A third answer has no attempt left to fill: nothing is counted twice.
        store.add_tokens("llamacpp", "smollm2", 99, 99, false);
        store.add_tokens("llamacpp", "unknown", 99, 99, false);
        let token = &store.scope("llamacpp", "smollm2")["token"];
        assert_eq!(token["estimated_input"], 30);
        assert_eq!(token["estimated_output"], 12);
        // The timed-out attempt's own sample carries 10/5 (the helper's defaults).
        assert_eq!(token["provider_input"], 30);
        assert_eq!(token["provider_output"], 13);
    }

    #[test]
    fn rates_latencies_and_tokens() {
        let store = MetricsStore::new(Duration::from_secs(300), 100);
        for ms in 1..=19 {
            store.record("openai", "gpt-4o", sample(Outcome::Success, ms));
        }
        store.record("openai", "gpt-4o", sample(Outcome::RateLimited, 100));
        let scope = store.scope("openai", "gpt-4o");
        assert_eq!(scope["request_count"], 20);
        assert_eq!(scope["error_rate"]["rate_limit"], 0.05);
        assert_eq!(scope["error_rate"]["total"], 0.05);
        assert_eq!(scope["latency"]["upstream_ms_p95"], 19.0);
        assert_eq!(scope["latency"]["time_to_first_token_ms_avg"], Value::Null);
        assert_eq!(scope["token"]["provider_input"], 200);
        let empty = store.scope("openai", "o3");
        assert_eq!(empty["request_count"], 0);
        assert_eq!(empty["error_rate"]["total"], 0.0);
        assert_eq!(
            store.metrics_value("openai", "gpt-4o")["endpoint"]["request_count"],
            20
        );
    }

    #[test]
    fn windows_are_bounded() {
        let store = MetricsStore::new(Duration::from_secs(300), 3);
        for _ in 0..5 {
            store.record("p", "m", sample(Outcome::ServerError, 1));
        }
        assert_eq!(store.scope("p", "m")["request_count"], 3);
        let expiring = MetricsStore::new(Duration::ZERO, 10);
        expiring.record("p", "m", sample(Outcome::Success, 1));
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(expiring.scope("p", "m")["request_count"], 0);
    }

    #[test]
    fn statuses_and_dates() {
        assert_eq!(Outcome::from_status(429), Outcome::RateLimited);
        assert_eq!(Outcome::from_status(404), Outcome::ClientError);
        assert_eq!(Outcome::from_status(503), Outcome::ServerError);
        assert_eq!(Outcome::from_status(200), Outcome::Success);
        assert_eq!(
            rfc3339(Duration::from_secs(1_795_000_000)),
            "2026-11-18T11:06:40Z"
        );
        assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00Z");
    }
}
