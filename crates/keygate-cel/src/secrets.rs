//! Secret sources and the CEL side of `secrets.get(vault, name)`.
//!
//! `secrets.get(v, n)` is rewritten at compile time to `@secrets[v][n]`: the hidden variable
//! `@secrets` (a name no expression can spell) indexes into the [`SecretSource`] of the scope.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cel::common::traits::Indexer;
use cel::common::types::{CelString, Type};
use cel::common::value::{CowVal, Val};
use cel::ExecutionError;
use secrecy::{ExposeSecret, SecretString};

/// Where `secrets.get(vault, name)` reads from. The encrypted store implements it; tests use
/// [`MemorySecrets`].
pub trait SecretSource: Send + Sync {
    /// The current value of secret `name` in vault `vault`.
    fn get(&self, vault: &str, name: &str) -> Result<Arc<SecretString>, SecretError>;

    /// Brings a cached source up to date with its store before returning. The gateway calls it
    /// before compiling a reloaded policy, so a secret added just before the policy that reads it
    /// is never missed. Sources without a cache need not do anything.
    fn refresh(&self) {}
}

/// Why a secret could not be read. Messages name the vault and secret, never a value.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("vault '{0}' not found")]
    VaultNotFound(String),
    #[error("secret '{name}' not found in vault '{vault}'")]
    SecretNotFound { vault: String, name: String },
    #[error("secret store unavailable: {0}")]
    Unavailable(String),
}

/// An in-memory [`SecretSource`], for tests and `policy check`.
#[derive(Default)]
pub struct MemorySecrets {
    vaults: HashMap<String, HashMap<String, Arc<SecretString>>>,
}

impl MemorySecrets {
    /// Adds (or replaces) a secret, creating its vault as needed.
    pub fn insert(&mut self, vault: &str, name: &str, value: &str) {
        self.vaults.entry(vault.to_owned()).or_default().insert(
            name.to_owned(),
            Arc::new(SecretString::from(value.to_owned())),
        );
    }
}

impl SecretSource for MemorySecrets {
    fn get(&self, vault: &str, name: &str) -> Result<Arc<SecretString>, SecretError> {
        let secrets = self
            .vaults
            .get(vault)
            .ok_or_else(|| SecretError::VaultNotFound(vault.to_owned()))?;
        secrets
            .get(name)
            .cloned()
            .ok_or_else(|| SecretError::SecretNotFound {
                vault: vault.to_owned(),
                name: name.to_owned(),
            })
    }
}

impl fmt::Debug for MemorySecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySecrets")
            .field("vaults", &self.vaults.len())
            .finish()
    }
}

static SECRETS_TYPE: Type = Type::new_unspecified_type("keygate.secrets");

/// `@secrets`: indexing it with a vault name yields a [`Vault`].
pub(crate) struct Secrets<'a> {
    pub(crate) source: &'a dyn SecretSource,
    /// Set once any secret is read, so errors of that evaluation withhold details.
    pub(crate) read: &'a AtomicBool,
}

/// `@secrets[vault]`: indexing it with a secret name reads the secret.
struct Vault<'a> {
    source: &'a dyn SecretSource,
    read: &'a AtomicBool,
    vault: String,
}

fn string_key<'i>(idx: &'i dyn Val, what: &str) -> Result<&'i str, ExecutionError> {
    idx.downcast_ref::<CelString>()
        .map(CelString::inner)
        .ok_or_else(|| {
            ExecutionError::function_error(
                "secrets.get",
                format!("{what} must be a string, got {}", idx.get_type().name()),
            )
        })
}

impl Indexer for Secrets<'_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let vault = string_key(idx, "vault name")?.to_owned();
        Ok(CowVal::owned(Vault {
            source: self.source,
            read: self.read,
            vault,
        }))
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

impl Indexer for Vault<'_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let name = string_key(idx, "secret name")?;
        read_secret(self.source, self.read, &self.vault, name)
            .map_err(|error| ExecutionError::function_error("secrets.get", error))
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

/// Reads one secret as a CEL string, recording that the evaluation read a secret.
pub(crate) fn read_secret<'b, 'v>(
    source: &dyn SecretSource,
    read: &AtomicBool,
    vault: &str,
    name: &str,
) -> Result<CowVal<'b, 'v>, SecretError> {
    let secret = source.get(vault, name)?;
    read.store(true, Ordering::Relaxed);
    Ok(CowVal::owned(CelString::from(
        secret.expose_secret().to_owned(),
    )))
}

impl fmt::Debug for Secrets<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("secrets")
    }
}

impl fmt::Debug for Vault<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "secrets vault '{}'", self.vault)
    }
}

indexed_val! {
    Secrets<'_>, SECRETS_TYPE;
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(Secrets {
            source: self.source,
            read: self.read,
        })
    }
}

indexed_val! {
    Vault<'_>, SECRETS_TYPE;
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(Vault {
            source: self.source,
            read: self.read,
            vault: self.vault.clone(),
        })
    }
}
