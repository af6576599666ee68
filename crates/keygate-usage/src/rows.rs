//! Multi-row statements: on PostgreSQL a batch goes in as `INSERT ... VALUES (...), (...)` in a few
//! statements rather than one per row (each statement is a round trip or two).

use std::fmt::Write;

use keygate_store::{Backend, Result, ToParam, Tx};

/// How many rows one statement writes. On PostgreSQL every statement costs round trips (it is
/// prepared per call), so a batch goes in a few large statements: as many rows as
/// [`POSTGRES_PARAMS`] parameters hold. On SQLite a statement is a function call, and one that
/// writes several rows keeps a statement journal to undo itself halfway (a temporary file written
/// for every page it changes): measured 60 % slower than a row per statement.
fn rows_per_statement(backend: Backend, columns: usize) -> usize {
    match backend {
        Backend::Sqlite => 1,
        Backend::Postgres => (POSTGRES_PARAMS / columns).max(1),
    }
}

/// Parameters per PostgreSQL statement (it allows 65,535; larger statements measured no faster).
const POSTGRES_PARAMS: usize = 8_192;

/// An `INSERT` of many rows: `{head}VALUES (...), (...){tail}`.
pub(crate) struct MultiRow {
    head: String,
    tail: String,
    columns: usize,
    /// The statement for one row, built once (SQLite runs it for every row).
    one_row: String,
}

impl MultiRow {
    /// `head` is `INSERT INTO table (columns) `, `tail` anything after the values (`ON CONFLICT
    /// ...`) or nothing.
    pub(crate) fn new(head: String, tail: String, columns: usize) -> Self {
        let mut statement = Self {
            head,
            tail,
            columns,
            one_row: String::new(),
        };
        statement.one_row = statement.sql(1);
        statement
    }

    /// Runs the statement over `rows`, as many at once as the backend takes well; `params` adds the
    /// `columns` parameters of one row.
    pub(crate) fn run<R>(
        &self,
        tx: &mut Tx<'_>,
        rows: &[R],
        params: impl for<'r> Fn(&'r R, &mut Vec<&'r dyn ToParam>),
    ) -> Result<()> {
        let per_statement = rows_per_statement(tx.backend(), self.columns);
        let mut args = Vec::with_capacity(per_statement * self.columns);
        if per_statement == 1 {
            // Prepared once for the batch: its placeholders are not mapped again for every row.
            let mut one_row = tx.prepare(&self.one_row)?;
            for row in rows {
                args.clear();
                params(row, &mut args);
                one_row.execute(&args)?;
            }
            return Ok(());
        }
        for chunk in rows.chunks(per_statement) {
            args.clear();
            for row in chunk {
                params(row, &mut args);
            }
            debug_assert_eq!(args.len(), chunk.len() * self.columns);
            tx.execute(&self.sql(chunk.len()), &args)?;
        }
        Ok(())
    }

    fn sql(&self, rows: usize) -> String {
        let mut sql =
            String::with_capacity(self.head.len() + self.tail.len() + rows * self.columns * 6);
        sql.push_str(&self.head);
        sql.push_str("VALUES ");
        for row in 0..rows {
            sql.push_str(if row == 0 { "(" } else { ", (" });
            for column in 0..self.columns {
                let separator = if column == 0 { "" } else { ", " };
                let _ = write!(sql, "{separator}${}", row * self.columns + column + 1);
            }
            sql.push(')');
        }
        sql.push_str(&self.tail);
        sql
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_across_rows() {
        let insert = MultiRow::new(
            "INSERT INTO t (a, b) ".into(),
            " ON CONFLICT (a) DO NOTHING".into(),
            2,
        );
        assert_eq!(
            insert.one_row,
            "INSERT INTO t (a, b) VALUES ($1, $2) ON CONFLICT (a) DO NOTHING"
        );
        assert_eq!(
            insert.sql(3),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4), ($5, $6) ON CONFLICT (a) DO NOTHING"
        );
    }
}
