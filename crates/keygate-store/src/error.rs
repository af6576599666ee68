//! [`Error`]: what a database operation can fail with.

use std::path::PathBuf;

/// A database error. Messages never hold a password: connection strings are shown redacted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `--database` value is not a location this build understands.
    #[error("invalid database location {location}: {why}")]
    Location { location: String, why: String },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the database change feed thread: {0}")]
    FeedThread(std::io::Error),
    #[error("cannot set up TLS for PostgreSQL: {0}")]
    Tls(String),
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {}", with_causes(.0))]
    Postgres(#[from] postgres::Error),
    /// The database was migrated by a newer keygate: its tables may not mean what this binary thinks.
    #[error(
        "the database's {component} schema is at version {found}, newer than this keygate knows \
         ({supported}): upgrade keygate"
    )]
    SchemaTooNew {
        component: String,
        found: i64,
        supported: i64,
    },
    /// The database lacks steps this binary needs and migrations were not to be applied (`keygate serve
    /// --no-migrate`): run `keygate migrate` first.
    #[error(
        "the database's {component} schema is at version {found}, this keygate needs {expected}: \
         run `keygate migrate`"
    )]
    SchemaTooOld {
        component: String,
        found: i64,
        expected: i64,
    },
    /// A column held a value of another type than the caller read it as.
    #[error("column {index}: expected {expected}, found {found}")]
    Column {
        index: usize,
        expected: &'static str,
        found: &'static str,
    },
    /// A statement's parameters do not match the values given (a programming error).
    #[error("statement parameters: {0}")]
    Parameters(String),
    /// The connection to the PostgreSQL server is gone (it is opened again on the next call).
    #[error("the connection to PostgreSQL closed")]
    Closed,
    /// A query that must return a row returned none.
    #[error("the query returned no row")]
    NoRow,
}

impl Error {
    /// Whether a UNIQUE or PRIMARY KEY constraint refused the write (a duplicate name or id), on either
    /// backend, so the stores can report the duplicate by name.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Error::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            ),
            Error::Postgres(e) => e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION),
            _ => false,
        }
    }

    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

/// The client's error followed by its causes (its own message is only the kind, such as "db error"). A
/// server error shows its severity, message and code but not its DETAIL, which can quote the row's values
/// (a duplicate key's).
fn with_causes(err: &postgres::Error) -> String {
    let mut text = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(current) = cause {
        text.push_str(": ");
        match current.downcast_ref::<postgres::error::DbError>() {
            Some(db) => text.push_str(&format!(
                "{}: {} (SQLSTATE {})",
                db.severity(),
                db.message(),
                db.code().code()
            )),
            None => text.push_str(&current.to_string()),
        }
        cause = current.source();
    }
    text
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
