//! The error type of key operations. Messages name ids and fields, never a token or a provider key value.

use keygate_secrets::StoreError;

/// Everything that can go wrong with access keys and provider keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The store failed, or refused the input (description rules, a locked store, ...).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Input that breaks a rule (metadata, expiry, provider id). The message is a full sentence.
    #[error("{0}")]
    Invalid(String),
    /// No access key with this id.
    #[error("AI gateway API key '{0}' not found")]
    ApiKeyNotFound(String),
    /// No provider key with this id.
    #[error("AI gateway provider key '{0}' not found")]
    ProviderKeyNotFound(String),
    /// An access key holds at most [`crate::MAX_PROVIDER_KEYS_PER_PROVIDER`] keys of one provider.
    #[error("AI gateway API key '{api_key}' already holds {max} '{provider}' provider keys, the most allowed")]
    TooManyProviderKeys {
        api_key: String,
        provider: String,
        max: usize,
    },
}

impl KeyError {
    /// True when the caller's input is at fault (exit status 2 in the CLI), as opposed to a runtime failure.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            Self::Store(err) => err.is_invalid_input(),
            Self::Invalid(_)
            | Self::ApiKeyNotFound(_)
            | Self::ProviderKeyNotFound(_)
            | Self::TooManyProviderKeys { .. } => true,
        }
    }
}

impl From<keygate_store::Error> for KeyError {
    fn from(err: keygate_store::Error) -> Self {
        Self::Store(err.into())
    }
}

/// Shorthand for results of key operations.
pub type Result<T, E = KeyError> = std::result::Result<T, E>;
