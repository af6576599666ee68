//! Access key operations. Tokens go out once, on creation; only their keyed hash is stored.

use chrono::{DateTime, Utc};
use keygate_secrets::next_seq;
use keygate_secrets::{check_description, format_timestamp, new_id};
use keygate_store::{Row, Tx};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

use super::{json_column, list_json, metadata_column, query, KeyStore, API_KEY_PREFIX};
use crate::error::{KeyError, Result};
use crate::limits::{check_limits, limits_json, parse_limits_json, KeyLimits};
use crate::model::{ApiKey, ApiKeyUpdate, CreatedApiKey};
use crate::rules::{check_future, metadata_json};
use crate::schema::KEYS;
use crate::scopes::{check_scope_list, ScopeKind};
use crate::token::{self, TokenHasher};

const API_KEY_SELECT: &str =
    "SELECT id, created_at, updated_at, display_name, description, metadata, \
     last_used, expires_at, disabled, allowed_providers, allowed_models, limits \
     FROM ai_gateway_api_keys";

fn api_key_from_row(row: &Row) -> Result<ApiKey> {
    Ok(ApiKey {
        id: row.get(0)?,
        created_at: row.get(1)?,
        updated_at: row.get(2)?,
        display_name: row.get(3)?,
        description: row.get(4)?,
        metadata: metadata_column(row, 5)?,
        last_used: row.get(6)?,
        expires_at: row.get(7)?,
        disabled: row.get(8)?,
        allowed_providers: json_column(row, 9)?,
        allowed_models: json_column(row, 10)?,
        limits: limits_column(row, 11)?,
    })
}

/// Reads a limits column, with the same rules as new input.
fn limits_column(row: &Row, index: usize) -> Result<KeyLimits> {
    let text: String = row.get(index)?;
    parse_limits_json(&text)
}

/// The access key with this id, or [`KeyError::ApiKeyNotFound`].
pub(super) fn api_key_by_id(tx: &mut Tx<'_>, id: &str) -> Result<ApiKey> {
    let sql = format!("{API_KEY_SELECT} WHERE id = $1");
    match tx.query_opt(&sql, &[&id])? {
        Some(row) => api_key_from_row(&row),
        None => Err(KeyError::ApiKeyNotFound(id.to_owned())),
    }
}

impl KeyStore {
    /// Creates an access key with a new random token, returned this once. Needs the master key. Empty
    /// pattern lists leave the key unrestricted, and [`KeyLimits::default()`] unlimited.
    pub fn create_api_key(
        &self,
        description: &str,
        metadata: &Map<String, Value>,
        expires_at: Option<DateTime<Utc>>,
        allowed_providers: &[String],
        allowed_models: &[String],
        limits: &KeyLimits,
    ) -> Result<CreatedApiKey> {
        check_description(description)?;
        check_scope_list(allowed_providers, ScopeKind::Providers)?;
        check_scope_list(allowed_models, ScopeKind::Models)?;
        check_limits(limits)?;
        let metadata_text = metadata_json(metadata)?;
        let now = Utc::now();
        if let Some(expiry) = expires_at {
            check_future(expiry, now)?;
        }
        let hasher = TokenHasher::for_store(&self.store)?;
        let token = token::generate()?;
        let digest = hasher.digest(token.expose_secret().as_bytes());
        let now = format_timestamp(now);
        let key = ApiKey {
            id: new_id(API_KEY_PREFIX)?,
            created_at: now.clone(),
            updated_at: now,
            display_name: token::display_name(token.expose_secret()),
            description: description.to_owned(),
            metadata: metadata.clone(),
            last_used: None,
            expires_at: expires_at.map(format_timestamp),
            disabled: false,
            allowed_providers: allowed_providers.to_vec(),
            allowed_models: allowed_models.to_vec(),
            limits: limits.clone(),
        };
        self.store.write(KEYS.name, |tx| -> Result<()> {
            let sql = format!(
                "INSERT INTO ai_gateway_api_keys (id, token_hash, display_name, description, metadata, \
                 created_at, updated_at, expires_at, disabled, allowed_providers, allowed_models, limits, seq) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10, $11, {})",
                next_seq("ai_gateway_api_keys")
            );
            tx.execute(
                &sql,
                &[
                    &key.id,
                    &digest.0.as_slice(),
                    &key.display_name,
                    &key.description,
                    &metadata_text,
                    &key.created_at,
                    &key.updated_at,
                    &key.expires_at,
                    &list_json(&key.allowed_providers),
                    &list_json(&key.allowed_models),
                    &limits_json(&key.limits),
                ],
            )?;
            Ok(())
        })?;
        Ok(CreatedApiKey { key, token })
    }

