//! [`Tx`]: the statements a [`crate::Database`] transaction runs, on either backend.
//!
//! SQL is written once, for both engines: placeholders are `$1`, `$2`, ... (bound by name on SQLite, so
//! they may repeat or come out of order); the portable subset covers the stores' needs (`INSERT ...
//! ON CONFLICT ... DO UPDATE`, `RETURNING`, `COALESCE`, joins). Where the dialects differ, branch on
//! [`Tx::backend`].

use crate::error::{Error, Result};
use crate::location::Backend;
use crate::postgres::PgTx;
use crate::value::{Row, ToParam};

/// An open transaction: committed when the closure given to [`crate::Database::write`] or
/// [`crate::Database::read`] returns `Ok`, rolled back when it returns `Err` (or panics).
pub struct Tx<'a> {
    inner: Inner<'a>,
}

enum Inner<'a> {
    Sqlite(&'a rusqlite::Connection),
    Postgres(&'a mut (dyn PgTx + 'a)),
}

impl<'a> Tx<'a> {
    pub(crate) fn sqlite(conn: &'a rusqlite::Connection) -> Self {
        Self {
            inner: Inner::Sqlite(conn),
        }
    }

    pub(crate) fn postgres(tx: &'a mut (dyn PgTx + 'a)) -> Self {
        Self {
            inner: Inner::Postgres(tx),
        }
    }

    /// The engine, for the rare statement that must differ.
    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Sqlite(_) => Backend::Sqlite,
            Inner::Postgres(_) => Backend::Postgres,
        }
    }

    /// Runs one statement; returns how many rows it changed.
    pub fn execute(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<u64> {
        match &mut self.inner {
            Inner::Sqlite(conn) => crate::sqlite::execute(conn, sql, params),
            Inner::Postgres(tx) => tx.execute(sql, params),
        }
    }

    /// Runs one query; returns all its rows.
    pub fn query(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<Vec<Row>> {
        match &mut self.inner {
            Inner::Sqlite(conn) => crate::sqlite::query(conn, sql, params),
            Inner::Postgres(tx) => tx.query(sql, params),
        }
    }

    /// The first row of a query, if any.
    pub fn query_opt(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The first row of a query that must return one ([`Error::NoRow`] otherwise).
    pub fn query_one(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<Row> {
        self.query_opt(sql, params)?.ok_or(Error::NoRow)
    }

    /// Prepares `sql` once for many runs ([`Prepared::execute`]): a batch's rows. SQLite maps its
    /// placeholders once instead of on every run; PostgreSQL parses it once (each run is then one
    /// round trip, where [`Tx::execute`] takes two).
    pub fn prepare(&mut self, sql: &str) -> Result<Prepared<'_>> {
        let inner = match &mut self.inner {
            Inner::Sqlite(conn) => PreparedInner::Sqlite(crate::sqlite::Prepared::new(conn, sql)?),
            Inner::Postgres(tx) => {
                let statement = tx.prepare(sql)?;
                PreparedInner::Postgres {
                    tx: &mut **tx,
                    statement,
                }
            }
        };
        Ok(Prepared { inner })
    }

    /// Runs several statements without parameters (migration steps).
    pub(crate) fn batch(&mut self, sql: &str) -> Result<()> {
        match &mut self.inner {
            Inner::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            Inner::Postgres(tx) => tx.batch(sql),
        }
    }
}

/// A statement of a [`Tx`] prepared for many runs ([`Tx::prepare`]).
pub struct Prepared<'t> {
    inner: PreparedInner<'t>,
}

enum PreparedInner<'t> {
    Sqlite(crate::sqlite::Prepared<'t>),
    Postgres {
        tx: &'t mut (dyn PgTx + 't),
        statement: postgres::Statement,
    },
}

impl Prepared<'_> {
    /// Runs the statement with `params`; returns how many rows it changed.
    pub fn execute(&mut self, params: &[&dyn ToParam]) -> Result<u64> {
        match &mut self.inner {
            PreparedInner::Sqlite(prepared) => prepared.execute(params),
            PreparedInner::Postgres { tx, statement } => tx.execute_prepared(statement, params),
        }
    }
}
