//! The database under Keygate's stores: one SQLite file (the default) or a PostgreSQL database shared by
//! many instances, behind one API.
//!
//! - [`Database::open`] takes the `--database` value: `postgres://...`, `sqlite:PATH` or a data directory.
//! - [`Database::migrate`] applies a [`Component`]'s versioned [`Step`]s (SQL per backend where the
//!   dialects differ), refusing a database newer than the binary.
//! - [`Database::write`] / [`Database::read`] run a closure in a transaction ([`Tx`]); a write bumps its
//!   component's generation in the same transaction.
//! - [`Database::subscribe`] follows a component's generation across processes and instances (PostgreSQL
//!   `LISTEN`/`NOTIFY`, SQLite polling), so caches reload off the request path.
//!
//! Values are encrypted by the stores above, never here: the database only sees ciphertext.

mod db;
mod error;
mod feed;
mod location;
mod marker;
mod migrate;
mod postgres;
mod sqlite;
mod tx;
mod value;

pub use db::Database;
pub use error::{Error, Result};
pub use location::{Backend, Location, DB_FILE};
pub use migrate::{Component, Migrated, Step};
pub use tx::{Prepared, Tx};
pub use value::{FromValue, Param, Row, ToParam, Value};
