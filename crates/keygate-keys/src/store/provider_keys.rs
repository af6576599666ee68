//! Provider key operations. Values go in, sealed like secrets, and never come out here: only the cache
//! decrypts them.

use chrono::Utc;
use keygate_secrets::next_seq;
use keygate_secrets::{check_description, check_value, format_timestamp, new_id, Binding};
use keygate_store::{Row, Tx};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use super::api_keys::api_key_by_id;
use super::{metadata_column, query, KeyStore, PROVIDER_KEY_PREFIX};
use crate::error::{KeyError, Result};
use crate::model::{ApiKeyRef, ProviderKey, ProviderKeyUpdate};
use crate::rules::{check_provider_id, metadata_json, MAX_PROVIDER_KEYS_PER_PROVIDER};
use crate::schema::KEYS;

const PROVIDER_KEY_SELECT: &str =
    "SELECT id, created_at, updated_at, provider_id, description, metadata, \
     api_key_id FROM ai_gateway_provider_keys";

fn provider_key_from_row(row: &Row) -> Result<ProviderKey> {
    Ok(ProviderKey {
        id: row.get(0)?,
        created_at: row.get(1)?,
        updated_at: row.get(2)?,
        provider_id: row.get(3)?,
        description: row.get(4)?,
        metadata: metadata_column(row, 5)?,
        ai_gateway_api_key: ApiKeyRef { id: row.get(6)? },
    })
}

fn provider_key_by_id(tx: &mut Tx<'_>, id: &str) -> Result<ProviderKey> {
    let sql = format!("{PROVIDER_KEY_SELECT} WHERE id = $1");
    match tx.query_opt(&sql, &[&id])? {
        Some(row) => provider_key_from_row(&row),
        None => Err(KeyError::ProviderKeyNotFound(id.to_owned())),
    }
}

/// What a provider key's ciphertext is bound to: its id, its access key and its provider, so a value moved
/// to another key, access key or provider fails to decrypt.
pub(crate) fn binding<'a>(id: &'a str, api_key_id: &'a str, provider_id: &'a str) -> Binding<'a> {
    Binding {
        record_id: id,
        owner_id: api_key_id,
        name: provider_id,
    }
}

impl ProviderKey {
    fn binding(&self) -> Binding<'_> {
        binding(&self.id, &self.ai_gateway_api_key.id, &self.provider_id)
    }
}

impl KeyStore {
    /// Attaches a provider key to access key `api_key_id`, its value sealed like a secret's. Needs the master
    /// key. An access key holds at most [`MAX_PROVIDER_KEYS_PER_PROVIDER`] keys of one provider.
    pub fn create_provider_key(
        &self,
        api_key_id: &str,
        provider_id: &str,
        value: &SecretString,
        description: &str,
        metadata: &Map<String, Value>,
    ) -> Result<ProviderKey> {
        check_provider_id(provider_id)?;
        check_value(value.expose_secret())?;
        check_description(description)?;
        let metadata_text = metadata_json(metadata)?;
        self.store.write(KEYS.name, |tx| {
            api_key_by_id(tx, api_key_id)?;
            check_room(tx, api_key_id, provider_id)?;
            let now = format_timestamp(Utc::now());
            let key = ProviderKey {
                id: new_id(PROVIDER_KEY_PREFIX)?,
                created_at: now.clone(),
                updated_at: now,
                provider_id: provider_id.to_owned(),
                description: description.to_owned(),
                metadata: metadata.clone(),
                ai_gateway_api_key: ApiKeyRef {
                    id: api_key_id.to_owned(),
                },
            };
            // The sealed columns start empty and are filled by the one place that stores values.
            let sql = format!(
                "INSERT INTO ai_gateway_provider_keys (id, api_key_id, provider_id, description, metadata, \
                 created_at, updated_at, key_nonce, wrapped_key, value_nonce, ciphertext, seq) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $8, $8, {})",
                next_seq("ai_gateway_provider_keys")
            );
            tx.execute(
                &sql,
                &[
                    &key.id,
                    &key.ai_gateway_api_key.id,
                    &key.provider_id,
                    &key.description,
                    &metadata_text,
                    &key.created_at,
                    &key.updated_at,
                    &b"".as_slice(),
                ],
            )?;
            self.store_value(tx, &key, value)?;
            Ok(key)
        })
    }

