//! The dashboard's reports: the overview (sums and latency percentiles per time bucket, from the
//! per-minute rollup), breakdowns by key, model or provider with a series per group (from the
//! hourly rollup, or from the rows for the last hour), totals per access key since a time (for
//! budget bars), and single events by row id.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};

use crate::cost::usd;
use crate::error::Error;
use crate::event::UsageEvent;
use crate::hist::Histogram;
use crate::query::{non_negative, totals, GroupBy, Reader, Totals};
use crate::rollup::{Sums, HOUR_US, MINUTE_US, ROW_SUMS, SUMMED_COLUMNS, SUM_COLUMNS};
use crate::time::{from_micros, rfc3339, to_micros};

/// An event with its row id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    pub id: i64,
    #[serde(flatten)]
    pub event: UsageEvent,
}

/// The ranges the dashboard shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Span {
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "7d")]
    Week,
    #[serde(rename = "30d")]
    Month,
}

/// A time window cut into equal buckets: `since` and `until` are whole minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub since: SystemTime,
    pub until: SystemTime,
    pub bucket: Duration,
}

impl Window {
    fn bounds_us(&self) -> (i64, i64, i64) {
        let bucket = i64::try_from(self.bucket.as_micros())
            .unwrap_or(i64::MAX)
            .max(MINUTE_US);
        (to_micros(self.since), to_micros(self.until), bucket)
    }

    fn buckets(&self) -> usize {
        let (since, until, bucket) = self.bounds_us();
        usize::try_from((until - since).max(0).div_euclid(bucket)).unwrap_or(0)
    }
}

impl Span {
    /// `1h`, `24h`, `7d` or `30d`.
    pub fn parse(text: &str) -> Result<Span, String> {
        match text {
            "1h" => Ok(Span::Hour),
            "24h" => Ok(Span::Day),
            "7d" => Ok(Span::Week),
            "30d" => Ok(Span::Month),
            _ => Err(format!(
                "unknown range '{}': use 1h, 24h, 7d or 30d",
                text.escape_debug()
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Span::Hour => "1h",
            Span::Day => "24h",
            Span::Week => "7d",
            Span::Month => "30d",
        }
    }

    fn length(self) -> Duration {
        Duration::from_secs(match self {
            Span::Hour => 3_600,
            Span::Day => 86_400,
            Span::Week => 7 * 86_400,
            Span::Month => 30 * 86_400,
        })
    }

    /// The overview's window: the span up to the end of the current minute, in buckets of a
    /// minute (1h), 15 minutes (24h), an hour (7d) or 6 hours (30d).
    pub fn overview_window(self, now: SystemTime) -> Window {
        let bucket = Duration::from_secs(match self {
            Span::Hour => 60,
            Span::Day => 900,
            Span::Week => 3_600,
            Span::Month => 6 * 3_600,
        });
        self.window_to(next_boundary(now, MINUTE_US), bucket)
    }

    /// The breakdowns' window: the last hour to the end of the current minute in 5-minute
    /// buckets; longer spans in whole UTC hours to the end of the current hour, in buckets of an
    /// hour (24h), 6 hours (7d) or a day (30d).
    pub fn breakdown_window(self, now: SystemTime) -> Window {
        match self {
            Span::Hour => self.window_to(next_boundary(now, MINUTE_US), Duration::from_secs(300)),
            Span::Day | Span::Week | Span::Month => {
                let bucket = Duration::from_secs(match self {
                    Span::Day => 3_600,
                    Span::Week => 6 * 3_600,
                    _ => 86_400,
                });
                self.window_to(next_boundary(now, HOUR_US), bucket)
            }
        }
    }

    fn window_to(self, until: SystemTime, bucket: Duration) -> Window {
        Window {
            since: until - self.length(),
            until,
            bucket,
        }
    }
}

/// The first multiple of `unit_us` after `now`.
fn next_boundary(now: SystemTime, unit_us: i64) -> SystemTime {
    from_micros((to_micros(now).div_euclid(unit_us) + 1) * unit_us)
}

/// Sums over a set of requests, with rates and latency figures for display.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub requests: u64,
    pub errors: u64,
    /// `errors / requests` (0 without requests).
    pub error_rate: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    pub estimated_requests: u64,
    pub unpriced_requests: u64,
    pub cost_micros: u64,
    pub cost_usd: f64,
    pub latency_avg_ms: Option<f64>,
    /// Percentiles from the rollup's histograms: within ±4.5 % of the exact value.
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub ttft_avg_ms: Option<f64>,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p95_ms: Option<f64>,
}

impl Summary {
    fn new(sums: &Sums, latency: Option<&Histogram>, ttft: Option<&Histogram>) -> Summary {
        let requests = non_negative(sums.requests);
        let errors = non_negative(sums.errors);
        let average = |sum: i64, count: i64| {
            (count > 0).then(|| (sum as f64 / count as f64).round() / 1000.0)
        };
        Summary {
            requests,
            errors,
            error_rate: if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            },
            input_tokens: non_negative(sums.input_tokens),
            output_tokens: non_negative(sums.output_tokens),
            cached_tokens: non_negative(sums.cached_tokens),
            reasoning_tokens: non_negative(sums.reasoning_tokens),
            estimated_requests: non_negative(sums.estimated_requests),
            unpriced_requests: non_negative(sums.unpriced_requests),
            cost_micros: non_negative(sums.cost_micros),
            cost_usd: usd(non_negative(sums.cost_micros)),
            latency_avg_ms: average(sums.latency_us, sums.requests),
            latency_p50_ms: latency.and_then(|h| h.quantile_ms(0.5)),
            latency_p95_ms: latency.and_then(|h| h.quantile_ms(0.95)),
            ttft_avg_ms: average(sums.ttft_us, sums.ttft_requests),
            ttft_p50_ms: ttft.and_then(|h| h.quantile_ms(0.5)),
            ttft_p95_ms: ttft.and_then(|h| h.quantile_ms(0.95)),
        }
    }
}

