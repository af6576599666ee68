//! [`Store`]: the vaults and secrets database of one data directory.

pub(crate) mod ip_policies;
mod secrets;
mod vaults;

use std::path::{Path, PathBuf};

use keygate_store::{Database, Location, Tx};
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::crypto::{self, Binding, Sealed};
use crate::error::{Result, StoreError};
use crate::master_key::{MasterKey, MasterKeySource, MASTER_KEY_LEN};
use crate::schema::{self, Migrations, SECRETS};

/// The store of one deployment: the data directory's SQLite file by default, or a shared PostgreSQL
/// database. Metadata operations work without the master key; storing a value and loading values need
/// [`Store::unlock`] first. The master key itself always stays on the gateway's side (a file in the data
/// directory or `KEYGATE_MASTER_KEY`): the database only holds ciphertext.
///
/// Every write runs in a transaction that bumps its component's generation, which the caches
/// ([`crate::Refreshing`]) follow. Several processes and instances may use the same database at once.
#[derive(Debug)]
pub struct Store {
    db: Database,
    dir: PathBuf,
    key: Option<MasterKey>,
    /// What [`Store::migrate_component`] does.
    migrations: Migrations,
}

impl Store {
    /// Opens the store in `data_dir`'s SQLite file, creating the directory (0700), database (0600) and
    /// tables when absent.
    pub fn open(data_dir: &Path) -> Result<Self> {
        Self::open_database(data_dir, &Location::Sqlite(data_dir.join(schema::DB_FILE)))
    }

    /// Opens the store in `database` (a `--database` location), creating or upgrading its tables.
    /// `data_dir` still holds the default master key file.
    pub fn open_database(data_dir: &Path, database: &Location) -> Result<Self> {
        Self::open_database_with(data_dir, database, Migrations::Apply)
    }

    /// [`Store::open_database`], applying migrations or only checking them as `migrations` says (for
    /// its tables, and for the tables of crates built on it, [`Store::migrate_component`]).
    pub fn open_database_with(
        data_dir: &Path,
        database: &Location,
        migrations: Migrations,
    ) -> Result<Self> {
        let mut store = Self::connect(data_dir, database)?;
        store.migrations = migrations;
        store.migrate_component(&SECRETS)?;
        store.migrate_component(&ip_policies::IP_POLICIES)?;
        Ok(store)
    }

    /// Opens an existing store without creating or upgrading its tables (for `keygate policy check`).
    /// [`StoreError::NotInitialized`] when there is no SQLite file, or the database has no vaults table.
    /// The database layer's own bookkeeping tables are still created when absent.
    pub fn open_existing(data_dir: &Path, database: &Location) -> Result<Self> {
        if let Location::Sqlite(path) = database {
            if !path.is_file() {
                return Err(StoreError::NotInitialized(database.to_string()));
            }
        }
        let store = Self::connect(data_dir, database)?;
        if store
            .db
            .read(SECRETS.name, |tx, _| {
                tx.query("SELECT 1 FROM vaults WHERE 1 = 0", &[])
            })
            .is_err()
        {
            return Err(StoreError::NotInitialized(database.to_string()));
        }
        Ok(store)
    }

    fn connect(data_dir: &Path, database: &Location) -> Result<Self> {
        Ok(Self {
            db: Database::open_at(database.clone())?,
            dir: data_dir.to_path_buf(),
            key: None,
            migrations: Migrations::Apply,
        })
    }

    /// Another connection to the same database, locked: for a thread that writes bookkeeping beside a
    /// cache reading through this one.
    pub fn reopen(&self) -> Result<Self> {
        let mut store = Self::connect(&self.dir, self.db.location())?;
        store.migrations = self.migrations;
        Ok(store)
    }

    /// [`Store::open`] followed by [`Store::unlock`].
    pub fn open_unlocked(data_dir: &Path, source: &MasterKeySource) -> Result<Self> {
        let mut store = Self::open(data_dir)?;
        store.unlock(source)?;
        Ok(store)
    }

    /// Loads the master key and checks it against the database's key check, recording the check on
    /// first use. A missing key file is created only while the database holds no key check.
    /// [`StoreError::WrongMasterKey`] when the key is not the database's.
    pub fn unlock(&mut self, source: &MasterKeySource) -> Result<()> {
        let initialised = self
            .db
            .read(SECRETS.name, |tx, _| read_key_check(tx))?
            .is_some();
        let key = source.resolve(&self.dir, !initialised)?;
        self.db.write_unannounced(|tx| -> Result<()> {
            match read_key_check(tx)? {
                Some((nonce, check)) => {
                    if !crypto::verify_key_check(&key, &nonce, &check)? {
                        return Err(StoreError::WrongMasterKey(self.db.location().to_string()));
                    }
                }
                None => {
                    let nonce = crypto::random_nonce()?;
                    let check = crypto::key_check(&key, &nonce)?;
                    tx.execute(
                        "UPDATE meta SET key_check_nonce = $1, key_check = $2 WHERE id = 1",
                        &[&nonce.as_slice(), &check],
                    )?;
                }
            }
            Ok(())
        })?;
        self.key = Some(key);
        Ok(())
    }

