//! Prometheus metrics (SPEC section 6). Label values are bounded: statuses, provider and model
//! ids from the policy, limiter names — never tokens, keys or client addresses.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RateLimitLabels {
    pub name: String,
    pub limited: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AiLabels {
    pub provider: String,
    pub model: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub provider: String,
    pub model: String,
    pub direction: &'static str,
}

/// Every metric Keygate exports, registered once.
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<StatusLabels, Counter>,
    pub http_duration: Histogram,
    pub policy_reloads: Family<ResultLabels, Counter>,
    pub rate_limit_decisions: Family<RateLimitLabels, Counter>,
    /// Set from the limiter when `/metrics` is scraped.
    pub rate_limit_store_failures: Gauge,
    pub ai_requests: Family<AiLabels, Counter>,
    pub ai_tokens: Family<TokenLabels, Counter>,
    pub ai_upstream_duration: Histogram,
    pub ai_time_to_first_token: Histogram,
}

fn seconds_histogram() -> Histogram {
    // 100 µs .. ~105 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 21))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("keygate");
        let metrics = Self {
            http_requests: Family::default(),
            http_duration: seconds_histogram(),
            policy_reloads: Family::default(),
            rate_limit_decisions: Family::default(),
            rate_limit_store_failures: Gauge::default(),
            ai_requests: Family::default(),
            ai_tokens: Family::default(),
            ai_upstream_duration: seconds_histogram(),
            ai_time_to_first_token: seconds_histogram(),
            registry: Registry::default(),
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

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_spec_metric_names() {
        let metrics = Metrics::new();
        metrics
            .http_requests
            .get_or_create(&StatusLabels { status: 200 })
            .inc();
        metrics
            .policy_reloads
            .get_or_create(&ResultLabels { result: "ok" })
            .inc();
        let text = metrics.render();
        for name in [
            "keygate_http_requests_total{status=\"200\"} 1",
            "keygate_http_request_duration_seconds_bucket",
            "keygate_policy_reloads_total{result=\"ok\"} 1",
            "keygate_ai_time_to_first_token_seconds",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