    /// All provider keys, or those attached to one access key ([`KeyError::ApiKeyNotFound`] for an unknown
    /// one), oldest first.
    pub fn list_provider_keys(&self, api_key_id: Option<&str>) -> Result<Vec<ProviderKey>> {
        query(&self.store, |tx| {
            if let Some(api_key_id) = api_key_id {
                api_key_by_id(tx, api_key_id)?;
            }
            let sql =
                format!("{PROVIDER_KEY_SELECT} WHERE CAST($1 AS TEXT) IS NULL OR api_key_id = $1 ORDER BY seq");
            tx.query(&sql, &[&api_key_id])?
                .iter()
                .map(provider_key_from_row)
                .collect()
        })
    }

    /// The provider key with this id (metadata only).
    pub fn get_provider_key(&self, id: &str) -> Result<ProviderKey> {
        query(&self.store, |tx| provider_key_by_id(tx, id))
    }

    /// Replaces a provider key's value (needs the master key), description or metadata.
    pub fn update_provider_key(
        &self,
        id: &str,
        update: &ProviderKeyUpdate<'_>,
    ) -> Result<ProviderKey> {
        if let Some(value) = update.value {
            check_value(value.expose_secret())?;
        }
        if let Some(description) = update.description {
            check_description(description)?;
        }
        let metadata_text = update.metadata.map(metadata_json).transpose()?;
        self.store.write(KEYS.name, |tx| {
            let mut key = provider_key_by_id(tx, id)?;
            if let Some(description) = update.description {
                description.clone_into(&mut key.description);
            }
            if let Some(metadata) = update.metadata {
                key.metadata = metadata.clone();
            }
            key.updated_at = format_timestamp(Utc::now());
            let metadata_text = match metadata_text {
                Some(text) => text,
                None => metadata_json(&key.metadata)?,
            };
            tx.execute(
                "UPDATE ai_gateway_provider_keys SET description = $2, metadata = $3, updated_at = $4 \
                 WHERE id = $1",
                &[&key.id, &key.description, &metadata_text, &key.updated_at],
            )?;
            if let Some(value) = update.value {
                self.store_value(tx, &key, value)?;
            }
            Ok(key)
        })
    }

    /// Seals `value` for `key` under a fresh data key and stores it.
    fn store_value(&self, tx: &mut Tx<'_>, key: &ProviderKey, value: &SecretString) -> Result<()> {
        let sealed = self
            .store
            .seal(&key.binding(), value.expose_secret().as_bytes())?;
        tx.execute(
            "UPDATE ai_gateway_provider_keys SET key_nonce = $2, wrapped_key = $3, value_nonce = $4, \
             ciphertext = $5 WHERE id = $1",
            &[
                &key.id,
                &sealed.key_nonce,
                &sealed.wrapped_key,
                &sealed.value_nonce,
                &sealed.ciphertext,
            ],
        )?;
        Ok(())
    }

    /// Detaches and deletes a provider key.
    pub fn delete_provider_key(&self, id: &str) -> Result<()> {
        self.store.write(KEYS.name, |tx| {
            match tx.execute("DELETE FROM ai_gateway_provider_keys WHERE id = $1", &[&id])? {
                0 => Err(KeyError::ProviderKeyNotFound(id.to_owned())),
                _ => Ok(()),
            }
        })
    }
}

/// Refuses a provider key beyond [`MAX_PROVIDER_KEYS_PER_PROVIDER`] for one access key and provider.
fn check_room(tx: &mut Tx<'_>, api_key_id: &str, provider_id: &str) -> Result<()> {
    let count: i64 = tx
        .query_one(
            "SELECT COUNT(*) FROM ai_gateway_provider_keys WHERE api_key_id = $1 AND provider_id = $2",
            &[&api_key_id, &provider_id],
        )?
        .get(0)?;
    if usize::try_from(count).unwrap_or(usize::MAX) >= MAX_PROVIDER_KEYS_PER_PROVIDER {
        return Err(KeyError::TooManyProviderKeys {
            api_key: api_key_id.to_owned(),
            provider: provider_id.to_owned(),
            max: MAX_PROVIDER_KEYS_PER_PROVIDER,
        });
    }
    Ok(())
}
