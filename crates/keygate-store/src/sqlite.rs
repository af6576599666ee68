//! The SQLite backend: opening the file, binding [`Param`]s to `$N` placeholders, reading rows.

use std::fs::{DirBuilder, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::error::{Error, Result};
use crate::value::{Param, Row, ToParam, Value};

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// Opens (creating when needed, with its directory at mode 0700 and the file at 0600) the database file at
/// `path`, in WAL mode so readers never wait for the writer.
pub(crate) fn open(path: &Path) -> Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io("cannot create the database directory", dir, e))?;
    }
    // Created here so it is private; SQLite gives its -wal and -shm files the same mode.
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io("cannot create the database", path, e)),
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "secure_delete", true)?;
    // Several processes switching a brand-new file to WAL at once get SQLITE_BUSY without the busy
    // handler being asked: retry.
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => break other?,
        }
    }
    Ok(conn)
}

/// Prepares `sql` (cached) and binds `params` to its `$1`, `$2`, ... placeholders by name, so a
/// placeholder may appear twice or out of order, as in PostgreSQL.
fn bind<'c>(
    conn: &'c Connection,
    sql: &str,
    params: &[&dyn ToParam],
) -> Result<rusqlite::CachedStatement<'c>> {
    let mut stmt = conn.prepare_cached(sql)?;
    if stmt.parameter_count() != params.len() {
        return Err(Error::Parameters(format!(
            "{} given, the statement has {} (placeholders are $1, $2, ...)",
            params.len(),
            stmt.parameter_count()
        )));
    }
    for (i, param) in params.iter().enumerate() {
        let position = i + 1;
        // SQLite numbers parameters by first appearance, so `$N` is usually parameter N: reading one
        // name is cheap, where looking a name up scans every parameter (and a ledger batch binds
        // thousands).
        let index = if names_position(stmt.parameter_name(position), position) {
            position
        } else {
            let name = format!("${position}");
            stmt.parameter_index(&name)?
                .ok_or_else(|| Error::Parameters(format!("{name} is not in the statement")))?
        };
        stmt.raw_bind_parameter(index, param.to_param())?;
    }
    Ok(stmt)
}

/// Whether a parameter's `name` is the placeholder `$position`.
fn names_position(name: Option<&str>, position: usize) -> bool {
    name.and_then(|name| name.strip_prefix('$'))
        .and_then(|digits| digits.parse::<usize>().ok())
        == Some(position)
}

pub(crate) fn execute(conn: &Connection, sql: &str, params: &[&dyn ToParam]) -> Result<u64> {
    let changed = bind(conn, sql, params)?.raw_execute()?;
    Ok(changed as u64)
}

pub(crate) fn query(conn: &Connection, sql: &str, params: &[&dyn ToParam]) -> Result<Vec<Row>> {
    let mut stmt = bind(conn, sql, params)?;
    let columns = stmt.column_count();
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let values = (0..columns)
            .map(|i| row.get_ref(i).map(value))
            .collect::<rusqlite::Result<_>>()?;
        out.push(Row(values));
    }
    Ok(out)
}

fn value(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(v) => Value::Integer(v),
        ValueRef::Real(v) => Value::Real(v),
        ValueRef::Text(v) => Value::Text(String::from_utf8_lossy(v).into_owned()),
        ValueRef::Blob(v) => Value::Blob(v.to_vec()),
    }
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Param::Null => ValueRef::Null,
            Param::Integer(v) => ValueRef::Integer(v),
            Param::Real(v) => ValueRef::Real(v),
            Param::Text(v) => ValueRef::Text(v.as_bytes()),
            Param::Blob(v) => ValueRef::Blob(v),
        }))
    }
}
