//! Prometheus metrics (the families docs/server.md lists). Label values are bounded: statuses, provider and model
//! ids from the policy, limiter names — never tokens, keys or client addresses. Access key ids only with
//! `--metrics-per-key`, which the operator turns on for a bounded number of keys.

mod exposition;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use keygate_policy::{AiRecord, StreamFailure};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::admission::Cap;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CapLabels {
    pub cap: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RateLimitLabels {
    pub name: String,
    pub limited: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AiLabels {
    pub provider: String,
    pub model: String,
    pub status: AiStatus,
}

/// The `status` label of `keygate_ai_requests_total`: the response status, or `stream_error`
/// when the provider's response broke off after its head went to the client (the client saw
/// the head's status, then a stream that ended early).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum AiStatus {
    Http(u16),
    StreamError,
}

impl AiStatus {
    fn of(ai: &AiRecord, status: u16) -> AiStatus {
        if ai.usage.broken.get().is_some() {
            AiStatus::StreamError
        } else {
            AiStatus::Http(status)
        }
    }
}

impl EncodeLabelValue for AiStatus {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        match self {
            AiStatus::Http(status) => status.encode(encoder),
            AiStatus::StreamError => "stream_error".encode(encoder),
        }
    }
}

pub use exposition::Format;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamErrorLabels {
    pub provider: String,
    pub model: String,
    pub cause: &'static str,
}

