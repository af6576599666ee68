//! The usage ledger: one row per AI request, and the reports over it. It is component `usage` of
//! the store layer (`keygate_store`): with SQLite in a file of its own (`usage.db` in the data
//! directory), with PostgreSQL in the same database as the other stores ([`location`]).
//!
//! The gateway holds a [`Ledger`]: [`Ledger::record`] never blocks and does no I/O (a bounded
//! queue; a full one drops and counts), and a writer thread commits in batches and deletes rows
//! past the retention period. A [`Reader`] answers `keygate usage` and `GET /v1/usage`, which
//! share the parameter forms of [`QueryParams`] and the JSON of [`Report`], and the dashboard. It knows nothing of the server, the policy engine or the LLM domain: the server
//! builds each [`UsageEvent`].

mod cost;
mod dashboard;
mod error;
mod event;
mod hist;
mod ledger;
mod params;
mod query;
mod rollup;
mod rows;
mod schema;
mod time;
mod writer;

pub use cost::cost_micros;
pub use dashboard::{
    Breakdown, BreakdownRow, Overview, OverviewBucket, Span, StoredEvent, Summary, Window,
};
pub use error::Error;
pub use event::{Attempt, AttemptOutcome, UsageEvent, UsageSource};
pub use ledger::{Ledger, LedgerConfig};
pub use params::{
    parse_duration, parse_group_by, parse_status, parse_time, ParamError, QueryParams,
    DEFAULT_SINCE,
};
pub use query::{GroupBy, Query, Reader, Report, StatusRange, TotalRow, Totals, MAX_EVENTS};
pub use schema::{default_location, location, migrate, DB_FILE};
pub use time::rfc3339;

#[cfg(test)]
mod tests;
