//! Reading the ledger: totals grouped by key, model, provider, day or hour, and the event log.
//! A [`Reader`] has its own read-only connection, so `keygate usage` works without a running
//! gateway and a running gateway's writer never waits for a report.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OptionalExtension, Row};
use serde::{Serialize, Serializer};

use crate::cost::usd;
use crate::dashboard::StoredEvent;
use crate::error::Error;
use crate::event::UsageEvent;
use crate::schema;
use crate::time::{from_micros, rfc3339, to_micros};

/// The most events one [`Reader::events`] call returns.
pub const MAX_EVENTS: u32 = 1_000;

/// What a report groups rows by. Days and hours are UTC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// The access key id; `(none)` for requests made without one.
    #[default]
    Key,
    Model,
    Provider,
    /// `2026-01-31`
    Day,
    /// `2026-01-31T13:00Z`
    Hour,
}

impl GroupBy {
    /// The name used on the command line, in query parameters and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Key => "key",
            GroupBy::Model => "model",
            GroupBy::Provider => "provider",
            GroupBy::Day => "day",
            GroupBy::Hour => "hour",
        }
    }

    /// The SQL expression of the group label.
    fn expression(self) -> &'static str {
        match self {
            GroupBy::Key => "COALESCE(access_key, '(none)')",
            GroupBy::Model => "model",
            GroupBy::Provider => "provider",
            GroupBy::Day => "strftime('%Y-%m-%d', time / 1000000, 'unixepoch')",
            GroupBy::Hour => "strftime('%Y-%m-%dT%H:00Z', time / 1000000, 'unixepoch')",
        }
    }

    /// Time groups read in time order; the others busiest first.
    fn order(self) -> &'static str {
        match self {
            GroupBy::Day | GroupBy::Hour => "1",
            GroupBy::Key | GroupBy::Model | GroupBy::Provider => "2 DESC, 1",
        }
    }
}

/// Statuses `min..=max` (one status, or a class such as 4xx).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    pub min: u16,
    pub max: u16,
}

/// Which rows a report or the event log covers, and how a report groups them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    pub group_by: GroupBy,
    /// Requests that arrived at or after this time.
    pub since: Option<SystemTime>,
    /// Requests that arrived before this time.
    pub until: Option<SystemTime>,
    pub access_key: Option<String>,
    pub model: Option<String>,
    pub status: Option<StatusRange>,
}

impl Query {
    /// The `WHERE` clause (empty or with a leading space) and its parameters.
    fn filter(&self) -> (String, Vec<Value>) {
        let mut conditions = Vec::new();
        let mut values = Vec::new();
        let mut add = |condition: &'static str, value: Value| {
            conditions.push(condition);
            values.push(value);
        };
        if let Some(since) = self.since {
            add("time >= ?", Value::Integer(to_micros(since)));
        }
        if let Some(until) = self.until {
            add("time < ?", Value::Integer(to_micros(until)));
        }
        if let Some(key) = &self.access_key {
            add("access_key = ?", Value::Text(key.clone()));
        }
        if let Some(model) = &self.model {
            add("model = ?", Value::Text(model.clone()));
        }
        if let Some(status) = self.status {
            add("status >= ?", Value::Integer(status.min.into()));
            add("status <= ?", Value::Integer(status.max.into()));
        }
        let clause = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        (clause, values)
    }
}

/// Sums over a set of requests. Costs are summed in integer micro-USD.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    /// Requests answered with status 400 or above.
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    /// Requests whose tokens Keygate estimated.
    pub estimated_requests: u64,
    /// Requests that used tokens of models without a price: their cost is not in
    /// `cost_micros`.
    pub unpriced_requests: u64,
    pub cost_micros: u64,
}

impl Totals {
    /// Adds `other` to these totals.
    pub fn add(&mut self, other: &Totals) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cached_tokens += other.cached_tokens;
        self.reasoning_tokens += other.reasoning_tokens;
        self.estimated_requests += other.estimated_requests;
        self.unpriced_requests += other.unpriced_requests;
        self.cost_micros += other.cost_micros;
    }

    /// The cost in USD, for display.
    pub fn cost_usd(&self) -> f64 {
        usd(self.cost_micros)
    }
}

