//! Rollups: the ledger's rows summed per minute (with latency and time-to-first-token
//! histograms: `usage_minute`) and per hour, access key, provider and model (`usage_hour`).
//! The writer keeps them in the same transaction as the rows they sum, so they always agree;
//! the dashboard's reports read them instead of the rows (a 30-day overview reads at most
//! 43,200 minute rows, however many requests the ledger holds).

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use crate::hist::Sparse;

pub(crate) const MINUTE_US: i64 = 60_000_000;
pub(crate) const HOUR_US: i64 = 3_600_000_000;
/// Rows the rebuild sums before writing what it has.
const REBUILD_FLUSH: usize = 200_000;

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

    /// Reads the 12 sum columns starting at `first`.
    pub(crate) fn from_row(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Sums> {
        let get = |i: usize| -> rusqlite::Result<i64> {
            Ok(row.get::<_, Option<i64>>(first + i)?.unwrap_or(0))
        };
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

    /// Adds these sums to the tables (inside the caller's transaction) and empties them.
    pub(crate) fn write(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let additive = SUM_COLUMNS
            .split(", ")
            .map(|c| format!("{c} = {c} + excluded.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        {
            let mut read = conn.prepare_cached(
                "SELECT latency_hist, ttft_hist FROM usage_minute WHERE minute = ?1",
            )?;
            let mut upsert = conn.prepare_cached(&format!(
                "INSERT INTO usage_minute (minute, {SUM_COLUMNS}, latency_hist, ttft_hist) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
                 ON CONFLICT (minute) DO UPDATE SET {additive}, \
                 latency_hist = excluded.latency_hist, ttft_hist = excluded.ttft_hist"
            ))?;
            for (minute, mut new) in self.minutes.drain() {
                let stored: Option<(Vec<u8>, Vec<u8>)> = read
                    .query_row([minute], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()?;
                if let Some((latency, ttft)) = stored {
                    new.latency.merge_encoded(&latency);
                    new.ttft.merge_encoded(&ttft);
                }
                let v = new.sums.values();
                upsert.execute(params![
                    minute,
                    v[0],
                    v[1],
                    v[2],
                    v[3],
                    v[4],
                    v[5],
                    v[6],
                    v[7],
                    v[8],
                    v[9],
                    v[10],
                    v[11],
                    new.latency.encode(),
                    new.ttft.encode()
                ])?;
            }
        }
        let mut upsert = conn.prepare_cached(&format!(
            "INSERT INTO usage_hour (hour, access_key, provider, model, {SUM_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) \
             ON CONFLICT (hour, access_key, provider, model) DO UPDATE SET {additive}"
        ))?;
        for ((hour, key, provider, model), sums) in self.hours.drain() {
            let v = sums.values();
            upsert.execute(params![
                hour, key, provider, model, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8],
                v[9], v[10], v[11]
            ])?;
        }
        Ok(())
    }
}

/// Sums every row of the ledger into empty rollup tables: the migration that adds them runs
/// it once, so a ledger written before them reports the same.
pub(crate) fn rebuild(conn: &Connection) -> rusqlite::Result<()> {
    let mut rollups = Rollups::default();
    let mut pending = 0;
    let mut statement = conn.prepare(
        "SELECT time, access_key, provider, model, status, input_tokens, output_tokens, \
         cached_tokens, reasoning_tokens, usage_source, cost_micros, latency_us, ttft_us \
         FROM usage",
    )?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let access_key: Option<String> = row.get(1)?;
        let provider: String = row.get(2)?;
        let model: String = row.get(3)?;
        let source: String = row.get(9)?;
        rollups.add(&Facts {
            time_us: row.get(0)?,
            access_key: access_key.as_deref(),
            provider: &provider,
            model: &model,
            status: row.get(4)?,
            input_tokens: row.get(5)?,
            output_tokens: row.get(6)?,
            cached_tokens: row.get(7)?,
            reasoning_tokens: row.get(8)?,
            estimated: source == "estimated",
            cost_micros: row.get(10)?,
            latency_us: row.get(11)?,
            ttft_us: row.get(12)?,
        });
        pending += 1;
        if pending == REBUILD_FLUSH {
            rollups.write(conn)?;
            pending = 0;
        }
    }
    rollups.write(conn)
}

/// Deletes the rollup rows wholly before `cutoff_us` (the retention sweep's cutoff): a minute
/// or hour the cutoff falls in keeps its sums.
pub(crate) fn sweep(conn: &Connection, cutoff_us: i64) -> rusqlite::Result<usize> {
    let minutes = conn.execute(
        "DELETE FROM usage_minute WHERE minute < ?1",
        [cutoff_us.div_euclid(MINUTE_US)],
    )?;
    let hours = conn.execute(
        "DELETE FROM usage_hour WHERE hour < ?1",
        [cutoff_us.div_euclid(HOUR_US)],
    )?;
    Ok(minutes + hours)
}
