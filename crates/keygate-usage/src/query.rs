//! Reading the ledger: totals grouped by key, model, provider, day or hour, and the event log.
//! A [`Reader`] has its own connection, so `keygate usage` works without a running gateway and a
//! running gateway's writer never waits for a report.

use std::time::{Duration, SystemTime};

use keygate_store::{Backend, Database, Location, Param, Row, ToParam, Tx};
use serde::{Serialize, Serializer};

use crate::cost::usd;
use crate::dashboard::StoredEvent;
use crate::error::Error;
use crate::event::{UsageEvent, UsageSource};
use crate::rollup::{Sums, ROW_SUMS};
use crate::schema::{self, COMPONENT};
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

    /// The SQL expression of the group label (dates are the one thing the dialects spell
    /// differently).
    fn expression(self, backend: Backend) -> &'static str {
        match (self, backend) {
            (GroupBy::Key, _) => "COALESCE(access_key, '(none)')",
            (GroupBy::Model, _) => "model",
            (GroupBy::Provider, _) => "provider",
            (GroupBy::Day, Backend::Sqlite) => {
                "strftime('%Y-%m-%d', time / 1000000, 'unixepoch')"
            }
            (GroupBy::Day, Backend::Postgres) => {
                "to_char(to_timestamp(time / 1000000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
            }
            (GroupBy::Hour, Backend::Sqlite) => {
                "strftime('%Y-%m-%dT%H:00Z', time / 1000000, 'unixepoch')"
            }
            (GroupBy::Hour, Backend::Postgres) => {
                "to_char(to_timestamp(time / 1000000) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:00\"Z\"')"
            }
        }
    }

    /// Time groups in time order; the others busiest first. Sorted here rather than in SQL, where
    /// PostgreSQL would order the labels by the database's collation.
    fn sort(self, rows: &mut [TotalRow]) {
        match self {
            GroupBy::Day | GroupBy::Hour => rows.sort_by(|a, b| a.group.cmp(&b.group)),
            GroupBy::Key | GroupBy::Model | GroupBy::Provider => rows.sort_by(|a, b| {
                b.totals
                    .requests
                    .cmp(&a.totals.requests)
                    .then_with(|| a.group.cmp(&b.group))
            }),
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
    /// The `WHERE` clause (empty or with a leading space) and its parameters, `$1` onwards.
    fn filter(&self) -> (String, Vec<Arg<'_>>) {
        let mut conditions = Vec::new();
        let mut values: Vec<Arg<'_>> = Vec::new();
        let mut add = |column: &str, operator: &str, value| {
            values.push(value);
            conditions.push(format!("{column} {operator} ${}", values.len()));
        };
        if let Some(since) = self.since {
            add("time", ">=", Arg::Integer(to_micros(since)));
        }
        if let Some(until) = self.until {
            add("time", "<", Arg::Integer(to_micros(until)));
        }
        if let Some(key) = &self.access_key {
            add("access_key", "=", Arg::Text(key));
        }
        if let Some(model) = &self.model {
            add("model", "=", Arg::Text(model));
        }
        if let Some(status) = self.status {
            add("status", ">=", Arg::Integer(status.min.into()));
            add("status", "<=", Arg::Integer(status.max.into()));
        }
        let clause = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        (clause, values)
    }
}

/// A parameter of a statement built at run time.
enum Arg<'a> {
    Integer(i64),
    Text(&'a str),
}

impl ToParam for Arg<'_> {
    fn to_param(&self) -> Param<'_> {
        match *self {
            Arg::Integer(v) => Param::Integer(v),
            Arg::Text(v) => Param::Text(v),
        }
    }
}

