//! Vault and secret metadata as shown to users (ngrok's JSON shapes, minus `uri`). Values never appear here.

use serde::Serialize;

/// A vault: a named group of secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vault {
    /// `vault_` + 26 base32 characters.
    pub id: String,
    /// RFC 3339 UTC, second precision.
    pub created_at: String,
    /// RFC 3339 UTC, second precision.
    pub updated_at: String,
    /// Unique across vaults.
    pub name: String,
    /// Free text (may be empty).
    pub description: String,
}

/// The vault a secret belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VaultRef {
    /// The vault's id.
    pub id: String,
    /// The vault's name.
    pub name: String,
}

/// A secret's metadata. Its value is write-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Secret {
    /// `secret_` + 26 base32 characters.
    pub id: String,
    /// RFC 3339 UTC, second precision.
    pub created_at: String,
    /// RFC 3339 UTC, second precision.
    pub updated_at: String,
    /// Unique within its vault.
    pub name: String,
    /// Free text (may be empty).
    pub description: String,
    /// The owning vault.
    pub vault: VaultRef,
}

/// The current time as stored: RFC 3339 UTC with second precision (`2026-01-31T12:00:00Z`).
pub(crate) fn now() -> String {
    format_timestamp(chrono::Utc::now())
}

/// A time as stored: RFC 3339 UTC with second precision (`2026-01-31T12:00:00Z`). Stored timestamps
/// therefore sort as text in time order.
pub fn format_timestamp(time: chrono::DateTime<chrono::Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
