//! [`Snapshot`]: every secret of a store, decrypted into memory, looked up by vault and secret name.

use std::collections::BTreeMap;
use std::sync::Arc;

use keygate_cel::{SecretError, SecretSource};
use secrecy::SecretString;

use crate::crypto::{Binding, Sealed, SEALED_COLUMNS};
use crate::error::Result;
use crate::schema::SECRETS;
use crate::store::Store;

/// One secret in a snapshot: its value, or the fact that it failed to decrypt (tampered or corrupt), so one bad
/// record fails only the requests that use it.
enum Entry {
    Ready(Arc<SecretString>),
    Unreadable,
}

/// All secrets as of one store generation. Values are zeroized when the last reference drops.
pub struct Snapshot {
    generation: u64,
    /// B-trees: a lookup is a few short string comparisons, cheaper than SipHashing both names on
    /// every `secrets.get` (the names are the operator's, so there is no hash flooding to guard).
    vaults: BTreeMap<String, BTreeMap<String, Entry>>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("generation", &self.generation)
            .field("secrets", &self.len())
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    /// The store generation this snapshot was read at.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of secrets.
    pub fn len(&self) -> usize {
        self.vaults.values().map(BTreeMap::len).sum()
    }

    /// Whether there are no secrets.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SecretSource for Snapshot {
    fn get(&self, vault: &str, name: &str) -> Result<Arc<SecretString>, SecretError> {
        let secrets = self
            .vaults
            .get(vault)
            .ok_or_else(|| SecretError::VaultNotFound(vault.to_owned()))?;
        match secrets.get(name) {
            Some(Entry::Ready(value)) => Ok(Arc::clone(value)),
            Some(Entry::Unreadable) => Err(SecretError::Unavailable(format!(
                "secret '{name}' in vault '{vault}' cannot be decrypted"
            ))),
            None => Err(SecretError::SecretNotFound {
                vault: vault.to_owned(),
                name: name.to_owned(),
            }),
        }
    }
}

impl Store {
    /// Reads and decrypts every secret in one read transaction. Needs the master key. A record that fails
    /// authentication is logged (by id and name) and kept as unreadable rather than failing the whole load.
    pub fn load_snapshot(&self) -> Result<Snapshot> {
        self.key()?;
        self.read(SECRETS.name, |tx, generation| {
            let mut vaults: BTreeMap<String, BTreeMap<String, Entry>> = BTreeMap::new();
            for row in tx.query("SELECT name FROM vaults", &[])? {
                vaults.insert(row.get(0)?, BTreeMap::new());
            }
            let sql = format!(
                "SELECT s.id, s.vault_id, v.name, s.name, {SEALED_COLUMNS} \
                 FROM secrets s JOIN vaults v ON v.id = s.vault_id"
            );
            for row in tx.query(&sql, &[])? {
                let secret_id: String = row.get(0)?;
                let vault_id: String = row.get(1)?;
                let vault_name: String = row.get(2)?;
                let name: String = row.get(3)?;
                let binding = Binding {
                    record_id: &secret_id,
                    owner_id: &vault_id,
                    name: &name,
                };
                let entry = match self.open_text(&binding, &Sealed::from_row(&row, 4)?)? {
                    Some(value) => Entry::Ready(Arc::new(value)),
                    None => {
                        tracing::error!(
                            secret_id = %secret_id, vault = %vault_name, secret = %name,
                            "stored secret failed authentication (modified or corrupt); requests using it will fail"
                        );
                        Entry::Unreadable
                    }
                };
                vaults.entry(vault_name).or_default().insert(name, entry);
            }
            Ok(Snapshot { generation, vaults })
        })
    }
}
