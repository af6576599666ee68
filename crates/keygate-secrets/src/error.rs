//! The store's error type. Messages name the vault, secret, file or id involved, never a secret value.

use std::path::PathBuf;

/// Everything that can go wrong in the secret store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Input that breaks a rule (name charset, value size, ...). The message is a full sentence.
    #[error("{0}")]
    Invalid(String),
    /// No vault with this id (or name).
    #[error("vault '{0}' not found")]
    VaultNotFound(String),
    /// No secret with this id.
    #[error("secret '{0}' not found")]
    SecretNotFound(String),
    /// Vault names are unique.
    #[error("a vault named '{0}' already exists")]
    DuplicateVault(String),
    /// Secret names are unique within their vault.
    #[error("a secret named '{name}' already exists in vault '{vault}'")]
    DuplicateSecret { vault: String, name: String },
    /// No IP policy with this id.
    #[error("IP policy '{0}' not found")]
    IpPolicyNotFound(String),
    /// No IP policy rule with this id.
    #[error("IP policy rule '{0}' not found")]
    IpPolicyRuleNotFound(String),
    /// Deleting a vault that still holds secrets needs `force`.
    #[error("vault '{id}' still holds {count} secret(s)")]
    VaultNotEmpty { id: String, count: u64 },
    /// The master key opened fine but is not the one this database was initialised with.
    #[error("master key does not match the one the database {0} was initialised with")]
    WrongMasterKey(String),
    /// The key file is gone although the data directory already holds data encrypted under a key.
    #[error("master key file {file} does not exist, but the data directory {dir} was initialised with a master key")]
    MasterKeyMissing { file: PathBuf, dir: PathBuf },
    /// The master key text is not 32 bytes of base64.
    #[error("invalid master key in {0}: expected 32 bytes encoded as base64")]
    MalformedMasterKey(String),
    /// Both `KEYGATE_MASTER_KEY` and a key file were given.
    #[error("both KEYGATE_MASTER_KEY and a master key file were given; set only one")]
    AmbiguousMasterKey,
    /// The operation needs the master key but the store was opened without one.
    #[error("this operation needs the master key, but the store was opened without it")]
    Locked,
    /// A stored record failed authentication: modified, swapped or corrupt.
    #[error("secret '{name}' in vault '{vault}' cannot be decrypted: the stored data was modified or is corrupt")]
    Tampered { vault: String, name: String },
    /// There is no Keygate database at this location (shown without password).
    #[error("no Keygate database in {0}")]
    NotInitialized(String),
    /// A file system operation failed.
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The database reported an error (including a schema newer than this binary).
    #[error("database error: {0}")]
    Db(#[from] keygate_store::Error),
    /// The OS random number generator failed.
    #[error("the OS random number generator failed: {0}")]
    Random(#[from] getrandom::Error),
}

impl StoreError {
    /// True when the caller's input is at fault (bad name or value, unknown id, duplicate, non-empty vault),
    /// as opposed to a runtime failure (I/O, database, master key). The CLI exits 2 for the former, 1 for the
    /// latter.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Self::Invalid(_)
                | Self::VaultNotFound(_)
                | Self::SecretNotFound(_)
                | Self::IpPolicyNotFound(_)
                | Self::IpPolicyRuleNotFound(_)
                | Self::DuplicateVault(_)
                | Self::DuplicateSecret { .. }
                | Self::VaultNotEmpty { .. }
                | Self::AmbiguousMasterKey
        )
    }

    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            context,
            path: path.into(),
            source,
        }
    }
}

/// Shorthand for results of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
