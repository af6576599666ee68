//! The SQLite file: location, connection settings and schema.

use std::fs::{DirBuilder, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{
    Connection, ErrorCode, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};

use crate::error::{Result, StoreError};
use crate::store::ip_policies;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "keygate.db";
/// How long a statement waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// The core schema's migration steps; step `n` takes `PRAGMA user_version` from `n` to `n + 1`.
const STEPS: &[&str] = &[
    "
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
",
    // Other crates keep their own tables in this file, each versioned here under its component name.
    "
CREATE TABLE schema_components (
    name    TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
",
];
/// Schema version written to `PRAGMA user_version` once every step has run.
const SCHEMA_VERSION: i64 = STEPS.len() as i64;

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
        migrate(&conn, dir)?;
        migrate_component(&conn, dir, ip_policies::COMPONENT, ip_policies::STEPS)
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

/// Brings the core schema up to date; concurrent openers serialise on the write lock.
fn migrate(conn: &Connection, dir: &Path) -> Result<()> {
    if schema_version(conn)? == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let found = schema_version(&tx)?;
    check_version(found, dir)?;
    run_steps(&tx, found, STEPS)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

/// Runs `steps[from..]`.
fn run_steps(tx: &Transaction<'_>, from: i64, steps: &[&str]) -> Result<()> {
    let from = usize::try_from(from).unwrap_or(0);
    for step in &steps[from.min(steps.len())..] {
        tx.execute_batch(step)?;
    }
    Ok(())
}

/// Brings the tables of `component` up to date: `steps[n]` takes its version from `n` to `n + 1`. A version
/// newer than `steps` knows is refused ([`StoreError::UnsupportedComponent`]).
pub(crate) fn migrate_component(
    conn: &Connection,
    dir: &Path,
    component: &str,
    steps: &[&str],
) -> Result<()> {
    let supported = steps.len() as i64;
    let version = |conn: &Connection| -> Result<i64> {
        let found = conn
            .prepare_cached("SELECT version FROM schema_components WHERE name = ?1")?
            .query_row([component], |row| row.get(0))
            .optional()?;
        let found = found.unwrap_or(0);
        if found > supported {
            return Err(StoreError::UnsupportedComponent {
                dir: dir.to_path_buf(),
                component: component.to_owned(),
                found,
                supported,
            });
        }
        Ok(found)
    };
    if version(conn)? == supported {
        return Ok(());
    }
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let found = version(&tx)?;
    run_steps(&tx, found, steps)?;
    tx.execute(
        "INSERT INTO schema_components (name, version) VALUES (?1, ?2) \
         ON CONFLICT (name) DO UPDATE SET version = excluded.version",
        (component, supported),
    )?;
    tx.commit()?;
    Ok(())
}
