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
    check_count(&stmt, params.len())?;
    for (i, param) in params.iter().enumerate() {
        let index = index_of(&stmt, i + 1)?;
        stmt.raw_bind_parameter(index, param.to_param())?;
    }
    Ok(stmt)
}

fn check_count(stmt: &rusqlite::Statement<'_>, given: usize) -> Result<()> {
    if stmt.parameter_count() == given {
        return Ok(());
    }
    Err(Error::Parameters(format!(
        "{given} given, the statement has {} (placeholders are $1, $2, ...)",
        stmt.parameter_count()
    )))
}

/// The parameter index of placeholder `$position`. SQLite numbers parameters by first appearance, so
/// `$N` is usually parameter N: reading one name is cheap, where looking a name up scans every
/// parameter.
fn index_of(stmt: &rusqlite::Statement<'_>, position: usize) -> Result<usize> {
    let in_place = stmt
        .parameter_name(position)
        .and_then(|name| name.strip_prefix('$'))
        .and_then(|digits| digits.parse::<usize>().ok())
        == Some(position);
    if in_place {
        return Ok(position);
    }
    let name = format!("${position}");
    stmt.parameter_index(&name)?
        .ok_or_else(|| Error::Parameters(format!("{name} is not in the statement")))
}

/// A statement prepared once for many runs: its placeholders are mapped once, not on every run.
pub(crate) struct Prepared<'c> {
    stmt: rusqlite::CachedStatement<'c>,
    /// The parameter index of `$1`, `$2`, ...
    indexes: Vec<usize>,
}

impl<'c> Prepared<'c> {
    pub(crate) fn new(conn: &'c Connection, sql: &str) -> Result<Self> {
        let stmt = conn.prepare_cached(sql)?;
        let indexes = (1..=stmt.parameter_count())
            .map(|position| index_of(&stmt, position))
            .collect::<Result<_>>()?;
        Ok(Self { stmt, indexes })
    }

    pub(crate) fn execute(&mut self, params: &[&dyn ToParam]) -> Result<u64> {
        check_count(&self.stmt, params.len())?;
        for (param, &index) in params.iter().zip(&self.indexes) {
            self.stmt.raw_bind_parameter(index, param.to_param())?;
        }
        Ok(self.stmt.raw_execute()? as u64)
    }
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
