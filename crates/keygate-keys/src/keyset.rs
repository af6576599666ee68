//! [`KeySet`]: every access key with its decrypted provider keys, read at one store generation and looked up
//! by the keyed hash of the token.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};

use chrono::DateTime;
use keygate_secrets::{Reload, Sealed, Store, SEALED_COLUMNS};
use secrecy::SecretString;
use serde_json::Value;

use crate::limits::{parse_limits_json, KeyLimits};
use crate::schema::KEYS;
use crate::scopes::Scopes;
use crate::store::binding;
use crate::token::{Digest, DigestMap};

/// An access key as the gateway sees it once a token matched.
pub struct AuthenticatedKey {
    id: String,
    display_name: String,
    description: String,
    metadata: Value,
    provider_keys: Vec<AttachedProviderKey>,
    /// Unix seconds; `None` for never.
    expires_at: Option<i64>,
    disabled: bool,
    scopes: Scopes,
    limits: KeyLimits,
    /// Unix seconds of the latest accepted use, 0 before the first one.
    used_at: AtomicI64,
    /// The latest `used_at` written to the store.
    flushed_at: AtomicI64,
    /// What a consumer derived from the key once (the policy's CEL view of it), kept as long as
    /// this loaded copy of the key.
    derived: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for AuthenticatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthenticatedKey")
            .field("id", &self.id)
            .field("display_name", &self.display_name)
            .field("provider_keys", &self.provider_keys)
            .finish_non_exhaustive()
    }
}

impl AuthenticatedKey {
    /// The key's id (`aigk_...`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The redacted token (`kg-AbCd...wxyz`), safe to log.
    pub fn display_name(&self) -> &str {
        &self.display_name
    }

    /// The operator's description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The operator's metadata: a JSON object.
    pub fn metadata(&self) -> &Value {
        &self.metadata
    }

    /// Every attached provider key, newest first (the order to try them in).
    pub fn provider_keys(&self) -> &[AttachedProviderKey] {
        &self.provider_keys
    }

    /// The attached keys of one provider, newest first.
    pub fn provider_keys_for<'a>(
        &'a self,
        provider_id: &'a str,
    ) -> impl Iterator<Item = &'a AttachedProviderKey> + 'a {
        self.provider_keys
            .iter()
            .filter(move |key| key.provider_id == provider_id)
    }

    /// Whether the key's provider patterns admit `provider` (always, when it has none).
    pub fn allows_provider(&self, provider: &str) -> bool {
        self.scopes.allows_provider(provider)
    }

    /// Whether the key's model patterns admit `model` served by `provider` (always, when it has none).
    /// Provider patterns are checked separately, by [`Self::allows_provider`].
    pub fn allows_model(&self, provider: &str, model: &str) -> bool {
        self.scopes.allows_model(provider, model)
    }

    /// The provider patterns as stored, for policy expressions.
    pub fn allowed_providers(&self) -> &[String] {
        self.scopes.providers()
    }

    /// The model patterns as stored, for policy expressions.
    pub fn allowed_models(&self) -> &[String] {
        self.scopes.models()
    }

    /// A value derived from the key, made by `make` on first use and kept with this loaded copy
    /// of the key (a reload that changes the key makes a new copy). One consumer, one type:
    /// `None` when a value of another type was derived first.
    pub fn derived<T: Any + Send + Sync>(&self, make: impl FnOnce(&Self) -> T) -> Option<&T> {
        self.derived
            .get_or_init(|| Box::new(make(self)))
            .downcast_ref::<T>()
    }

    /// The key's request, token and spend limits.
    pub fn limits(&self) -> &KeyLimits {
        &self.limits
    }

    pub(crate) fn is_disabled(&self) -> bool {
        self.disabled
    }

    pub(crate) fn is_expired_at(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|expiry| now >= expiry)
    }

    /// Notes a use at `now` (Unix seconds). Writes the shared counter at most once a second, so a hot key
    /// used from many threads does not bounce its cache line on every request.
    pub(crate) fn touch(&self, now: i64) {
        if self.used_at.load(Ordering::Relaxed) < now {
            self.used_at.store(now, Ordering::Relaxed);
        }
    }

    /// The use not yet written to the store, if any.
    pub(crate) fn unflushed_use(&self) -> Option<i64> {
        let used = self.used_at.load(Ordering::Relaxed);
        (used > self.flushed_at.load(Ordering::Relaxed)).then_some(used)
    }

    pub(crate) fn mark_flushed(&self, used: i64) {
        self.flushed_at.fetch_max(used, Ordering::Relaxed);
    }
}

