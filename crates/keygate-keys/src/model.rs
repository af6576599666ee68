//! Access keys and provider keys as shown to users (ngrok's field names). Tokens appear only in
//! [`CreatedApiKey`]; provider key values never appear.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::limits::{serialize_limits, KeyLimits};

/// An access key ("AI gateway API key").
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiKey {
    /// `aigk_` + 26 base32 characters.
    pub id: String,
    /// RFC 3339 UTC, second precision.
    pub created_at: String,
    /// RFC 3339 UTC, second precision.
    pub updated_at: String,
    /// The token redacted to its first 7 and last 4 characters.
    pub display_name: String,
    /// Free text (may be empty).
    pub description: String,
    /// A JSON object the operator attaches (team, owner, ...).
    pub metadata: Map<String, Value>,
    /// When the gateway last accepted the token (coalesced, so up to a flush interval late); `null` if never.
    pub last_used: Option<String>,
    /// When the token stops working; `null` for never.
    pub expires_at: Option<String>,
    /// A disabled token is refused until it is enabled again.
    pub disabled: bool,
    /// Provider patterns the key may use (`*` matches any run of characters); empty allows every provider.
    pub allowed_providers: Vec<String>,
    /// Model patterns (`gpt-4o*`, `openai:gpt-4o*`) the key may use; empty allows every model.
    pub allowed_models: Vec<String>,
    /// Request, token and spend limits, shown as an object of the set ones (`{}` for none) with rates as
    /// `100/min` and amounts as USD decimal strings (`"5.00"`).
    #[serde(serialize_with = "serialize_limits")]
    pub limits: KeyLimits,
}

/// A new access key together with its token, which is shown this once and never stored.
#[derive(Debug, Serialize)]
pub struct CreatedApiKey {
    /// The key's metadata.
    #[serde(flatten)]
    pub key: ApiKey,
    /// The token (`kg-...`).
    #[serde(serialize_with = "expose")]
    pub token: SecretString,
}

fn expose<S: Serializer>(token: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(token.expose_secret())
}

/// The access key a provider key is attached to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyRef {
    /// The access key's id.
    pub id: String,
}

/// A provider key attached to an access key. Its value is write-only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderKey {
    /// `aigpk_` + 26 base32 characters.
    pub id: String,
    /// RFC 3339 UTC, second precision.
    pub created_at: String,
    /// RFC 3339 UTC, second precision.
    pub updated_at: String,
    /// The provider the value is a key of (`openai`, `anthropic`, ...).
    pub provider_id: String,
    /// Free text (may be empty).
    pub description: String,
    /// A JSON object the operator attaches.
    pub metadata: Map<String, Value>,
    /// The owning access key.
    pub ai_gateway_api_key: ApiKeyRef,
}

/// Changes to an access key; `None` keeps the current value.
#[derive(Debug, Default)]
pub struct ApiKeyUpdate<'a> {
    /// New description.
    pub description: Option<&'a str>,
    /// New metadata (replaces the whole object).
    pub metadata: Option<&'a Map<String, Value>>,
    /// New expiry; `Some(None)` removes it.
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// Disable or enable the key.
    pub disabled: Option<bool>,
    /// New provider patterns; an empty list removes the restriction.
    pub allowed_providers: Option<&'a [String]>,
    /// New model patterns; an empty list removes the restriction.
    pub allowed_models: Option<&'a [String]>,
    /// New limits, replacing the whole set; [`KeyLimits::default()`] removes them all. To change one limit,
    /// edit the key's current [`ApiKey::limits`] and pass them back, as the CLI does.
    pub limits: Option<&'a KeyLimits>,
}

/// Changes to a provider key; `None` keeps the current value.
#[derive(Debug, Default)]
pub struct ProviderKeyUpdate<'a> {
    /// New value (needs the master key).
    pub value: Option<&'a SecretString>,
    /// New description.
    pub description: Option<&'a str>,
    /// New metadata (replaces the whole object).
    pub metadata: Option<&'a Map<String, Value>>,
}