    /// All access keys, oldest first.
    pub fn list_api_keys(&self) -> Result<Vec<ApiKey>> {
        let sql = format!("{API_KEY_SELECT} ORDER BY seq");
        query(&self.store, |tx| {
            tx.query(&sql, &[])?.iter().map(api_key_from_row).collect()
        })
    }

    /// The access key with this id.
    pub fn get_api_key(&self, id: &str) -> Result<ApiKey> {
        query(&self.store, |tx| api_key_by_id(tx, id))
    }

    /// Changes an access key's description, metadata, expiry, disabled flag, scopes or limits.
    pub fn update_api_key(&self, id: &str, update: &ApiKeyUpdate<'_>) -> Result<ApiKey> {
        if let Some(description) = update.description {
            check_description(description)?;
        }
        if let Some(providers) = update.allowed_providers {
            check_scope_list(providers, ScopeKind::Providers)?;
        }
        if let Some(models) = update.allowed_models {
            check_scope_list(models, ScopeKind::Models)?;
        }
        if let Some(limits) = update.limits {
            check_limits(limits)?;
        }
        let metadata_text = update.metadata.map(metadata_json).transpose()?;
        let now = Utc::now();
        if let Some(Some(expiry)) = update.expires_at {
            check_future(expiry, now)?;
        }
        self.store.write(KEYS.name, |tx| {
            let mut key = api_key_by_id(tx, id)?;
            if let Some(description) = update.description {
                description.clone_into(&mut key.description);
            }
            if let Some(metadata) = update.metadata {
                key.metadata = metadata.clone();
            }
            if let Some(expires_at) = update.expires_at {
                key.expires_at = expires_at.map(format_timestamp);
            }
            if let Some(disabled) = update.disabled {
                key.disabled = disabled;
            }
            if let Some(providers) = update.allowed_providers {
                key.allowed_providers = providers.to_vec();
            }
            if let Some(models) = update.allowed_models {
                key.allowed_models = models.to_vec();
            }
            if let Some(limits) = update.limits {
                key.limits = limits.clone();
            }
            key.updated_at = format_timestamp(now);
            let metadata_text = match metadata_text {
                Some(text) => text,
                None => metadata_json(&key.metadata)?,
            };
            tx.execute(
                "UPDATE ai_gateway_api_keys SET description = $2, metadata = $3, expires_at = $4, \
                 disabled = $5, updated_at = $6, allowed_providers = $7, allowed_models = $8, limits = $9 \
                 WHERE id = $1",
                &[
                    &key.id,
                    &key.description,
                    &metadata_text,
                    &key.expires_at,
                    &key.disabled,
                    &key.updated_at,
                    &list_json(&key.allowed_providers),
                    &list_json(&key.allowed_models),
                    &limits_json(&key.limits),
                ],
            )?;
            Ok(key)
        })
    }

    /// Deletes an access key and the provider keys attached to it. Its token stops working on every gateway
    /// within the cache's refresh bound.
    pub fn delete_api_key(&self, id: &str) -> Result<()> {
        self.store.write(KEYS.name, |tx| {
            tx.execute(
                "DELETE FROM ai_gateway_provider_keys WHERE api_key_id = $1",
                &[&id],
            )?;
            match tx.execute("DELETE FROM ai_gateway_api_keys WHERE id = $1", &[&id])? {
                0 => Err(KeyError::ApiKeyNotFound(id.to_owned())),
                _ => Ok(()),
            }
        })
    }

    /// Records when access keys were last used, in one transaction; an older time never replaces a newer
    /// one, so several gateways can report the same key. Caches are not notified: they do not hold this.
    pub fn record_last_used(&self, uses: &[(&str, DateTime<Utc>)]) -> Result<()> {
        if uses.is_empty() {
            return Ok(());
        }
        self.store.write_unannounced(|tx| {
            for (id, time) in uses {
                tx.execute(
                    "UPDATE ai_gateway_api_keys SET last_used = $2 \
                     WHERE id = $1 AND (last_used IS NULL OR last_used < $2)",
                    &[id, &format_timestamp(*time)],
                )?;
            }
            Ok(())
        })
    }
}