/// The JSON of [`Totals`]: its fields and, for display, `cost_usd`.
#[derive(Serialize)]
struct TotalsJson {
    requests: u64,
    errors: u64,
    input_tokens: u64,
    output_tokens: u64,
    cached_tokens: u64,
    reasoning_tokens: u64,
    estimated_requests: u64,
    unpriced_requests: u64,
    cost_micros: u64,
    cost_usd: f64,
}

impl Serialize for Totals {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        TotalsJson {
            requests: self.requests,
            errors: self.errors,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cached_tokens: self.cached_tokens,
            reasoning_tokens: self.reasoning_tokens,
            estimated_requests: self.estimated_requests,
            unpriced_requests: self.unpriced_requests,
            cost_micros: self.cost_micros,
            cost_usd: self.cost_usd(),
        }
        .serialize(serializer)
    }
}

/// The totals of one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TotalRow {
    pub group: String,
    #[serde(flatten)]
    pub totals: Totals,
}

/// A usage report: what `keygate usage --json` prints and `GET /v1/usage` answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub group_by: GroupBy,
    #[serde(serialize_with = "optional_time")]
    pub since: Option<SystemTime>,
    #[serde(serialize_with = "optional_time")]
    pub until: Option<SystemTime>,
    pub rows: Vec<TotalRow>,
    /// The sum of the rows.
    pub total: Totals,
}

fn optional_time<S: Serializer>(
    time: &Option<SystemTime>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    time.map(rfc3339).serialize(serializer)
}

/// Reads a ledger file. A missing file, or one no gateway has written yet, reads as empty.
pub struct Reader {
    conn: Option<Connection>,
    /// The file's rows carry attempts (schema version 2 and later).
    has_tried: bool,
}

