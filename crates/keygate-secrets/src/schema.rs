//! The vaults-and-secrets tables (component `secrets`), and the adoption of a data directory created
//! before the store recorded migrations.

use keygate_store::{Backend, Component, Database, Step, Tx};

use crate::error::Result;

/// File name of the SQLite database inside the data directory.
pub const DB_FILE: &str = keygate_store::DB_FILE;

/// Vaults, secrets and the master key check. Step 1 is what data directories created before the
/// migration record hold (their `PRAGMA user_version` 1 or 2, see [`adopt_existing`]); its `meta` table
/// there also has a `generation` column no code reads any more.
pub(crate) const SECRETS: Component = Component {
    name: "secrets",
    steps: &[
        Step::per_backend(
            "
CREATE TABLE meta (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    key_check_nonce BLOB,
    key_check       BLOB
);
INSERT INTO meta (id) VALUES (1);
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
            "
CREATE TABLE meta (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    key_check_nonce BYTEA,
    key_check       BYTEA
);
INSERT INTO meta (id) VALUES (1);
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
    key_nonce   BYTEA NOT NULL,
    wrapped_key BYTEA NOT NULL,
    value_nonce BYTEA NOT NULL,
    ciphertext  BYTEA NOT NULL,
    UNIQUE (vault_id, name)
);
",
        ),
        // Creation order, for listings ("oldest first") on both engines: see `next_seq`.
        Step::per_backend(
            "
ALTER TABLE vaults ADD COLUMN seq BIGINT;
UPDATE vaults SET seq = rowid;
ALTER TABLE secrets ADD COLUMN seq BIGINT;
UPDATE secrets SET seq = rowid;
",
            "
ALTER TABLE vaults ADD COLUMN seq BIGINT;
ALTER TABLE secrets ADD COLUMN seq BIGINT;
",
        ),
    ],
};

/// The SQL for the next creation-order number of `table` (its `seq` column): safe without a sequence
/// because every write runs under its component's lock (`Database::write`).
pub fn next_seq(table: &str) -> String {
    format!("(SELECT COALESCE(MAX(seq), 0) + 1 FROM {table})")
}

/// What opening a store does about its tables' versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Migrations {
    /// Apply the missing steps (adopting the tables an older keygate created in a SQLite data
    /// directory, so their steps are recorded, not run again).
    #[default]
    Apply,
    /// Apply nothing: refuse a database that is not exactly at this binary's versions (`keygate serve
    /// --no-migrate`, for deployments that run `keygate migrate` in a release step).
    Require,
}

/// Brings `component` to this binary's version, or checks it is there, as `migrations` says.
pub(crate) fn prepare(db: &Database, component: &Component, migrations: Migrations) -> Result<()> {
    match migrations {
        Migrations::Apply => {
            adopt_existing(db, component)?;
            db.migrate(component)?;
        }
        Migrations::Require => db.require(component)?,
    }
    Ok(())
}

/// Records the version an older keygate left `component` at: for `secrets`, `PRAGMA user_version` (its
/// two steps then are step 1 here); for the other components, their row in `schema_components`.
fn adopt_existing(db: &Database, component: &Component) -> Result<()> {
    if db.backend() != Backend::Sqlite || db.schema_version(component.name)? > 0 {
        return Ok(());
    }
    let version = db.read(component.name, |tx, _| legacy_version(tx, component.name))?;
    if version > 0 {
        db.adopt(component, version)?;
    }
    Ok(())
}

fn legacy_version(tx: &mut Tx<'_>, component: &str) -> Result<i64, keygate_store::Error> {
    let has_table = |tx: &mut Tx<'_>, name: &str| -> Result<bool, keygate_store::Error> {
        Ok(tx
            .query_opt(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = $1",
                &[&name],
            )?
            .is_some())
    };
    if component == SECRETS.name {
        if !has_table(tx, "meta")? {
            return Ok(0);
        }
        let user_version: i64 = tx
            .query_one("SELECT user_version FROM pragma_user_version", &[])?
            .get(0)?;
        return Ok(user_version.min(1));
    }
    if !has_table(tx, "schema_components")? {
        return Ok(0);
    }
    tx.query_opt(
        "SELECT version FROM schema_components WHERE name = $1",
        &[&component],
    )?
    .map_or(Ok(0), |row| row.get(0))
}
