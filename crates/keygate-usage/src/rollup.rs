//! Rollups: the ledger's rows summed per minute (with latency and time-to-first-token
//! histograms: `usage_minute`) and per hour, access key, provider and model (`usage_hour`).
//! The writer keeps them in the same transaction as the rows they sum, so they always agree;
//! the dashboard's reports read them instead of the rows (a 30-day overview reads at most
//! 43,200 minute rows, however many requests the ledger holds).

use std::collections::HashMap;
use std::sync::LazyLock;

use keygate_store::{Result, Row, ToParam, Tx};
use tracing::info;

use crate::hist::Sparse;
use crate::rows::MultiRow;

pub(crate) const MINUTE_US: i64 = 60_000_000;
pub(crate) const HOUR_US: i64 = 3_600_000_000;
/// Rows the rebuild reads (and sums) at a time.
const REBUILD_PAGE: i64 = 100_000;

/// The facts of one row that the rollups sum.
pub(crate) struct Facts<'a> {
    pub time_us: i64,
    pub access_key: Option<&'a str>,
    pub provider: &'a str,
    pub model: &'a str,
    pub status: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_tokens: i64,
    pub reasoning_tokens: i64,
    pub estimated: bool,
    pub cost_micros: Option<i64>,
    pub latency_us: i64,
    pub ttft_us: Option<i64>,
}

/// Sums over a set of rows, as the rollup tables store them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sums {
    pub requests: i64,
    pub errors: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_tokens: i64,
    pub reasoning_tokens: i64,
    pub estimated_requests: i64,
    pub unpriced_requests: i64,
    pub cost_micros: i64,
    pub latency_us: i64,
    pub ttft_requests: i64,
    pub ttft_us: i64,
}

/// The sum columns, in [`Sums`] order (both tables have them).
pub(crate) const SUM_COLUMNS: &str = "requests, errors, input_tokens, output_tokens, \
    cached_tokens, reasoning_tokens, estimated_requests, unpriced_requests, cost_micros, \
    latency_us, ttft_requests, ttft_us";

impl Sums {
    fn add_facts(&mut self, row: &Facts<'_>) {
        self.requests += 1;
        self.errors += i64::from(row.status >= 400);
        self.input_tokens += row.input_tokens;
        self.output_tokens += row.output_tokens;
        self.cached_tokens += row.cached_tokens;
        self.reasoning_tokens += row.reasoning_tokens;
        self.estimated_requests += i64::from(row.estimated);
        match row.cost_micros {
            Some(cost) => self.cost_micros += cost,
            None => self.unpriced_requests += 1,
        }
        self.latency_us += row.latency_us;
        if let Some(ttft) = row.ttft_us {
            self.ttft_requests += 1;
            self.ttft_us += ttft;
        }
    }

    pub(crate) fn add(&mut self, other: &Sums) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cached_tokens += other.cached_tokens;
        self.reasoning_tokens += other.reasoning_tokens;
        self.estimated_requests += other.estimated_requests;
        self.unpriced_requests += other.unpriced_requests;
        self.cost_micros += other.cost_micros;
        self.latency_us += other.latency_us;
        self.ttft_requests += other.ttft_requests;
        self.ttft_us += other.ttft_us;
    }

    fn values(&self) -> [i64; 12] {
        [
            self.requests,
            self.errors,
            self.input_tokens,
            self.output_tokens,
            self.cached_tokens,
            self.reasoning_tokens,
            self.estimated_requests,
            self.unpriced_requests,
            self.cost_micros,
            self.latency_us,
            self.ttft_requests,
            self.ttft_us,
        ]
    }

    /// Reads the 12 sum columns starting at `first` (a NULL sum, of no rows, is 0).
    pub(crate) fn from_row(row: &Row, first: usize) -> Result<Sums> {
        let get = |i: usize| -> Result<i64> { Ok(row.get::<Option<i64>>(first + i)?.unwrap_or(0)) };
        Ok(Sums {
            requests: get(0)?,
            errors: get(1)?,
            input_tokens: get(2)?,
            output_tokens: get(3)?,
            cached_tokens: get(4)?,
            reasoning_tokens: get(5)?,
            estimated_requests: get(6)?,
            unpriced_requests: get(7)?,
            cost_micros: get(8)?,
            latency_us: get(9)?,
            ttft_requests: get(10)?,
            ttft_us: get(11)?,
        })
    }
}

