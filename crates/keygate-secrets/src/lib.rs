//! Vaults and secrets: the store (SQLite or PostgreSQL through `keygate-store`), AEAD encryption under a
//! master key, caches that follow the store's change feed. The store also keeps IP policies (CIDR
//! allow/deny rules `restrict-ips` references by id; [`CachedIpPolicies`]).
//!
//! - [`Store`]: a data directory's `keygate.db` or a `--database` location; vault and secret CRUD,
//!   [`Store::secret_exists`] (no key needed) and [`Store::load_snapshot`] (key needed).
//! - [`MasterKeySource`]: where the master key comes from (`KEYGATE_MASTER_KEY`, a key file, or the default
//!   `DATA_DIR/master.key`).
//! - [`CachedSecrets`]: the gateway's [`keygate_cel::SecretSource`], refreshed in the background.
//!
//! Crates that keep their own records in the same database build on: [`Store::migrate_component`] (their
//! tables, with [`next_seq`] for creation order), [`Store::write`] / [`Store::read`] (transactions that
//! notify, and consistent reads),
//! [`Store::seal`] / [`Store::open_text`] (the same envelope encryption, bound to their [`Binding`]),
//! [`Store::derive_key`] (keys derived from the master key) and [`Refreshing`] (a cache that follows its
//! component's generation).
//!
//! Secret values are encrypted with AES-256-GCM under per-record data keys wrapped by the master key; they are
//! never returned by any metadata call, never logged and never part of an error message.

mod cache;
mod crypto;
mod error;
mod ids;
mod ip_policies;
mod master_key;
mod model;
mod periodic;
mod refreshing;
mod schema;
mod snapshot;
mod store;
mod validate;

#[cfg(any(test, feature = "test-support"))]
pub mod test_support;

pub use cache::CachedSecrets;
pub use crypto::{Binding, Sealed, SEALED_COLUMNS};
pub use error::{Result, StoreError};
pub use ids::{new_id, ID_RANDOM_CHARS, SECRET_PREFIX, VAULT_PREFIX};
pub use ip_policies::{
    parse_rule_cidr, CachedIpPolicies, IpPolicy, IpPolicyRef, IpPolicyRule, IpPolicySnapshot,
    IpRule, RuleAction, IP_POLICY_PREFIX, IP_POLICY_RULE_PREFIX,
};
pub use master_key::{
    MasterKey, MasterKeySource, DEFAULT_KEY_FILE, MASTER_KEY_ENV, MASTER_KEY_LEN,
};
pub use model::{format_timestamp, Secret, Vault, VaultRef};
pub use periodic::Periodic;
pub use refreshing::{Refreshing, Reload, MISS_REREAD_INTERVAL};
pub use schema::{next_seq, Migrations, DB_FILE};
pub use snapshot::Snapshot;
pub use store::Store;
pub use validate::{
    check_description, check_name, check_value, MAX_DESCRIPTION_BYTES, MAX_NAME_LEN,
    MAX_VALUE_BYTES,
};
