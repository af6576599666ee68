//! The SQLite file: location, connection settings and schema.

use std::fs::{DirBuilder, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};

use crate::error::{Result, StoreError};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "keygate.db";
/// Schema version written to `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;
/// How long a statement waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

const SCHEMA: &str = "
CREATE TABLE meta (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    generation      INTEGER NOT NULL,
    key_check_nonce BLOB,
    key_check       BLOB
);
INSERT INTO meta (id, generation) VALUES (1, 0);
CREATE TABLE vaults (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE TABLE secrets (
    id          TEXT PRIMARY KEY,
    vault_id    TEXT NOT NULL REFERENCES vaults (id),
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    key_nonce   BLOB NOT NULL,
    wrapped_key BLOB NOT NULL,
    value_nonce BLOB NOT NULL,
    ciphertext  BLOB NOT NULL,
    UNIQUE (vault_id, name)
);
PRAGMA user_version = 1;
";

/// Opens (creating when needed) the data directory (mode 0700), the database file (mode 0600) and the schema.
pub(crate) fn open_read_write(dir: &Path) -> Result<Connection> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| StoreError::io("cannot create data directory", dir, e))?;
    let path = dir.join(DB_FILE);
    // Create the file ourselves so it is private; SQLite gives its -wal and -shm files the same mode.
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(StoreError::io("cannot create database", &path, e)),
    }
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "secure_delete", true)?;
    retry_while_busy(|| {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        migrate(&conn, dir)
    })?;
    Ok(conn)
}

/// Runs `step` again while SQLite reports the database busy without waiting on its busy handler, which
/// happens when several processes switch a brand-new database to WAL mode at the same moment.
fn retry_while_busy(mut step: impl FnMut() -> Result<()>) -> Result<()> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match step() {
            Err(StoreError::Db(rusqlite::Error::SqliteFailure(e, _)))
                if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// Opens an existing database without writing anything; [`StoreError::NotInitialized`] when there is none.
pub(crate) fn open_read_only(dir: &Path) -> Result<Connection> {
    let path = dir.join(DB_FILE);
    if !path.is_file() {
        return Err(StoreError::NotInitialized(dir.to_path_buf()));
    }
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    match schema_version(&conn)? {
        0 => Err(StoreError::NotInitialized(dir.to_path_buf())),
        v => check_version(v, dir),
    }?;
    Ok(conn)
}

fn schema_version(conn: &Connection) -> Result<i64> {
    Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
}

fn check_version(found: i64, dir: &Path) -> Result<()> {
    if found > SCHEMA_VERSION {
        return Err(StoreError::UnsupportedSchema {
            dir: dir.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// Creates the schema in a fresh database; concurrent openers serialise on the write lock.
fn migrate(conn: &Connection, dir: &Path) -> Result<()> {
    if schema_version(conn)? == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    match schema_version(&tx)? {
        0 => tx.execute_batch(SCHEMA)?,
        v => check_version(v, dir)?,
    }
    tx.commit()?;
    Ok(())
}