/// `SUM(column)` of every sum column, in [`Sums`] order, as integers on both backends (PostgreSQL
/// sums `BIGINT`s as `numeric`).
pub(crate) static SUMMED_COLUMNS: LazyLock<String> = LazyLock::new(|| {
    SUM_COLUMNS
        .split(", ")
        .map(|c| format!("CAST(SUM({c}) AS BIGINT)"))
        .collect::<Vec<_>>()
        .join(", ")
});

/// The same sums computed from the ledger's rows, in [`Sums`] order.
pub(crate) const ROW_SUMS: &str = "COUNT(*), \
    CAST(SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS BIGINT), \
    CAST(SUM(input_tokens) AS BIGINT), CAST(SUM(output_tokens) AS BIGINT), \
    CAST(SUM(cached_tokens) AS BIGINT), CAST(SUM(reasoning_tokens) AS BIGINT), \
    CAST(SUM(CASE WHEN usage_source = 'estimated' THEN 1 ELSE 0 END) AS BIGINT), \
    COUNT(*) - COUNT(cost_micros), CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT), \
    CAST(SUM(latency_us) AS BIGINT), COUNT(ttft_us), CAST(COALESCE(SUM(ttft_us), 0) AS BIGINT)";

/// `column = table.column + excluded.column` for every sum column.
fn additive(table: &str) -> String {
    SUM_COLUMNS
        .split(", ")
        .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

static MINUTE_UPSERT: LazyLock<MultiRow> = LazyLock::new(|| {
    MultiRow::new(
        format!("INSERT INTO usage_minute (minute, {SUM_COLUMNS}, latency_hist, ttft_hist) "),
        format!(
            " ON CONFLICT (minute) DO UPDATE SET {}, latency_hist = excluded.latency_hist, \
             ttft_hist = excluded.ttft_hist",
            additive("usage_minute")
        ),
        15,
    )
});

static HOUR_UPSERT: LazyLock<MultiRow> = LazyLock::new(|| {
    MultiRow::new(
        format!("INSERT INTO usage_hour (hour, access_key, provider, model, {SUM_COLUMNS}) "),
        format!(
            " ON CONFLICT (hour, access_key, provider, model) DO UPDATE SET {}",
            additive("usage_hour")
        ),
        16,
    )
});

/// One minute's sums and histograms.
#[derive(Default)]
struct Minute {
    sums: Sums,
    latency: Sparse,
    ttft: Sparse,
}

/// Sums of a batch of rows, to add to the tables.
#[derive(Default)]
pub(crate) struct Rollups {
    minutes: HashMap<i64, Minute>,
    hours: HashMap<(i64, String, String, String), Sums>,
}

impl Rollups {
    pub(crate) fn add(&mut self, row: &Facts<'_>) {
        let minute = self
            .minutes
            .entry(row.time_us.div_euclid(MINUTE_US))
            .or_default();
        minute.sums.add_facts(row);
        minute.latency.record(row.latency_us);
        if let Some(ttft) = row.ttft_us {
            minute.ttft.record(ttft);
        }
        let hour = (
            row.time_us.div_euclid(HOUR_US),
            row.access_key.unwrap_or_default().to_owned(),
            row.provider.to_owned(),
            row.model.to_owned(),
        );
        self.hours.entry(hour).or_default().add_facts(row);
    }

    /// Adds these sums to the tables (inside the caller's transaction, which takes turns with
    /// other ledger writes: a minute's histograms are read, merged and written back) and empties
    /// them.
    pub(crate) fn write(&mut self, tx: &mut Tx<'_>) -> Result<()> {
        self.write_minutes(tx)?;
        let hours: Vec<_> = self
            .hours
            .drain()
            .map(|((hour, key, provider, model), sums)| (hour, key, provider, model, sums.values()))
            .collect();
        HOUR_UPSERT.run(tx, &hours, |(hour, key, provider, model, sums), args| {
            args.extend([hour as &dyn ToParam, key, provider, model]);
            args.extend(sums.iter().map(|v| v as &dyn ToParam));
        })
    }

    fn write_minutes(&mut self, tx: &mut Tx<'_>) -> Result<()> {
        let (Some(first), Some(last)) = (
            self.minutes.keys().min().copied(),
            self.minutes.keys().max().copied(),
        ) else {
            return Ok(());
        };
        let stored = tx.query(
            "SELECT minute, latency_hist, ttft_hist FROM usage_minute \
             WHERE minute >= $1 AND minute <= $2",
            &[&first, &last],
        )?;
        for row in stored {
            if let Some(minute) = self.minutes.get_mut(&row.get::<i64>(0)?) {
                minute.latency.merge_encoded(&row.get::<Vec<u8>>(1)?);
                minute.ttft.merge_encoded(&row.get::<Vec<u8>>(2)?);
            }
        }
        let minutes: Vec<_> = self
            .minutes
            .drain()
            .map(|(minute, new)| {
                let encoded = (new.latency.encode(), new.ttft.encode());
                (minute, new.sums.values(), encoded)
            })
            .collect();
        MINUTE_UPSERT.run(tx, &minutes, |(minute, sums, (latency, ttft)), args| {
            args.push(minute);
            args.extend(sums.iter().map(|v| v as &dyn ToParam));
            args.extend([latency as &dyn ToParam, ttft]);
        })
    }
}

/// Sums the ledger's rows into the rollup tables when they are empty while rows exist: what a
/// ledger written before there were rollups needs once (the migration that adds them is SQL only).
/// The rows are only ever written with their rollups, and the retention sweep deletes rollups only
/// before the rows it kept, so this state means the rollups were never built.
pub(crate) fn rebuild_if_missing(tx: &mut Tx<'_>) -> Result<()> {
    let rows = tx.query_opt("SELECT id FROM usage LIMIT 1", &[])?.is_some();
    let rolled_up = tx
        .query_opt("SELECT minute FROM usage_minute LIMIT 1", &[])?
        .is_some();
    if rows && !rolled_up {
        let summed = rebuild(tx)?;
        info!(
            rows = summed,
            "usage ledger: rollups built from the existing rows"
        );
    }
    Ok(())
}

/// Sums every row of the ledger into the rollup tables, a page of rows at a time; returns how many.
fn rebuild(tx: &mut Tx<'_>) -> Result<u64> {
    let mut after = i64::MIN;
    let mut summed = 0;
    loop {
        let page = tx.query(
            "SELECT id, time, access_key, provider, model, status, input_tokens, output_tokens, \
             cached_tokens, reasoning_tokens, usage_source, cost_micros, latency_us, ttft_us \
             FROM usage WHERE id > $1 ORDER BY id LIMIT $2",
            &[&after, &REBUILD_PAGE],
        )?;
        let Some(last) = page.last() else {
            return Ok(summed);
        };
        after = last.get(0)?;
        let mut rollups = Rollups::default();
        for row in &page {
            let access_key: Option<String> = row.get(2)?;
            let provider: String = row.get(3)?;
            let model: String = row.get(4)?;
            rollups.add(&Facts {
                time_us: row.get(1)?,
                access_key: access_key.as_deref(),
                provider: &provider,
                model: &model,
                status: row.get(5)?,
                input_tokens: row.get(6)?,
                output_tokens: row.get(7)?,
                cached_tokens: row.get(8)?,
                reasoning_tokens: row.get(9)?,
                estimated: row.get::<String>(10)? == "estimated",
                cost_micros: row.get(11)?,
                latency_us: row.get(12)?,
                ttft_us: row.get(13)?,
            });
        }
        rollups.write(tx)?;
        summed += page.len() as u64;
    }
}

/// Deletes the rollup rows wholly before `cutoff_us` (the retention sweep's cutoff): a minute
/// or hour the cutoff falls in keeps its sums.
pub(crate) fn sweep(tx: &mut Tx<'_>, cutoff_us: i64) -> Result<u64> {
    let minutes = tx.execute(
        "DELETE FROM usage_minute WHERE minute < $1",
        &[&cutoff_us.div_euclid(MINUTE_US)],
    )?;
    let hours = tx.execute(
        "DELETE FROM usage_hour WHERE hour < $1",
        &[&cutoff_us.div_euclid(HOUR_US)],
    )?;
    Ok(minutes + hours)
}