/// The `cause` label of `keygate_ai_stream_errors_total`.
fn stream_error_cause(failure: &StreamFailure) -> &'static str {
    match failure {
        StreamFailure::Reset | StreamFailure::Closed | StreamFailure::Read(_) => "interrupted",
        StreamFailure::Idle(_) => "idle_timeout",
        StreamFailure::Unfinished => "no_final_event",
        StreamFailure::ErrorEvent => "error_event",
        StreamFailure::Cut(_) => "budget_exhausted",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    pub access_key: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyTokenLabels {
    pub access_key: String,
    pub direction: &'static str,
}

/// The counters of one access key (`--metrics-per-key`).
#[derive(Clone)]
struct KeyCounters {
    key: String,
    requests: Counter,
    input_tokens: Counter,
    output_tokens: Counter,
}

/// The per-access-key families, registered only with `--metrics-per-key`.
struct PerKey {
    /// Counters already taken from `requests` and `tokens`.
    by_key: Memo<KeyCounters>,
    requests: Family<KeyLabels, Counter>,
    tokens: Family<KeyTokenLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    pub provider: String,
    pub model: String,
    pub direction: &'static str,
    /// `provider` (reported) or `estimated` (the provider reported none; see `Usage::estimated`).
    pub source: &'static str,
}

/// The counters of one (provider, model, status, usage source).
#[derive(Clone)]
struct AiCounters {
    provider: String,
    model: String,
    status: AiStatus,
    estimated: bool,
    requests: Counter,
    input_tokens: Counter,
    output_tokens: Counter,
}

/// Every metric Keygate exports, registered once.
pub struct Metrics {
    registry: Registry,
    /// Counters already taken from `http_requests`.
    by_status: Memo<(u16, Counter)>,
    /// Counters already taken from `ai_requests` and `ai_tokens`.
    by_ai_labels: Memo<AiCounters>,
    /// Counters already taken from `rate_limit_decisions`.
    by_limiter: Arc<Memo<(RateLimitLabels, Counter)>>,
    http_requests: Family<StatusLabels, Counter>,
    http_duration: Histogram,
    pub policy_reloads: Family<ResultLabels, Counter>,
    /// Connections `on_tcp_connect` refused.
    pub connections_refused: Counter,
    /// Requests answered 503 over `--max-connections` or `--max-requests`.
    overloaded: Family<CapLabels, Counter>,
    rate_limit_decisions: Family<RateLimitLabels, Counter>,
    /// Set from the limiter when `/metrics` is scraped.
    pub rate_limit_store_failures: Gauge,
    /// Brought up to the ledger's count when `/metrics` is scraped.
    usage_ledger_dropped: Counter,
    /// Counted by the OTLP exporter (`crate::otlp::Dropped`).
    otlp_spans_dropped: Family<ReasonLabels, Counter>,
    ai_requests: Family<AiLabels, Counter>,
    ai_tokens: Family<TokenLabels, Counter>,
    ai_upstream_duration: Histogram,
    ai_time_to_first_token: Histogram,
    ai_stream_errors: Family<StreamErrorLabels, Counter>,
    per_key: Option<PerKey>,
}

fn seconds_histogram() -> Histogram {
    // 100 µs .. ~105 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 21))
}

impl Metrics {
    /// Every metric; `per_key` adds the per-access-key families (`--metrics-per-key`).
    pub fn new(per_key: bool) -> Self {
        let mut registry = Registry::with_prefix("keygate");
        let metrics = Self {
            http_requests: Family::default(),
            http_duration: seconds_histogram(),
            policy_reloads: Family::default(),
            connections_refused: Counter::default(),
            overloaded: Family::default(),
            rate_limit_decisions: Family::default(),
            rate_limit_store_failures: Gauge::default(),
            usage_ledger_dropped: Counter::default(),
            otlp_spans_dropped: Family::default(),
            ai_requests: Family::default(),
            ai_tokens: Family::default(),
            ai_upstream_duration: seconds_histogram(),
            ai_time_to_first_token: seconds_histogram(),
            ai_stream_errors: Family::default(),
            per_key: per_key.then(|| PerKey {
                by_key: Memo::default(),
                requests: Family::default(),
                tokens: Family::default(),
            }),
            registry: Registry::default(),
            by_status: Memo::default(),
            by_ai_labels: Memo::default(),
            by_limiter: Arc::default(),
        };
        registry.register(
            "http_requests",
            "Requests answered, by status",
            metrics.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from request head to the end of the response body",
            metrics.http_duration.clone(),
        );
        registry.register(
            "policy_reloads",
            "Policy reloads, by result",
            metrics.policy_reloads.clone(),
        );
        registry.register(
            "connections_refused",
            "Client connections on_tcp_connect refused before TLS and HTTP",
            metrics.connections_refused.clone(),
        );
        registry.register(
            "overloaded_requests",
            "Requests answered 503 because the gateway was at a cap, by cap (connections: --max-connections, requests: --max-requests)",
            metrics.overloaded.clone(),
        );
        registry.register(
            "rate_limit_decisions",
            "rate-limit decisions, by limiter name and outcome",
            metrics.rate_limit_decisions.clone(),
        );
        registry.register(
            "rate_limit_store_failures",
            "Rate-limit store failures (Redis unreachable or slow) since start; decisions then follow --rate-limit-failure",
            metrics.rate_limit_store_failures.clone(),
        );
        registry.register(
            "usage_ledger_dropped",
            "Usage events the ledger dropped (its queue was full, or the database refused a batch) since start",
            metrics.usage_ledger_dropped.clone(),
        );
        registry.register(
            "otlp_spans_dropped",
            "Trace spans never exported (--otlp-endpoint): the queue was full, or the collector failed their batch",
            metrics.otlp_spans_dropped.clone(),
        );
        registry.register(
            "ai_requests",
            "ai-gateway requests, by provider, model and status",
            metrics.ai_requests.clone(),
        );
        registry.register(
            "ai_tokens",
            "Tokens reported by providers, by direction",
            metrics.ai_tokens.clone(),
        );
        registry.register(
            "ai_upstream_duration_seconds",
            "Time from the upstream attempt to the end of its response",
            metrics.ai_upstream_duration.clone(),
        );
        registry.register(
            "ai_time_to_first_token_seconds",
            "Time from the first upstream attempt to the first response byte",
            metrics.ai_time_to_first_token.clone(),
        );
        registry.register(
            "ai_stream_errors",
            "ai-gateway responses that broke off or carried an error after their head went to the client, by provider, model and cause",
            metrics.ai_stream_errors.clone(),
        );
        if let Some(per_key) = &metrics.per_key {
            registry.register(
                "access_key_requests",
                "Requests that authenticated with an access key, by access key id (--metrics-per-key)",
                per_key.requests.clone(),
            );
            registry.register(
                "access_key_tokens",
                "Tokens of the requests of an access key, by access key id and direction (--metrics-per-key)",
                per_key.tokens.clone(),
            );
        }
        // Known outcomes start at zero, so a scrape shows them before the first reload.
        for result in ["ok", "error"] {
            let _ = metrics
                .policy_reloads
                .get_or_create(&ResultLabels { result });
        }
        Self {
            registry,
            ..metrics
        }
    }

    /// Counts one request answered 503 over `cap`.
    pub fn record_overload(&self, cap: Cap) {
        let labels = CapLabels { cap: cap.label() };
        self.overloaded.get_or_create(&labels).inc();
    }

    /// Counts one answered request.
    pub fn record_request(&self, status: u16, duration: Duration) {
        self.by_status.with(
            |(known, _)| *known == status,
            || {
                let labels = StatusLabels { status };
                (status, self.http_requests.get_or_create(&labels).clone())
            },
            |(_, counter)| {
                counter.inc();
            },
        );
        self.http_duration.observe(duration.as_secs_f64());
    }

    /// Counts one request `ai-gateway` served (or failed), with its tokens.
    pub fn record_ai(&self, ai: &AiRecord, status: u16, duration: Duration) {
        let input = ai.usage.input_tokens.load(Ordering::Relaxed);
        let output = ai.usage.output_tokens.load(Ordering::Relaxed);
        let status = AiStatus::of(ai, status);
        let estimated = ai.usage.estimated.load(Ordering::Relaxed);
        self.by_ai_labels.with(
            |known| {
                known.status == status
                    && known.estimated == estimated
                    && known.provider == ai.provider
                    && known.model == ai.model
            },
            || {
                let token_counter = |direction| {
                    self.ai_tokens
                        .get_or_create(&TokenLabels {
                            provider: ai.provider.clone(),
                            model: ai.model.clone(),
                            direction,
                            source: if estimated { "estimated" } else { "provider" },
                        })
                        .clone()
                };
                let labels = AiLabels {
                    provider: ai.provider.clone(),
                    model: ai.model.clone(),
                    status,
                };
                AiCounters {
                    provider: ai.provider.clone(),
                    model: ai.model.clone(),
                    status,
                    estimated,
                    requests: self.ai_requests.get_or_create(&labels).clone(),
                    input_tokens: token_counter("input"),
                    output_tokens: token_counter("output"),
                }
            },
            |counters| {
                counters.requests.inc();
                counters.input_tokens.inc_by(input);
                counters.output_tokens.inc_by(output);
            },
        );
        self.ai_upstream_duration.observe(duration.as_secs_f64());
        if let Some(ttft) = ai.time_to_first_token {
            self.ai_time_to_first_token.observe(ttft.as_secs_f64());
        }
        if let Some(broken) = ai.usage.broken.get() {
            // Rare: the family is looked up directly.
            self.ai_stream_errors
                .get_or_create(&StreamErrorLabels {
                    provider: ai.provider.clone(),
                    model: ai.model.clone(),
                    cause: stream_error_cause(&broken.cause),
                })
                .inc();
        }
    }

    /// Counts a request that authenticated with access key `key` (its id), with its AI tokens;
    /// nothing without `--metrics-per-key`.
    pub fn record_access_key(&self, key: &str, ai: Option<&AiRecord>) {
        let Some(per_key) = &self.per_key else {
            return;
        };
        per_key.by_key.with(
            |known| known.key == key,
            || {
                let token_counter = |direction| {
                    per_key
                        .tokens
                        .get_or_create(&KeyTokenLabels {
                            access_key: key.to_owned(),
                            direction,
                        })
                        .clone()
                };
                KeyCounters {
                    key: key.to_owned(),
                    requests: per_key
                        .requests
                        .get_or_create(&KeyLabels {
                            access_key: key.to_owned(),
                        })
                        .clone(),
                    input_tokens: token_counter("input"),
                    output_tokens: token_counter("output"),
                }
            },
            |counters| {
                counters.requests.inc();
                if let Some(ai) = ai {
                    let usage = &ai.usage;
                    counters
                        .input_tokens
                        .inc_by(usage.input_tokens.load(Ordering::Relaxed));
                    counters
                        .output_tokens
                        .inc_by(usage.output_tokens.load(Ordering::Relaxed));
                }
            },
        );
    }

    /// A callback counting rate-limit decisions, for `keygate_ratelimit::Observed`.
    pub fn rate_limit_observer(&self) -> impl Fn(&str, bool) + Send + Sync + 'static {
        let family = self.rate_limit_decisions.clone();
        let memo = self.by_limiter.clone();
        move |name, limited| {
            memo.with(
                |(labels, _)| labels.limited == limited && labels.name == name,
                || {
                    let labels = RateLimitLabels {
                        name: name.to_owned(),
                        limited,
                    };
                    let counter = family.get_or_create(&labels).clone();
                    (labels, counter)
                },
                |(_, counter)| {
                    counter.inc();
                },
            )
        }
    }

    /// Sets `keygate_usage_ledger_dropped_total` to the ledger's count, which only grows. Called
    /// by `/metrics`, whose scrapes the control thread answers one at a time.
    pub fn set_usage_ledger_dropped(&self, dropped: u64) {
        let seen = self.usage_ledger_dropped.get();
        if dropped > seen {
            self.usage_ledger_dropped.inc_by(dropped - seen);
        }
    }

    /// The counters of `keygate_otlp_spans_dropped_total` (both series start at zero), for the
    /// trace exporter.
    pub fn otlp_spans_dropped(&self) -> crate::otlp::Dropped {
        let counter = |reason| {
            self.otlp_spans_dropped
                .get_or_create(&ReasonLabels { reason })
                .clone()
        };
        crate::otlp::Dropped {
            queue_full: counter("queue_full"),
            export_failed: counter("export_failed"),
        }
    }

    /// The text exposition in `format`.
    pub fn render(&self, format: Format) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        match format {
            Format::OpenMetrics => out,
            Format::Prometheus => exposition::to_prometheus(&out),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(false)
    }
}

