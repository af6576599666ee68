//! Versioned schema migrations, per component.
//!
//! Each component (`secrets`, `keys`, `ip-policies`, `usage`, ...) owns its tables and an append-only list
//! of [`Step`]s: step `n` takes it from version `n` to `n + 1`. Applied steps are recorded in
//! `store_migrations`, one row per step, so a database tells which binary shaped it. A database whose
//! component is newer than the binary's steps is refused ([`Error::SchemaTooNew`]): its tables may not mean
//! what this binary thinks.

use crate::error::{Error, Result};
use crate::location::Backend;
use crate::tx::Tx;

/// One migration step: the SQL (several statements allowed) for each backend.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    sqlite: &'static str,
    postgres: &'static str,
}

impl Step {
    /// A step whose SQL is the same on both backends.
    pub const fn same(sql: &'static str) -> Self {
        Self {
            sqlite: sql,
            postgres: sql,
        }
    }

    /// A step whose SQL differs (column types such as `BLOB` / `BYTEA`, autoincrement keys, indexes).
    pub const fn per_backend(sqlite: &'static str, postgres: &'static str) -> Self {
        Self { sqlite, postgres }
    }

    fn sql(&self, backend: Backend) -> &'static str {
        match backend {
            Backend::Sqlite => self.sqlite,
            Backend::Postgres => self.postgres,
        }
    }
}

/// A named set of tables with its migration steps. Steps are only ever appended.
#[derive(Debug, Clone, Copy)]
pub struct Component {
    /// Unique per database; also the change feed's name for it. Lowercase letters, digits and `-`.
    pub name: &'static str,
    pub steps: &'static [Step],
}

impl Component {
    /// The version this binary brings the component to.
    pub fn version(&self) -> i64 {
        self.steps.len() as i64
    }
}

/// What [`crate::Database::migrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    pub from: i64,
    pub to: i64,
}

/// The store's own bookkeeping: the change counters of every component.
pub(crate) const STORE: Component = Component {
    name: "store",
    steps: &[Step::same(
        "CREATE TABLE store_generations (
            component  TEXT PRIMARY KEY,
            generation BIGINT NOT NULL
        );",
    )],
};

/// Created before anything else (it records every other step), so it cannot be a step itself.
const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS store_migrations (
    component  TEXT NOT NULL,
    version    BIGINT NOT NULL,
    applied_at TEXT NOT NULL,
    PRIMARY KEY (component, version)
);";

/// The version of `component` recorded in the database (0 when none).
pub(crate) fn recorded_version(tx: &mut Tx<'_>, component: &str) -> Result<i64> {
    tx.query_one(
        "SELECT COALESCE(MAX(version), 0) FROM store_migrations WHERE component = $1",
        &[&component],
    )?
    .get(0)
}

/// Applies the steps of `component` the database lacks, in order, inside the caller's transaction (which
/// holds the database's migration lock).
pub(crate) fn apply(tx: &mut Tx<'_>, component: &Component) -> Result<Migrated> {
    check_name(component.name)?;
    tx.batch(MIGRATIONS_TABLE)?;
    let from = recorded_version(tx, component.name)?;
    let to = component.version();
    if from > to {
        return Err(Error::SchemaTooNew {
            component: component.name.to_owned(),
            found: from,
            supported: to,
        });
    }
    let applied_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let backend = tx.backend();
    for (index, step) in component.steps.iter().enumerate().skip(from as usize) {
        tx.batch(step.sql(backend))?;
        tx.execute(
            "INSERT INTO store_migrations (component, version, applied_at) VALUES ($1, $2, $3)",
            &[&component.name, &(index as i64 + 1), &applied_at],
        )?;
    }
    if from < to {
        tracing::info!(
            component = component.name,
            from,
            to,
            "database schema migrated"
        );
    }
    Ok(Migrated { from, to })
}

/// Checks that the database is at exactly `component`'s version, applying nothing.
pub(crate) fn require(tx: &mut Tx<'_>, component: &Component) -> Result<()> {
    check_name(component.name)?;
    // `store_migrations` exists: opening a `Database` migrates the store's own tables.
    let found = recorded_version(tx, component.name)?;
    let expected = component.version();
    match found.cmp(&expected) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less => Err(Error::SchemaTooOld {
            component: component.name.to_owned(),
            found,
            expected,
        }),
        std::cmp::Ordering::Greater => Err(Error::SchemaTooNew {
            component: component.name.to_owned(),
            found,
            supported: expected,
        }),
    }
}

/// Records steps `1..=version` of `component` as applied, without running them, when the database records
/// none of its steps: for tables a binary from before this layer created, whose own version bookkeeping
/// (`PRAGMA user_version`, a table of its own) the caller has read. A database that already records the
/// component is left alone, so adopting twice is harmless.
pub(crate) fn adopt(tx: &mut Tx<'_>, component: &Component, version: i64) -> Result<bool> {
    check_name(component.name)?;
    if version > component.version() {
        return Err(Error::SchemaTooNew {
            component: component.name.to_owned(),
            found: version,
            supported: component.version(),
        });
    }
    tx.batch(MIGRATIONS_TABLE)?;
    if version <= 0 || recorded_version(tx, component.name)? > 0 {
        return Ok(false);
    }
    let applied_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for step in 1..=version {
        tx.execute(
            "INSERT INTO store_migrations (component, version, applied_at) VALUES ($1, $2, $3)",
            &[&component.name, &step, &applied_at],
        )?;
    }
    tracing::info!(
        component = component.name,
        version,
        "existing tables adopted into the migration record"
    );
    Ok(true)
}

/// Component names travel in change notifications (`NAME:GENERATION`) and log lines: keep them plain.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if plain {
        Ok(())
    } else {
        Err(Error::Parameters(format!(
            "component name {name:?}: use lowercase letters, digits and `-`"
        )))
    }
}
