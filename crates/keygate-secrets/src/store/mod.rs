//! [`Store`]: the vaults and secrets database of one data directory.

pub(crate) mod ip_policies;
mod secrets;
mod vaults;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::crypto::{self, Binding, Sealed};
use crate::db_files;
use crate::error::{Result, StoreError};
use crate::master_key::{MasterKey, MasterKeySource, MASTER_KEY_LEN};
use crate::schema;

/// The store of one data directory. Metadata operations work without the master key; storing a value and
/// loading values need [`Store::unlock`] first.
///
/// Every write runs in a `BEGIN IMMEDIATE` transaction and bumps a generation counter, which
/// [`crate::CachedSecrets`] polls. Several processes may use the same directory at once.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    dir: PathBuf,
    key: Option<MasterKey>,
}

impl Store {
    /// Opens the store in `data_dir`, creating the directory (0700), database (0600) and schema when absent.
    pub fn open(data_dir: &Path) -> Result<Self> {
        Ok(Self {
            conn: schema::open_read_write(data_dir)?,
            dir: data_dir.to_path_buf(),
            key: None,
        })
    }

    /// Opens an existing store without creating or writing anything (for `keygate policy check`).
    /// [`StoreError::NotInitialized`] when the directory holds no database.
    pub fn open_read_only(data_dir: &Path) -> Result<Self> {
        Ok(Self {
            conn: schema::open_read_only(data_dir)?,
            dir: data_dir.to_path_buf(),
            key: None,
        })
    }

    /// [`Store::open`] followed by [`Store::unlock`].
    pub fn open_unlocked(data_dir: &Path, source: &MasterKeySource) -> Result<Self> {
        let mut store = Self::open(data_dir)?;
        store.unlock(source)?;
        Ok(store)
    }

    /// Loads the master key and checks it against the data directory's key check, recording the check on
    /// first use. A missing key file is created only while the directory holds no key check.
    /// [`StoreError::WrongMasterKey`] when the key is not the directory's.
    pub fn unlock(&mut self, source: &MasterKeySource) -> Result<()> {
        let initialised = read_key_check(&self.conn)?.is_some();
        let key = source.resolve(&self.dir, !initialised)?;
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        match read_key_check(&tx)? {
            Some((nonce, check)) => {
                if !crypto::verify_key_check(&key, &nonce, &check)? {
                    return Err(StoreError::WrongMasterKey(self.dir.clone()));
                }
            }
            None => {
                let nonce = crypto::random_nonce()?;
                let check = crypto::key_check(&key, &nonce)?;
                tx.execute(
                    "UPDATE meta SET key_check_nonce = ?1, key_check = ?2 WHERE id = 1",
                    (nonce.as_slice(), check),
                )?;
            }
        }
        tx.commit()?;
        self.key = Some(key);
        Ok(())
    }

    /// The data directory this store lives in.
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// A counter bumped by every committed [`Store::write`], from any process.
    pub fn generation(&self) -> Result<u64> {
        read_generation(&self.conn)
    }

    /// Whether vault `vault_name` holds a secret `secret_name`. Needs no master key.
    pub fn secret_exists(&self, vault_name: &str, secret_name: &str) -> Result<bool> {
        let found = self
            .conn
            .prepare_cached(
                "SELECT 1 FROM secrets s JOIN vaults v ON v.id = s.vault_id WHERE v.name = ?1 AND s.name = ?2",
            )?
            .exists((vault_name, secret_name))?;
        Ok(found)
    }

    /// The database connection, for reads outside a transaction. Writes go through [`Store::write`].
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn key(&self) -> Result<&MasterKey> {
        self.key.as_ref().ok_or(StoreError::Locked)
    }

    /// Creates or upgrades the tables another crate keeps in this database. `steps[n]` is the SQL taking
    /// `component` from version `n` to `n + 1`; steps only ever get appended. A database whose `component`
    /// is newer than `steps` is refused ([`StoreError::UnsupportedComponent`]).
    pub fn migrate_component(&self, component: &str, steps: &[&str]) -> Result<()> {
        schema::migrate_component(&self.conn, &self.dir, component, steps)
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction and bumps the generation, so every cache on this data
    /// directory reloads; rolls back when `f` fails. After the commit, the new generation is written to the
    /// data directory's generation marker, which running caches watch.
    pub fn write<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let (out, generation) = self.write_unannounced(|tx| -> Result<(T, u64), E> {
            let out = f(tx)?;
            tx.execute(
                "UPDATE meta SET generation = generation + 1 WHERE id = 1",
                [],
            )
            .map_err(StoreError::from)?;
            Ok((out, read_generation(tx)?))
        })?;
        db_files::announce(&self.dir, generation);
        Ok(out)
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction without bumping the generation: for bookkeeping that no
    /// cache reads (such as last-use times), which would otherwise make every cache reload.
    pub fn write_unannounced<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let out = f(&tx)?;
        tx.commit().map_err(StoreError::from)?;
        Ok(out)
    }

    /// Runs `f` in one read transaction, passing the generation that transaction sees, so a cache built from
    /// it is exactly the state of that generation.
    pub fn read<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Transaction<'_>, u64) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Deferred)
            .map_err(StoreError::from)?;
        let generation = read_generation(&tx)?;
        let out = f(&tx, generation)?;
        tx.commit().map_err(StoreError::from)?;
        Ok(out)
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

fn read_generation(conn: &Connection) -> Result<u64> {
    let generation: i64 = conn
        .prepare_cached("SELECT generation FROM meta WHERE id = 1")?
        .query_row([], |row| row.get(0))?;
    Ok(u64::try_from(generation).unwrap_or(0))
}

fn read_key_check(conn: &Connection) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
    let row = conn
        .query_row(
            "SELECT key_check_nonce, key_check FROM meta WHERE id = 1 AND key_check IS NOT NULL",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    Ok(row)
}

/// Maps a UNIQUE constraint violation (a duplicate name) to `duplicate()`, any other error to
/// [`StoreError::Db`].
fn map_unique(err: rusqlite::Error, duplicate: impl FnOnce() -> StoreError) -> StoreError {
    match &err {
        rusqlite::Error::SqliteFailure(e, _)
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            duplicate()
        }
        _ => err.into(),
    }
}

#[cfg(test)]
mod tests;