/// Values already looked up in a metric family (each carrying its labels), found again by a
/// linear scan: no hashing, cloning or locking on the request path. Bounded; past the bound a
/// miss goes to the family every time, which is still right, only slower.
struct Memo<V> {
    entries: ArcSwap<Vec<V>>,
}

impl<V> Default for Memo<V> {
    fn default() -> Self {
        Self {
            entries: ArcSwap::from_pointee(Vec::new()),
        }
    }
}

impl<V: Clone> Memo<V> {
    const MAX_ENTRIES: usize = 512;

    /// Runs `apply` on the entry that `matches`, creating and remembering it on a miss.
    fn with(
        &self,
        matches: impl Fn(&V) -> bool,
        create: impl FnOnce() -> V,
        apply: impl FnOnce(&V),
    ) {
        let entries = self.entries.load();
        if let Some(entry) = entries.iter().find(|entry| matches(entry)) {
            return apply(entry);
        }
        let entry = create();
        apply(&entry);
        if entries.len() < Self::MAX_ENTRIES {
            self.entries.rcu(|current| {
                let mut next = Vec::clone(current);
                if !next.iter().any(&matches) {
                    next.push(entry.clone());
                }
                next
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ai_record(model: &str, input: u64, output: u64) -> AiRecord {
        let usage = keygate_policy::Usage::default();
        usage.input_tokens.store(input, Ordering::Relaxed);
        usage.output_tokens.store(output, Ordering::Relaxed);
        AiRecord {
            provider: "openai".into(),
            model: model.into(),
            attempts: 1,
            time_to_first_token: Some(Duration::from_millis(3)),
            usage: Arc::new(usage),
            ..AiRecord::default()
        }
    }

    #[test]
    fn remembered_counters_add_up_per_label_set() {
        let metrics = Metrics::new(false);
        let second = Duration::from_secs(1);
        for status in [200, 200, 429, 200] {
            metrics.record_request(status, second);
        }
        metrics.record_ai(&ai_record("gpt-4o", 10, 5), 200, second);
        metrics.record_ai(&ai_record("gpt-4o", 7, 0), 200, second);
        metrics.record_ai(&ai_record("gpt-4o-mini", 0, 0), 502, second);
        let broken = ai_record("gpt-4o", 4, 0);
        let cause = keygate_policy::StreamFailure::Closed;
        let _ = broken
            .usage
            .broken
            .set(keygate_policy::BrokenStream { cause, events: 2 });
        metrics.record_ai(&broken, 200, second);
        let count = metrics.rate_limit_observer();
        for (name, limited) in [("a", false), ("a", false), ("a", true), ("b", false)] {
            count(name, limited);
        }
        let text = metrics.render(Format::Prometheus);
        for line in [
            "keygate_http_requests_total{status=\"200\"} 3",
            "keygate_http_requests_total{status=\"429\"} 1",
            "keygate_ai_requests_total{provider=\"openai\",model=\"gpt-4o\",status=\"200\"} 2",
            "keygate_ai_requests_total{provider=\"openai\",model=\"gpt-4o-mini\",status=\"502\"} 1",
            "keygate_ai_requests_total{provider=\"openai\",model=\"gpt-4o\",status=\"stream_error\"} 1",
            "keygate_ai_tokens_total{provider=\"openai\",model=\"gpt-4o\",direction=\"input\",source=\"provider\"} 21",
            "keygate_ai_tokens_total{provider=\"openai\",model=\"gpt-4o\",direction=\"output\",source=\"provider\"} 5",
            "keygate_rate_limit_decisions_total{name=\"a\",limited=\"false\"} 2",
            "keygate_rate_limit_decisions_total{name=\"a\",limited=\"true\"} 1",
            "keygate_rate_limit_decisions_total{name=\"b\",limited=\"false\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn renders_the_spec_metric_names() {
        let metrics = Metrics::new(false);
        metrics
            .http_requests
            .get_or_create(&StatusLabels { status: 200 })
            .inc();
        metrics
            .policy_reloads
            .get_or_create(&ResultLabels { result: "ok" })
            .inc();
        let text = metrics.render(Format::Prometheus);
        for name in [
            "keygate_http_requests_total{status=\"200\"} 1",
            "keygate_http_request_duration_seconds_bucket",
            "keygate_policy_reloads_total{result=\"ok\"} 1",
            "keygate_ai_time_to_first_token_seconds",
            "keygate_usage_ledger_dropped_total 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }

    #[test]
    fn renders_both_formats() {
        let metrics = Metrics::new(false);
        metrics.record_request(200, Duration::from_millis(5));
        let openmetrics = metrics.render(Format::OpenMetrics);
        let text = metrics.render(Format::Prometheus);
        for expected in [
            "# TYPE keygate_http_requests counter\n",
            "keygate_http_requests_total{status=\"200\"} 1\n",
            "# TYPE keygate_http_request_duration_seconds histogram\n",
        ] {
            assert!(
                openmetrics.contains(expected),
                "missing {expected} in\n{openmetrics}"
            );
        }
        assert!(openmetrics.ends_with("# EOF\n"));
        for expected in [
            "# HELP keygate_http_requests_total Requests answered, by status.\n",
            "# TYPE keygate_http_requests_total counter\n",
            "keygate_http_requests_total{status=\"200\"} 1\n",
            "# TYPE keygate_http_request_duration_seconds histogram\n",
            "keygate_http_request_duration_seconds_count 1\n",
            "# TYPE keygate_rate_limit_store_failures gauge\n",
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
        assert!(!text.contains("# EOF") && !text.contains("# TYPE keygate_http_requests counter"));
    }

    #[test]
    fn counts_stream_errors_by_cause() {
        let metrics = Metrics::new(false);
        let second = Duration::from_secs(1);
        let causes = [
            StreamFailure::Reset,
            StreamFailure::Closed,
            StreamFailure::Read("tls alert".into()),
            StreamFailure::Idle(second),
            StreamFailure::Unfinished,
            StreamFailure::ErrorEvent,
            StreamFailure::Cut("budget spent".into()),
        ];
        for cause in causes {
            let broken = ai_record("gpt-4o", 1, 1);
            let _ = broken
                .usage
                .broken
                .set(keygate_policy::BrokenStream { cause, events: 1 });
            metrics.record_ai(&broken, 200, second);
        }
        metrics.record_ai(&ai_record("gpt-4o", 1, 1), 200, second);
        let text = metrics.render(Format::Prometheus);
        for (cause, count) in [
            ("interrupted", 3),
            ("idle_timeout", 1),
            ("no_final_event", 1),
            ("error_event", 1),
            ("budget_exhausted", 1),
        ] {
            let line = format!(
                "keygate_ai_stream_errors_total{{provider=\"openai\",model=\"gpt-4o\",cause=\"{cause}\"}} {count}\n"
            );
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
        assert_eq!(text.matches("keygate_ai_stream_errors_total{").count(), 5);
    }

    #[test]
    fn per_key_series_only_when_asked() {
        let second = Duration::from_secs(1);
        let off = Metrics::new(false);
        off.record_access_key("aigk_01A", Some(&ai_record("gpt-4o", 10, 5)));
        assert!(!off.render(Format::Prometheus).contains("access_key"));

        let on = Metrics::new(true);
        on.record_access_key("aigk_01A", Some(&ai_record("gpt-4o", 10, 5)));
        on.record_access_key("aigk_01A", Some(&ai_record("gpt-4o", 7, 2)));
        on.record_access_key("aigk_01A", None);
        on.record_access_key("aigk_01B", None);
        on.record_request(200, second);
        let text = on.render(Format::Prometheus);
        for line in [
            "# TYPE keygate_access_key_requests_total counter\n",
            "keygate_access_key_requests_total{access_key=\"aigk_01A\"} 3\n",
            "keygate_access_key_requests_total{access_key=\"aigk_01B\"} 1\n",
            "keygate_access_key_tokens_total{access_key=\"aigk_01A\",direction=\"input\"} 17\n",
            "keygate_access_key_tokens_total{access_key=\"aigk_01A\",direction=\"output\"} 7\n",
            "keygate_access_key_tokens_total{access_key=\"aigk_01B\",direction=\"input\"} 0\n",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
