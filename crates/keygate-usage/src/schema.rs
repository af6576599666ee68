//! The ledger's SQLite file: creating it, connection settings and the schema's steps.

use std::fs::{DirBuilder, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use crate::error::Error;

/// The ledger's file name in the data directory.
pub const DB_FILE: &str = "usage.db";
/// How long a statement waits for another connection's lock (another gateway on the same data
/// directory, or a checkpoint) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// Step `n` takes `PRAGMA user_version` from `n` to `n + 1`; steps only ever get appended.
pub(crate) const STEPS: &[&str] = &[
    "
CREATE TABLE usage (
    id               INTEGER PRIMARY KEY,
    time             INTEGER NOT NULL,  -- microseconds since the Unix epoch (UTC): request arrival
    request_id       TEXT NOT NULL,
    access_key       TEXT,              -- access key id (aigk_...), never a token
    provider         TEXT NOT NULL,
    model            TEXT NOT NULL,
    status           INTEGER NOT NULL,
    input_tokens     INTEGER NOT NULL,
    output_tokens    INTEGER NOT NULL,
    cached_tokens    INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    usage_source     TEXT NOT NULL CHECK (usage_source IN ('provider', 'estimated')),
    cost_micros      INTEGER,           -- micro-USD; NULL when the model has no price
    latency_us       INTEGER NOT NULL,
    ttft_us          INTEGER,
    attempts         INTEGER NOT NULL,
    error            TEXT
);
CREATE INDEX usage_time ON usage (time);
CREATE INDEX usage_key_time ON usage (access_key, time);
",
    "
-- The attempts of each request (JSON: provider, model, redacted key, outcome, status, error,
-- timings), and the rollups the dashboard reads (see rollup.rs); `rollup::rebuild` fills them
-- from the rows already there.
ALTER TABLE usage ADD COLUMN tried TEXT;
CREATE INDEX usage_model_time ON usage (model, time);
CREATE TABLE usage_minute (
    minute             INTEGER PRIMARY KEY,  -- minutes since the Unix epoch (UTC)
    requests           INTEGER NOT NULL,
    errors             INTEGER NOT NULL,
    input_tokens       INTEGER NOT NULL,
    output_tokens      INTEGER NOT NULL,
    cached_tokens      INTEGER NOT NULL,
    reasoning_tokens   INTEGER NOT NULL,
    estimated_requests INTEGER NOT NULL,
    unpriced_requests  INTEGER NOT NULL,
    cost_micros        INTEGER NOT NULL,
    latency_us         INTEGER NOT NULL,  -- sum
    ttft_requests      INTEGER NOT NULL,
    ttft_us            INTEGER NOT NULL,  -- sum
    latency_hist       BLOB NOT NULL,     -- hist.rs
    ttft_hist          BLOB NOT NULL
);
CREATE TABLE usage_hour (
    hour               INTEGER NOT NULL,  -- hours since the Unix epoch (UTC)
    access_key         TEXT NOT NULL,     -- '' for requests without one
    provider           TEXT NOT NULL,
    model              TEXT NOT NULL,
    requests           INTEGER NOT NULL,
    errors             INTEGER NOT NULL,
    input_tokens       INTEGER NOT NULL,
    output_tokens      INTEGER NOT NULL,
    cached_tokens      INTEGER NOT NULL,
    reasoning_tokens   INTEGER NOT NULL,
    estimated_requests INTEGER NOT NULL,
    unpriced_requests  INTEGER NOT NULL,
    cost_micros        INTEGER NOT NULL,
    latency_us         INTEGER NOT NULL,
    ttft_requests      INTEGER NOT NULL,
    ttft_us            INTEGER NOT NULL,
    PRIMARY KEY (hour, access_key, provider, model)
) WITHOUT ROWID;
",
];
/// The step that added the rollup tables: migrating across it sums the existing rows into them.
const ROLLUP_STEP: i64 = 1;
/// The schema version once every step has run.
const VERSION: i64 = STEPS.len() as i64;

/// Opens the ledger for writing, creating its directory (0700), the file (0600) and the schema
/// as needed.
pub(crate) fn open_read_write(path: &Path) -> Result<Connection, Error> {
    let create_error = |source| Error::Create {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(create_error)?;
    }
    // Created here so it is private; SQLite gives its -wal and -shm files the same mode.
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(err) if err.kind() == ErrorKind::AlreadyExists => {}
        Err(err) => return Err(create_error(err)),
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL: readers (`keygate usage`, `/v1/usage`) never wait for the writer. NORMAL: a commit
    // survives the process (a SIGKILL, a crash) without an fsync per batch; only a power loss
    // may take the last batches with it.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    until_not_busy(|| conn.pragma_update(None, "journal_mode", "WAL"))?;
    migrate(&conn, path)?;
    Ok(conn)
}

/// Opens an existing ledger for reading; `None` when there is no file or no schema yet (no
/// gateway has written to it).
pub(crate) fn open_read_only(path: &Path) -> Result<Option<Connection>, Error> {
    if !path.is_file() {
        return Ok(None);
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    match version(&conn)? {
        0 => Ok(None),
        found => check_version(found, path).map(|()| Some(conn)),
    }
}

fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

fn check_version(found: i64, path: &Path) -> Result<(), Error> {
    if found > VERSION {
        return Err(Error::UnsupportedSchema {
            path: path.to_owned(),
            found,
            supported: VERSION,
        });
    }
    Ok(())
}

/// Runs the missing steps in one transaction; concurrent openers serialise on its write lock.
fn migrate(conn: &Connection, path: &Path) -> Result<(), Error> {
    if version(conn)? == VERSION {
        return Ok(());
    }
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let found = version(&tx)?;
    check_version(found, path)?;
    for step in &STEPS[usize::try_from(found).unwrap_or(0)..] {
        tx.execute_batch(step)?;
    }
    if found <= ROLLUP_STEP {
        crate::rollup::rebuild(&tx)?;
    }
    tx.pragma_update(None, "user_version", VERSION)?;
    tx.commit()?;
    Ok(())
}

/// Switching a new file to WAL needs an exclusive lock that SQLite does not wait for through its
/// busy handler: when two gateways create the file at the same moment, the second retries.
fn until_not_busy(mut step: impl FnMut() -> rusqlite::Result<()>) -> rusqlite::Result<()> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match step() {
            Err(rusqlite::Error::SqliteFailure(err, _))
                if err.code == ErrorCode::DatabaseBusy && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}