    /// The data directory this store keeps its master key file in.
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// The database, for crates that keep their own tables in it ([`Store::migrate_component`]).
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// A counter bumped by every committed write to `component`, from any process or instance.
    pub fn generation(&self, component: &str) -> Result<u64> {
        Ok(self.db.generation(component)?)
    }

    /// Whether vault `vault_name` holds a secret `secret_name`. Needs no master key.
    pub fn secret_exists(&self, vault_name: &str, secret_name: &str) -> Result<bool> {
        self.query(|tx| {
            Ok(tx
                .query_opt(
                    "SELECT 1 FROM secrets s JOIN vaults v ON v.id = s.vault_id \
                     WHERE v.name = $1 AND s.name = $2",
                    &[&vault_name, &secret_name],
                )?
                .is_some())
        })
    }

    pub(crate) fn key(&self) -> Result<&MasterKey> {
        self.key.as_ref().ok_or(StoreError::Locked)
    }

    /// Creates or upgrades the tables another crate keeps in this database (adopting those an older
    /// keygate created in a SQLite data directory), or only checks their version when the store was
    /// opened with [`Migrations::Require`]. A database whose component is newer than this binary is
    /// refused.
    pub fn migrate_component(&self, component: &keygate_store::Component) -> Result<()> {
        schema::prepare(&self.db, component, self.migrations)
    }

    /// Runs `f` in a write transaction that bumps `component`'s generation, so every cache following it
    /// reloads; rolls back when `f` fails.
    pub fn write<T, E: From<keygate_store::Error>>(
        &self,
        component: &str,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.db.write(component, f)
    }

    /// Runs `f` in a write transaction without bumping a generation: for bookkeeping that no cache reads
    /// (such as last-use times), which would otherwise make every cache reload.
    pub fn write_unannounced<T, E: From<keygate_store::Error>>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.db.write_unannounced(f)
    }

    /// Runs `f` in one read snapshot, passing `component`'s generation in it, so a cache built from it is
    /// exactly the state of that generation.
    pub fn read<T, E: From<keygate_store::Error>>(
        &self,
        component: &str,
        f: impl FnOnce(&mut Tx<'_>, u64) -> Result<T, E>,
    ) -> Result<T, E> {
        self.db.read(component, f)
    }

    /// Runs `f` in one read snapshot (for listings and lookups).
    pub(crate) fn query<T>(&self, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        self.db.read(SECRETS.name, |tx, _| f(tx))
    }

    /// Encrypts `plaintext` for the record `binding` under a fresh data key. Needs the master key.
    pub fn seal(&self, binding: &Binding<'_>, plaintext: &[u8]) -> Result<Sealed> {
        crypto::seal(self.key()?, binding, plaintext)
    }

    /// Decrypts a UTF-8 value sealed for `binding`. Needs the master key. `None` when the stored bytes fail
    /// authentication (modified, moved to another record, or corrupt).
    pub fn open_text(
        &self,
        binding: &Binding<'_>,
        sealed: &Sealed,
    ) -> Result<Option<SecretString>> {
        let key = self.key()?;
        Ok(crypto::open(key, binding, sealed)
            .ok()
            .and_then(|plain| std::str::from_utf8(&plain).ok().map(SecretString::from)))
    }

    /// A 256-bit key for one purpose, derived from the master key (HKDF-SHA-256 with `context` as the info
    /// string). Needs the master key.
    pub fn derive_key(&self, context: &str) -> Result<Zeroizing<[u8; MASTER_KEY_LEN]>> {
        Ok(self.key()?.derive(context))
    }
}

fn read_key_check(tx: &mut Tx<'_>) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
    let Some(row) = tx.query_opt(
        "SELECT key_check_nonce, key_check FROM meta WHERE id = 1 AND key_check IS NOT NULL",
        &[],
    )?
    else {
        return Ok(None);
    };
    Ok(Some((row.get(0)?, row.get(1)?)))
}

/// Maps a UNIQUE constraint violation (a duplicate name) to `duplicate()`, any other error to
/// [`StoreError::Db`].
fn map_unique(err: keygate_store::Error, duplicate: impl FnOnce() -> StoreError) -> StoreError {
    if err.is_unique_violation() {
        duplicate()
    } else {
        err.into()
    }
}

#[cfg(test)]
mod tests;