/// One bucket of the overview.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverviewBucket {
    #[serde(serialize_with = "time")]
    pub start: SystemTime,
    #[serde(flatten)]
    pub summary: Summary,
}

/// Requests, tokens, cost, errors and latency over a window, in total and per bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overview {
    #[serde(serialize_with = "time")]
    pub since: SystemTime,
    #[serde(serialize_with = "time")]
    pub until: SystemTime,
    pub bucket_seconds: u64,
    pub total: Summary,
    pub buckets: Vec<OverviewBucket>,
}

/// One group of a breakdown, with its requests per bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakdownRow {
    pub group: String,
    #[serde(flatten)]
    pub summary: Summary,
    /// Requests per bucket, oldest first.
    pub series: Vec<u64>,
}

/// Totals by key, model or provider over a window, busiest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breakdown {
    pub by: GroupBy,
    #[serde(serialize_with = "time")]
    pub since: SystemTime,
    #[serde(serialize_with = "time")]
    pub until: SystemTime,
    pub bucket_seconds: u64,
    pub rows: Vec<BreakdownRow>,
    pub total: Summary,
}

fn time<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    rfc3339(*time).serialize(serializer)
}

impl Reader {
    /// The overview of `window`, from the per-minute rollup.
    pub fn overview(&self, window: &Window) -> Result<Overview, Error> {
        let (since, until, bucket) = window.bounds_us();
        let count = window.buckets();
        let mut sums = vec![Sums::default(); count];
        let mut latency = vec![Histogram::default(); count];
        let mut ttft = vec![Histogram::default(); count];
        let sql = format!(
            "SELECT minute, {SUM_COLUMNS}, latency_hist, ttft_hist FROM usage_minute \
             WHERE minute >= $1 AND minute < $2"
        );
        self.read((), |tx| {
            let rows = tx.query(
                &sql,
                &[&since.div_euclid(MINUTE_US), &until.div_euclid(MINUTE_US)],
            )?;
            for row in rows {
                let minute: i64 = row.get(0)?;
                let index = (minute * MINUTE_US - since).div_euclid(bucket);
                let Some(index) = usize::try_from(index).ok().filter(|i| *i < count) else {
                    continue;
                };
                sums[index].add(&Sums::from_row(&row, 1)?);
                latency[index].merge_encoded(&row.get::<Vec<u8>>(13)?);
                ttft[index].merge_encoded(&row.get::<Vec<u8>>(14)?);
            }
            Ok(())
        })?;
        let mut total = Sums::default();
        let mut total_latency = Histogram::default();
        let mut total_ttft = Histogram::default();
        let mut buckets = Vec::with_capacity(count);
        for (index, ((sums, latency), ttft)) in sums.iter().zip(&latency).zip(&ttft).enumerate() {
            total.add(sums);
            total_latency.merge(latency);
            total_ttft.merge(ttft);
            buckets.push(OverviewBucket {
                start: from_micros(since + index as i64 * bucket),
                summary: Summary::new(sums, Some(latency), Some(ttft)),
            });
        }
        Ok(Overview {
            since: window.since,
            until: window.until,
            bucket_seconds: window.bucket.as_secs(),
            total: Summary::new(&total, Some(&total_latency), Some(&total_ttft)),
            buckets,
        })
    }

