//! Summaries of a load run.

use std::time::Duration;

use serde::Serialize;

use super::worker::Samples;
use super::LoadPlan;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Slowest sample.
    pub max_ms: f64,
}

impl Percentiles {
    /// Percentiles of `samples` (sorted in place); `None` when empty.
    pub fn of(samples: &mut [Duration]) -> Option<Percentiles> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let rank = (q * samples.len() as f64).ceil() as usize;
            ms(samples[rank.clamp(1, samples.len()) - 1])
        };
        Some(Percentiles {
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: ms(samples[samples.len() - 1]),
        })
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The result of a load run, printed as one JSON line by `keygate-load`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Free-form name of the run.
    pub label: String,
    /// `fixed` (open loop at `target_rps`) or `max` (closed loop).
    pub mode: &'static str,
    /// Requested rate, when fixed.
    pub target_rps: Option<f64>,
    /// Successful responses per second over the measured period.
    pub rps: f64,
    /// Successful (2xx) responses measured.
    pub ok: u64,
    /// Responses with another status.
    pub non_2xx: u64,
    /// Failed connections and timeouts.
    pub errors: u64,
    /// Length of the measured period in seconds.
    pub duration_s: f64,
    /// Latency of successful responses (to the last byte).
    pub latency: Option<Percentiles>,
    /// Time to the first SSE `data:` chunk, for streamed runs.
    pub ttft: Option<Percentiles>,
}

impl Report {
    pub(crate) fn new(label: &str, plan: &LoadPlan, mut samples: Samples) -> Report {
        let duration_s = plan.duration.as_secs_f64();
        let ok = samples.latencies.len() as u64;
        Report {
            label: label.to_owned(),
            mode: if plan.rate.is_some() { "fixed" } else { "max" },
            target_rps: plan.rate,
            rps: if duration_s > 0.0 {
                (ok as f64 / duration_s * 10.0).round() / 10.0
            } else {
                0.0
            },
            ok,
            non_2xx: samples.non_2xx,
            errors: samples.errors,
            duration_s,
            latency: Percentiles::of(&mut samples.latencies),
            ttft: if plan.stream {
                Percentiles::of(&mut samples.ttfts)
            } else {
                None
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut samples: Vec<Duration> = (1..=1000).rev().map(Duration::from_millis).collect();
        let p = Percentiles::of(&mut samples).expect("non-empty");
        assert_eq!(p.p50_ms, 500.0);
        assert_eq!(p.p90_ms, 900.0);
        assert_eq!(p.p99_ms, 990.0);
        assert_eq!(p.p999_ms, 999.0);
        assert_eq!(p.max_ms, 1000.0);
        assert_eq!(Percentiles::of(&mut []), None);
        let mut one = vec![Duration::from_micros(1500)];
        assert_eq!(Percentiles::of(&mut one).map(|p| p.p999_ms), Some(1.5));
    }
}
