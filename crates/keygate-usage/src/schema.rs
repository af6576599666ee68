//! The ledger's tables: component `usage` of the store layer, its steps per backend, opening the
//! ledger's database (adopting a file an older keygate made), and the version a reader sees.

use std::path::Path;

use keygate_store::{Backend, Component, Database, Location, Migrated, Step, Tx};

use crate::error::Error;

/// The ledger's file name in the data directory (SQLite keeps the ledger in a file of its own, so
/// its writes never wait for the admin stores' and theirs never for the ledger's).
pub const DB_FILE: &str = "usage.db";

/// Step 1 on SQLite, as keygate wrote it before the store layer (adopted files ran it).
pub(crate) const SQLITE_STEP_1: &str = "
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
";

/// Step 2 on SQLite, as keygate wrote it before the store layer.
pub(crate) const SQLITE_STEP_2: &str = "
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
";

/// The ledger's component: step `n` takes it from version `n` to `n + 1`; steps are only ever
/// appended. Times are integer microseconds, histograms bytes (hist.rs).
pub(crate) const COMPONENT: Component = Component {
    name: "usage",
    steps: &[
        Step::per_backend(
            SQLITE_STEP_1,
            "
CREATE TABLE usage (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time             BIGINT NOT NULL,
    request_id       TEXT NOT NULL,
    access_key       TEXT,
    provider         TEXT NOT NULL,
    model            TEXT NOT NULL,
    status           BIGINT NOT NULL,
    input_tokens     BIGINT NOT NULL,
    output_tokens    BIGINT NOT NULL,
    cached_tokens    BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    usage_source     TEXT NOT NULL CHECK (usage_source IN ('provider', 'estimated')),
    cost_micros      BIGINT,
    latency_us       BIGINT NOT NULL,
    ttft_us          BIGINT,
    attempts         BIGINT NOT NULL,
    error            TEXT
);
CREATE INDEX usage_time ON usage (time);
CREATE INDEX usage_key_time ON usage (access_key, time);
",
        ),
        Step::per_backend(
            SQLITE_STEP_2,
            "
ALTER TABLE usage ADD COLUMN tried TEXT;
CREATE INDEX usage_model_time ON usage (model, time);
CREATE TABLE usage_minute (
    minute             BIGINT PRIMARY KEY,
    requests           BIGINT NOT NULL,
    errors             BIGINT NOT NULL,
    input_tokens       BIGINT NOT NULL,
    output_tokens      BIGINT NOT NULL,
    cached_tokens      BIGINT NOT NULL,
    reasoning_tokens   BIGINT NOT NULL,
    estimated_requests BIGINT NOT NULL,
    unpriced_requests  BIGINT NOT NULL,
    cost_micros        BIGINT NOT NULL,
    latency_us         BIGINT NOT NULL,
    ttft_requests      BIGINT NOT NULL,
    ttft_us            BIGINT NOT NULL,
    latency_hist       BYTEA NOT NULL,
    ttft_hist          BYTEA NOT NULL
);
CREATE TABLE usage_hour (
    hour               BIGINT NOT NULL,
    access_key         TEXT NOT NULL,
    provider           TEXT NOT NULL,
    model              TEXT NOT NULL,
    requests           BIGINT NOT NULL,
    errors             BIGINT NOT NULL,
    input_tokens       BIGINT NOT NULL,
    output_tokens      BIGINT NOT NULL,
    cached_tokens      BIGINT NOT NULL,
    reasoning_tokens   BIGINT NOT NULL,
    estimated_requests BIGINT NOT NULL,
    unpriced_requests  BIGINT NOT NULL,
    cost_micros        BIGINT NOT NULL,
    latency_us         BIGINT NOT NULL,
    ttft_requests      BIGINT NOT NULL,
    ttft_us            BIGINT NOT NULL,
    PRIMARY KEY (hour, access_key, provider, model)
);
",
        ),
    ],
};