    /// Totals per key, model or provider (`group_by`; day and hour are refused) over `window`,
    /// with requests per bucket. Windows of whole hours in buckets of whole hours read the
    /// hourly rollup; others read the rows.
    pub fn breakdown(&self, group_by: GroupBy, window: &Window) -> Result<Breakdown, Error> {
        let (since, until, bucket) = window.bounds_us();
        let count = window.buckets();
        let hourly = since % HOUR_US == 0 && until % HOUR_US == 0 && bucket % HOUR_US == 0;
        let (group, from_rollup) = match (group_by, hourly) {
            (GroupBy::Key, true) => (
                "CASE access_key WHEN '' THEN '(none)' ELSE access_key END",
                true,
            ),
            (GroupBy::Key, false) => ("COALESCE(access_key, '(none)')", false),
            (GroupBy::Model, hourly) => ("model", hourly),
            (GroupBy::Provider, hourly) => ("provider", hourly),
            (GroupBy::Day | GroupBy::Hour, _) => {
                return Err(Error::Invalid(
                    "a breakdown groups by key, model or provider".into(),
                ))
            }
        };
        // `$1` since, `$2` until, `$3` the bucket, all in microseconds.
        let query = if from_rollup {
            format!(
                "SELECT (hour * {HOUR_US} - $1) / $3, {group}, {sums} FROM usage_hour \
                 WHERE hour >= $1 / {HOUR_US} AND hour < $2 / {HOUR_US} GROUP BY 1, 2",
                sums = *SUMMED_COLUMNS
            )
        } else {
            format!(
                "SELECT (time - $1) / $3, {group}, {ROW_SUMS} \
                 FROM usage WHERE time >= $1 AND time < $2 GROUP BY 1, 2"
            )
        };
        let mut groups: HashMap<String, (Sums, Vec<u64>)> = HashMap::new();
        self.read((), |tx| {
            for row in tx.query(&query, &[&since, &until, &bucket])? {
                let index: i64 = row.get(0)?;
                let name: String = row.get(1)?;
                let sums = Sums::from_row(&row, 2)?;
                let (total, series) = groups
                    .entry(name)
                    .or_insert_with(|| (Sums::default(), vec![0; count]));
                total.add(&sums);
                if let Some(slot) = usize::try_from(index).ok().and_then(|i| series.get_mut(i)) {
                    *slot += non_negative(sums.requests);
                }
            }
            Ok(())
        })?;
        let mut total = Sums::default();
        let mut rows: Vec<BreakdownRow> = groups
            .into_iter()
            .map(|(group, (sums, series))| {
                total.add(&sums);
                BreakdownRow {
                    group,
                    summary: Summary::new(&sums, None, None),
                    series,
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            b.summary
                .requests
                .cmp(&a.summary.requests)
                .then_with(|| a.group.cmp(&b.group))
        });
        Ok(Breakdown {
            by: group_by,
            since: window.since,
            until: window.until,
            bucket_seconds: window.bucket.as_secs(),
            rows,
            total: Summary::new(&total, None, None),
        })
    }

    /// Totals per access key of the requests since `since` (requests without a key left out):
    /// from the hourly rollup when `since` is a whole hour (a UTC day or month start), else
    /// from the rows.
    pub fn key_totals(&self, since: SystemTime) -> Result<HashMap<String, Totals>, Error> {
        let since = to_micros(since);
        let sql = if since % HOUR_US == 0 {
            format!(
                "SELECT access_key, {sums} FROM usage_hour WHERE hour >= $1 / {HOUR_US} \
                 AND access_key != '' GROUP BY 1",
                sums = *SUMMED_COLUMNS
            )
        } else {
            format!(
                "SELECT access_key, {ROW_SUMS} FROM usage \
                 WHERE time >= $1 AND access_key IS NOT NULL GROUP BY 1"
            )
        };
        self.read(HashMap::new(), |tx| {
            tx.query(&sql, &[&since])?
                .iter()
                .map(|row| Ok((row.get::<String>(0)?, totals(&Sums::from_row(row, 1)?))))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        chrono::DateTime::parse_from_rfc3339(text).unwrap().into()
    }

    #[test]
    fn windows_end_on_whole_minutes_and_hours() {
        let now = at("2026-01-31T12:34:56.789Z");
        let overview = Span::Day.overview_window(now);
        assert_eq!(rfc3339(overview.until), "2026-01-31T12:35:00.000000Z");
        assert_eq!(rfc3339(overview.since), "2026-01-30T12:35:00.000000Z");
        assert_eq!(overview.buckets(), 96);
        assert_eq!(Span::Month.overview_window(now).buckets(), 120);
        assert_eq!(Span::Hour.overview_window(now).buckets(), 60);
        let breakdown = Span::Week.breakdown_window(now);
        assert_eq!(rfc3339(breakdown.until), "2026-01-31T13:00:00.000000Z");
        assert_eq!(breakdown.buckets(), 28);
        assert_eq!(Span::Hour.breakdown_window(now).buckets(), 12);
        assert_eq!(Span::Month.breakdown_window(now).buckets(), 30);
        assert_eq!(Span::parse("7d"), Ok(Span::Week));
        assert!(Span::parse("2d").unwrap_err().contains("1h, 24h"));
    }
}
