//! The ledger's error type.

/// Everything that can go wrong opening, writing or reading the ledger.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database refused, could not be reached, or is newer than this keygate.
    #[error("usage ledger: {0}")]
    Store(#[from] keygate_store::Error),
    #[error("cannot start the usage ledger writer: {0}")]
    Thread(std::io::Error),
    /// A report asked for something it cannot give (the message says what).
    #[error("{0}")]
    Invalid(String),
    /// A row holds a value this keygate does not write (the message says which).
    #[error("usage ledger: {0}")]
    Stored(String),
}