/// The first version whose rows carry their attempts (`tried`).
const TRIED_VERSION: i64 = 2;
/// PostgreSQL advisory lock every ledger write holds (`kgusage` in ASCII), so the batches of
/// several instances take turns as SQLite's `BEGIN IMMEDIATE` makes them: a minute's histogram is
/// read, merged and written back, which two interleaved batches would lose one side of.
const WRITE_LOCK: i64 = 0x006b_6775_7361_6765;

/// The ledger's location when the stores are at `database`: on PostgreSQL the same database; on
/// SQLite a file of its own in `data_dir` ([`default_location`]).
pub fn location(database: &Location, data_dir: &Path) -> Location {
    match database {
        Location::Postgres(_) => database.clone(),
        Location::Sqlite(_) => default_location(data_dir),
    }
}

/// The ledger's default location: `sqlite:DATA_DIR/usage.db`.
pub fn default_location(data_dir: &Path) -> Location {
    Location::Sqlite(data_dir.join(DB_FILE))
}

/// Opens the ledger's database for writing: adopts a file an older keygate made (its
/// `PRAGMA user_version` becomes the component's recorded version, so no step runs again),
/// applies the missing steps, and fills the rollups when a migration added them to existing rows.
pub(crate) fn open_for_writing(location: &Location) -> Result<(Database, Migrated), Error> {
    let db = Database::open_at(location.clone())?;
    if db.backend() == Backend::Sqlite {
        db.adopt(&COMPONENT, sqlite_user_version(&db)?)?;
    }
    let migrated = db.migrate(&COMPONENT)?;
    write(&db, |tx| {
        crate::rollup::rebuild_if_missing(tx)?;
        if tx.backend() == Backend::Sqlite {
            // An older keygate opening this file again (a rollback) finds the version it knows.
            let version = COMPONENT.version();
            tx.execute(&format!("PRAGMA user_version = {version}"), &[])?;
        }
        Ok(())
    })?;
    Ok((db, migrated))
}

/// Opens the ledger's database for writing without migrating it: refused unless it is exactly at this
/// binary's version (`keygate serve --no-migrate`).
pub(crate) fn open_current(location: &Location) -> Result<Database, Error> {
    let db = Database::open_at(location.clone())?;
    db.require(&COMPONENT)?;
    Ok(db)
}

/// Brings the ledger at `location` up to date as [`crate::Ledger::open`] does first, without
/// starting a writer: for `keygate migrate`.
pub fn migrate(location: &Location) -> Result<Migrated, Error> {
    Ok(open_for_writing(location)?.1)
}

/// The component's version at `db` for a reader, which never migrates: the recorded one, or for a
/// SQLite file no keygate with the store layer has opened yet, its `PRAGMA user_version`. Refuses a
/// version newer than this binary's.
pub(crate) fn readable_version(db: &Database) -> Result<i64, Error> {
    let mut version = db.schema_version(COMPONENT.name)?;
    if version == 0 && db.backend() == Backend::Sqlite {
        version = sqlite_user_version(db)?;
    }
    if version > COMPONENT.version() {
        return Err(keygate_store::Error::SchemaTooNew {
            component: COMPONENT.name.to_owned(),
            found: version,
            supported: COMPONENT.version(),
        }
        .into());
    }
    Ok(version)
}

/// Whether rows of `version` carry their attempts.
pub(crate) fn has_tried(version: i64) -> bool {
    version >= TRIED_VERSION
}

fn sqlite_user_version(db: &Database) -> Result<i64, Error> {
    Ok(db.read(COMPONENT.name, |tx, _| {
        tx.query_one("PRAGMA user_version", &[])?.get(0)
    })?)
}

/// Runs `f` in a ledger write transaction: announced to no cache (nothing follows the ledger's
/// generation) and taking turns with the other instances' ledger writes.
pub(crate) fn write<T>(
    db: &Database,
    f: impl FnOnce(&mut Tx<'_>) -> Result<T, keygate_store::Error>,
) -> Result<T, keygate_store::Error> {
    db.write_unannounced(|tx| {
        if tx.backend() == Backend::Postgres {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
        }
        f(tx)
    })
}