/// A provider key attached to an access key, decrypted.
#[derive(Debug)]
pub struct AttachedProviderKey {
    id: String,
    provider_id: String,
    value: Option<SecretString>,
}

impl AttachedProviderKey {
    /// The provider key's id (`aigpk_...`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The provider it is a key of.
    pub fn provider_id(&self) -> &str {
        &self.provider_id
    }

    /// The value; `None` when the stored ciphertext failed authentication (modified or corrupt), in which
    /// case requests that would use this key must fail rather than fall back to another credential.
    pub fn value(&self) -> Option<&SecretString> {
        self.value.as_ref()
    }
}

/// All access keys as of one store generation.
pub(crate) struct KeySet {
    generation: u64,
    keys: DigestMap<Arc<AuthenticatedKey>>,
}

impl KeySet {
    pub(crate) fn get(&self, digest: &Digest) -> Option<&Arc<AuthenticatedKey>> {
        self.keys.get(digest)
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &Arc<AuthenticatedKey>> {
        self.keys.values()
    }
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("generation", &self.generation)
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Reload for KeySet {
    const COMPONENT: &'static str = KEYS.name;

    /// Reads every access key and decrypts every provider key in one read transaction. A record that cannot
    /// be read (edited or corrupt) is logged by id and left out, so its token is refused.
    fn load(store: &Store) -> keygate_secrets::Result<Self> {
        store.read(KEYS.name, |tx, generation| {
            let mut attached: HashMap<String, Vec<AttachedProviderKey>> = HashMap::new();
            let sql = format!(
                "SELECT id, api_key_id, provider_id, {SEALED_COLUMNS} FROM ai_gateway_provider_keys \
                 ORDER BY seq DESC"
            );
            for row in tx.query(&sql, &[])? {
                let id: String = row.get(0)?;
                let api_key_id: String = row.get(1)?;
                let provider_id: String = row.get(2)?;
                let sealed = Sealed::from_row(&row, 3)?;
                let value = store.open_text(&binding(&id, &api_key_id, &provider_id), &sealed)?;
                if value.is_none() {
                    tracing::error!(
                        provider_key_id = %id, ai_gateway_api_key_id = %api_key_id, provider = %provider_id,
                        "stored provider key failed authentication (modified or corrupt); requests using it will fail"
                    );
                }
                attached.entry(api_key_id).or_default().push(AttachedProviderKey {
                    id,
                    provider_id,
                    value,
                });
            }
            let mut keys = DigestMap::default();
            let rows = tx.query(
                "SELECT id, token_hash, display_name, description, metadata, expires_at, disabled, \
                 allowed_providers, allowed_models, limits FROM ai_gateway_api_keys",
                &[],
            )?;
            for row in rows {
                let id: String = row.get(0)?;
                let hash: Vec<u8> = row.get(1)?;
                let metadata: String = row.get(4)?;
                let expires_at: Option<String> = row.get(5)?;
                let providers: String = row.get(7)?;
                let models: String = row.get(8)?;
                let limits: String = row.get(9)?;
                let parsed = (
                    <[u8; 32]>::try_from(hash.as_slice()).ok(),
                    serde_json::from_str::<Value>(&metadata).ok(),
                    expires_at
                        .map(|text| DateTime::parse_from_rfc3339(&text).map(|t| t.timestamp()))
                        .transpose()
                        .ok(),
                    serde_json::from_str::<Vec<String>>(&providers).ok(),
                    serde_json::from_str::<Vec<String>>(&models).ok(),
                    parse_limits_json(&limits).ok(),
                );
                let (
                    Some(hash),
                    Some(metadata),
                    Some(expires_at),
                    Some(providers),
                    Some(models),
                    Some(limits),
                ) = parsed
                else {
                    tracing::error!(ai_gateway_api_key_id = %id, "stored access key is unreadable (edited or corrupt); its token is refused");
                    continue;
                };
                let key = AuthenticatedKey {
                    provider_keys: attached.remove(&id).unwrap_or_default(),
                    id,
                    display_name: row.get(2)?,
                    description: row.get(3)?,
                    metadata,
                    expires_at,
                    disabled: row.get(6)?,
                    scopes: Scopes::new(providers, models),
                    limits,
                    used_at: AtomicI64::new(0),
                    flushed_at: AtomicI64::new(0),
                    derived: OnceLock::new(),
                };
                keys.insert(Digest(hash), Arc::new(key));
            }
            Ok(KeySet { generation, keys })
        })
    }

    fn generation(&self) -> u64 {
        self.generation
    }

    fn entries(&self) -> usize {
        self.keys.len()
    }
}