impl Reader {
    /// Opens the ledger at `path` read-only.
    pub fn open(path: &Path) -> Result<Reader, Error> {
        let conn = schema::open_read_only(path)?;
        let has_tried = match &conn {
            Some(conn) => {
                conn.pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0))? >= 2
            }
            None => false,
        };
        Ok(Reader { conn, has_tried })
    }

    /// The totals of the rows `query` selects, one row per group.
    pub fn totals(&self, query: &Query) -> Result<Vec<TotalRow>, Error> {
        let Some(conn) = &self.conn else {
            return Ok(Vec::new());
        };
        let (filter, values) = query.filter();
        let sql = format!(
            "SELECT {group}, COUNT(*), SUM(status >= 400), SUM(input_tokens), SUM(output_tokens), \
             SUM(cached_tokens), SUM(reasoning_tokens), SUM(usage_source = 'estimated'), \
             COUNT(*) - COUNT(cost_micros), COALESCE(SUM(cost_micros), 0) \
             FROM usage{filter} GROUP BY 1 ORDER BY {order}",
            group = query.group_by.expression(),
            order = query.group_by.order(),
        );
        let mut statement = conn.prepare(&sql)?;
        let rows = statement.query_map(params_from_iter(values), |row| {
            Ok(TotalRow {
                group: row.get(0)?,
                totals: Totals {
                    requests: count(row, 1)?,
                    errors: count(row, 2)?,
                    input_tokens: count(row, 3)?,
                    output_tokens: count(row, 4)?,
                    cached_tokens: count(row, 5)?,
                    reasoning_tokens: count(row, 6)?,
                    estimated_requests: count(row, 7)?,
                    unpriced_requests: count(row, 8)?,
                    cost_micros: count(row, 9)?,
                },
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The report of `query`: its rows and their sum.
    pub fn report(&self, query: &Query) -> Result<Report, Error> {
        let rows = self.totals(query)?;
        let mut total = Totals::default();
        for row in &rows {
            total.add(&row.totals);
        }
        Ok(Report {
            group_by: query.group_by,
            since: query.since,
            until: query.until,
            rows,
            total,
        })
    }

    /// The events `query` selects, newest first: at most `limit` (capped at [`MAX_EVENTS`]),
    /// after skipping `offset`. `group_by` plays no part.
    pub fn events(&self, query: &Query, limit: u32, offset: u64) -> Result<Vec<UsageEvent>, Error> {
        Ok(self
            .stored_events(query, limit, offset)?
            .into_iter()
            .map(|stored| stored.event)
            .collect())
    }

    /// As [`Reader::events`], each with its row id (for [`Reader::event`]).
    pub fn stored_events(
        &self,
        query: &Query,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<StoredEvent>, Error> {
        let Some(conn) = &self.conn else {
            return Ok(Vec::new());
        };
        let (filter, mut values) = query.filter();
        values.push(Value::Integer(limit.min(MAX_EVENTS).into()));
        values.push(Value::Integer(i64::try_from(offset).unwrap_or(i64::MAX)));
        let sql = format!(
            "SELECT {}, {} FROM usage{filter} ORDER BY time DESC, id DESC LIMIT ? OFFSET ?",
            EVENT_COLUMNS,
            self.tried_column()
        );
        let mut statement = conn.prepare(&sql)?;
        let events = statement.query_map(params_from_iter(values), stored_event)?;
        Ok(events.collect::<Result<_, _>>()?)
    }

    /// The event of row `id`, if there is one.
    pub fn event(&self, id: i64) -> Result<Option<StoredEvent>, Error> {
        let Some(conn) = &self.conn else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT {EVENT_COLUMNS}, {} FROM usage WHERE id = ?",
            self.tried_column()
        );
        Ok(conn.query_row(&sql, [id], stored_event).optional()?)
    }

    /// The attempts column, or NULL in a file written before there was one.
    fn tried_column(&self) -> &'static str {
        if self.has_tried {
            "tried"
        } else {
            "NULL"
        }
    }

    /// The connection, when the file has a schema.
    pub(crate) fn conn(&self) -> Option<&Connection> {
        self.conn.as_ref()
    }
}

/// The columns [`stored_event`] reads, but the last: `tried`, which files of schema version 1
/// lack (their rows read without attempts).
const EVENT_COLUMNS: &str = "id, time, request_id, access_key, provider, model, status, \
    input_tokens, output_tokens, cached_tokens, reasoning_tokens, usage_source, cost_micros, \
    latency_us, ttft_us, attempts, error";

/// A row of [`EVENT_COLUMNS`] and `tried`.
fn stored_event(row: &Row<'_>) -> rusqlite::Result<StoredEvent> {
    let tried: Option<String> = row.get(17)?;
    Ok(StoredEvent {
        id: row.get(0)?,
        event: UsageEvent {
            time: from_micros(row.get(1)?),
            request_id: row.get(2)?,
            access_key: row.get(3)?,
            provider: row.get(4)?,
            model: row.get(5)?,
            status: row.get(6)?,
            input_tokens: count(row, 7)?,
            output_tokens: count(row, 8)?,
            cached_tokens: count(row, 9)?,
            reasoning_tokens: count(row, 10)?,
            usage_source: row.get(11)?,
            cost_micros: row.get::<_, Option<i64>>(12)?.map(non_negative),
            latency: micros_duration(row.get(13)?),
            time_to_first_token: row.get::<_, Option<i64>>(14)?.map(micros_duration),
            attempts: row.get(15)?,
            error: row.get(16)?,
            // Written by this crate; a value it cannot read shows no attempts.
            tried: tried
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or_default(),
        },
    })
}

/// A count or sum column (SQLite integers are signed; ours never go below zero).
pub(crate) fn count(row: &Row<'_>, index: usize) -> rusqlite::Result<u64> {
    Ok(non_negative(row.get(index)?))
}

pub(crate) fn non_negative(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn micros_duration(micros: i64) -> Duration {
    Duration::from_micros(non_negative(micros))
}
