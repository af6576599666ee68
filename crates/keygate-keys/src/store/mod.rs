//! [`KeyStore`]: access keys and provider keys in a data directory's database.

mod api_keys;
mod provider_keys;

pub(crate) use provider_keys::binding;

use keygate_secrets::Store;
use keygate_store::Row;
use serde_json::{Map, Value};

use crate::error::{KeyError, Result};
use crate::schema::KEYS;

/// Prefix of access key ids.
pub const API_KEY_PREFIX: &str = "aigk_";
/// Prefix of provider key ids.
pub const PROVIDER_KEY_PREFIX: &str = "aigpk_";

/// Access keys and provider keys on a [`Store`]. Metadata operations work on a locked store; creating an
/// access key (its token is hashed under a key derived from the master key) and storing a provider key value
/// need an unlocked one. Every change bumps the store's generation, so every [`crate::KeyCache`] on the data
/// directory sees it.
#[derive(Debug)]
pub struct KeyStore {
    store: Store,
}

impl KeyStore {
    /// Wraps `store`, creating or upgrading the key tables.
    pub fn open(store: Store) -> Result<Self> {
        store.migrate_component(&KEYS)?;
        Ok(Self { store })
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Gives the store back.
    pub fn into_store(self) -> Store {
        self.store
    }
}

/// Reads a metadata column (compact JSON text) as an object.
fn metadata_column(row: &Row, index: usize) -> Result<Map<String, Value>> {
    json_column(row, index)
}

/// Reads a column of compact JSON text.
fn json_column<T: serde::de::DeserializeOwned>(row: &Row, index: usize) -> Result<T> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text)
        .map_err(|e| KeyError::Invalid(format!("stored column {index} is not valid JSON: {e}")))
}

/// Runs `f` in one read snapshot of the key tables.
fn query<T>(store: &Store, f: impl FnOnce(&mut keygate_store::Tx<'_>) -> Result<T>) -> Result<T> {
    store.read(KEYS.name, |tx, _| f(tx))
}

/// A list of patterns as stored: a JSON array of strings.
fn list_json(list: &[String]) -> String {
    serde_json::to_string(list).expect("a list of strings serializes")
}

#[cfg(test)]
mod tests;
