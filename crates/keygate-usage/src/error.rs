//! The ledger's error type. Messages name the file involved.

use std::path::PathBuf;

/// Everything that can go wrong opening, writing or reading the ledger.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file or its directory could not be created.
    #[error("cannot create the usage ledger {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("usage ledger: {0}")]
    Db(#[from] rusqlite::Error),
    /// The file was written by a newer Keygate.
    #[error("the usage ledger {path} has schema version {found}, newer than this keygate supports ({supported})")]
    UnsupportedSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("cannot start the usage ledger writer: {0}")]
    Thread(std::io::Error),
    /// A report asked for something it cannot give (the message says what).
    #[error("{0}")]
    Invalid(String),
}