fn params<'a>(args: &'a [Arg<'_>]) -> Vec<&'a dyn ToParam> {
    args.iter().map(|arg| arg as &dyn ToParam).collect()
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

/// Reads the ledger. A missing SQLite file, or a database no gateway has written yet, reads as
/// empty. Its calls block (run them off async workers) and take turns on its one connection.
pub struct Reader {
    /// `None` when there is nothing to read yet.
    db: Option<Database>,
    /// The rows carry attempts (schema version 2 and later).
    has_tried: bool,
}

impl Reader {
    /// Opens the ledger at `location` for reading (`keygate usage`): it never migrates the
    /// ledger's tables (a file an older keygate wrote is read as it is), and a missing SQLite file
    /// stays missing.
    pub fn open(location: &Location) -> Result<Reader, Error> {
        if let Location::Sqlite(path) = location {
            if !path.is_file() {
                return Ok(Reader {
                    db: None,
                    has_tried: false,
                });
            }
        }
        Self::with_database(Database::open_at(location.clone())?)
    }

    /// Reads through `db`.
    pub(crate) fn with_database(db: Database) -> Result<Reader, Error> {
        let version = schema::readable_version(&db)?;
        Ok(Reader {
            db: (version > 0).then_some(db),
            has_tried: schema::has_tried(version),
        })
    }

    /// Runs `f` in one snapshot of the ledger, or returns `empty` when there is none yet.
    pub(crate) fn read<T>(
        &self,
        empty: T,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        match &self.db {
            Some(db) => db.read(COMPONENT.name, |tx, _| f(tx)),
            None => Ok(empty),
        }
    }

    /// The totals of the rows `query` selects, one row per group.
    pub fn totals(&self, query: &Query) -> Result<Vec<TotalRow>, Error> {
        let (filter, args) = query.filter();
        let mut rows = self.read(Vec::new(), |tx| {
            let sql = format!(
                "SELECT {group}, {ROW_SUMS} FROM usage{filter} GROUP BY 1",
                group = query.group_by.expression(tx.backend()),
            );
            tx.query(&sql, &params(&args))?
                .iter()
                .map(|row| {
                    Ok(TotalRow {
                        group: row.get(0)?,
                        totals: totals(&Sums::from_row(row, 1)?),
                    })
                })
                .collect()
        })?;
        query.group_by.sort(&mut rows);
        Ok(rows)
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
        let (filter, mut args) = query.filter();
        args.push(Arg::Integer(limit.min(MAX_EVENTS).into()));
        args.push(Arg::Integer(i64::try_from(offset).unwrap_or(i64::MAX)));
        let sql = format!(
            "SELECT {EVENT_COLUMNS}, {} FROM usage{filter} ORDER BY time DESC, id DESC \
             LIMIT ${} OFFSET ${}",
            self.tried_column(),
            args.len() - 1,
            args.len()
        );
        self.read(Vec::new(), |tx| {
            tx.query(&sql, &params(&args))?
                .iter()
                .map(stored_event)
                .collect()
        })
    }

    /// The event of row `id`, if there is one.
    pub fn event(&self, id: i64) -> Result<Option<StoredEvent>, Error> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS}, {} FROM usage WHERE id = $1",
            self.tried_column()
        );
        self.read(None, |tx| {
            tx.query_opt(&sql, &[&id])?
                .as_ref()
                .map(stored_event)
                .transpose()
        })
    }

    /// The attempts column, or NULL in a ledger written before there was one.
    fn tried_column(&self) -> &'static str {
        if self.has_tried {
            "tried"
        } else {
            "NULL"
        }
    }
}

/// The columns [`stored_event`] reads, but the last: `tried`, which files of schema version 1
/// lack (their rows read without attempts).
const EVENT_COLUMNS: &str = "id, time, request_id, access_key, provider, model, status, \
    input_tokens, output_tokens, cached_tokens, reasoning_tokens, usage_source, cost_micros, \
    latency_us, ttft_us, attempts, error";

/// A row of [`EVENT_COLUMNS`] and `tried`.
fn stored_event(row: &Row) -> Result<StoredEvent, Error> {
    let tried: Option<String> = row.get(17)?;
    let source: String = row.get(11)?;
    Ok(StoredEvent {
        id: row.get(0)?,
        event: UsageEvent {
            time: from_micros(row.get(1)?),
            request_id: row.get(2)?,
            access_key: row.get(3)?,
            provider: row.get(4)?,
            model: row.get(5)?,
            status: narrow(row, 6)?,
            input_tokens: count(row, 7)?,
            output_tokens: count(row, 8)?,
            cached_tokens: count(row, 9)?,
            reasoning_tokens: count(row, 10)?,
            usage_source: UsageSource::parse(&source)
                .ok_or_else(|| Error::Stored(format!("unknown usage source '{source}'")))?,
            cost_micros: row.get::<Option<i64>>(12)?.map(non_negative),
            latency: micros_duration(row.get(13)?),
            time_to_first_token: row.get::<Option<i64>>(14)?.map(micros_duration),
            attempts: narrow(row, 15)?,
            error: row.get(16)?,
            // Written by this crate; a value it cannot read shows no attempts.
            tried: tried
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or_default(),
        },
    })
}

/// Column `index` as a narrower integer (a status, a count of attempts).
fn narrow<T: TryFrom<i64>>(row: &Row, index: usize) -> Result<T, Error> {
    let value: i64 = row.get(index)?;
    T::try_from(value)
        .map_err(|_| Error::Stored(format!("column {index}: {value} is out of range")))
}

/// A count or sum column (stored integers are signed; ours never go below zero).
fn count(row: &Row, index: usize) -> Result<u64, Error> {
    Ok(non_negative(row.get(index)?))
}

pub(crate) fn non_negative(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn micros_duration(micros: i64) -> Duration {
    Duration::from_micros(non_negative(micros))
}

/// Sums as a report shows them.
pub(crate) fn totals(sums: &Sums) -> Totals {
    Totals {
        requests: non_negative(sums.requests),
        errors: non_negative(sums.errors),
        input_tokens: non_negative(sums.input_tokens),
        output_tokens: non_negative(sums.output_tokens),
        cached_tokens: non_negative(sums.cached_tokens),
        reasoning_tokens: non_negative(sums.reasoning_tokens),
        estimated_requests: non_negative(sums.estimated_requests),
        unpriced_requests: non_negative(sums.unpriced_requests),
        cost_micros: non_negative(sums.cost_micros),
    }
}
