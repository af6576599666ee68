//! Access keys ("AI gateway API keys") and the provider keys attached to them, on the Keygate store.
//!
//! - [`KeyStore`]: create, list, get, update and delete both kinds of key in a data directory's database
//!   (tables of their own, migrated through [`keygate_secrets::Store::migrate_component`]).
//! - [`KeyCache`]: the gateway's view, refreshed from the store's generation counter, answering
//!   [`KeyCache::authenticate`] in memory and recording last use in coalesced batches.
//!
//! A token (`kg-` + base64url of 40 random bytes) is shown once, when it is created. The store keeps only its
//! HMAC-SHA-256 under a key derived from the master key, so it cannot be recovered, and a copy of the
//! database alone does not allow guessing tokens offline. Provider key values are sealed exactly like
//! secrets and only ever decrypted into the cache. This crate knows nothing of policy.

mod cache;
mod error;
mod keyset;
mod limits;
mod memo;
mod model;
mod rules;
mod schema;
mod scopes;
mod store;
mod token;

pub use cache::{KeyCache, Rejection};
pub use error::{KeyError, Result};
pub use keyset::{AttachedProviderKey, AuthenticatedKey};
pub use limits::{format_usd, parse_usd, KeyLimits, Rate, StoreFailure};
pub use model::{ApiKey, ApiKeyRef, ApiKeyUpdate, CreatedApiKey, ProviderKey, ProviderKeyUpdate};
pub use rules::{parse_expiry, parse_metadata, MAX_METADATA_BYTES, MAX_PROVIDER_KEYS_PER_PROVIDER};
pub use scopes::{
    parse_allowed_models, parse_allowed_providers, MAX_SCOPE_PATTERNS, MAX_SCOPE_PATTERN_LEN,
};
pub use store::{KeyStore, API_KEY_PREFIX, PROVIDER_KEY_PREFIX};
pub use token::{TOKEN_LEN, TOKEN_PREFIX};
