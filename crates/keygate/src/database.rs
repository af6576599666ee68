//! `--database`: where the stores live, for every command that opens them.

use std::path::Path;

use keygate_store::Location;

/// Help text shared by the commands taking `--database`.
pub const HELP: &str = "The store of vaults, secrets, access keys, IP policies and the usage ledger: \
    postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=require for one store shared by many instances, or \
    sqlite:PATH [default: DATA_DIR/keygate.db, and DATA_DIR/usage.db for the ledger]";

/// Parses a `--database` value (see [`Location::parse`]); the error never shows a password.
pub fn parse(value: &str) -> Result<Location, String> {
    Location::parse(value).map_err(|err| err.to_string())
}

/// The database `--database` names, else the data directory's SQLite file.
pub fn location(data_dir: &Path, database: Option<&Location>) -> Location {
    database
        .cloned()
        .unwrap_or_else(|| Location::Sqlite(data_dir.join(keygate_secrets::DB_FILE)))
}
