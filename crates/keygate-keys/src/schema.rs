//! The tables of access keys and provider keys, one component of the store's schema.

/// Component name in the store's `schema_components` table.
pub(crate) const COMPONENT: &str = "ai-gateway-keys";

/// Migration steps; step `n` takes the component from version `n` to `n + 1`. Only ever append.
pub(crate) const STEPS: &[&str] = &[
    "
CREATE TABLE ai_gateway_api_keys (
    id           TEXT PRIMARY KEY,
    token_hash   BLOB NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    description  TEXT NOT NULL,
    metadata     TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    expires_at   TEXT,
    disabled     INTEGER NOT NULL,
    last_used    TEXT
);
CREATE TABLE ai_gateway_provider_keys (
    id          TEXT PRIMARY KEY,
    api_key_id  TEXT NOT NULL REFERENCES ai_gateway_api_keys (id),
    provider_id TEXT NOT NULL,
    description TEXT NOT NULL,
    metadata    TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    key_nonce   BLOB NOT NULL,
    wrapped_key BLOB NOT NULL,
    value_nonce BLOB NOT NULL,
    ciphertext  BLOB NOT NULL
);
CREATE INDEX ai_gateway_provider_keys_by_api_key ON ai_gateway_provider_keys (api_key_id);
",
    "
ALTER TABLE ai_gateway_api_keys ADD COLUMN allowed_providers TEXT NOT NULL DEFAULT '[]';
ALTER TABLE ai_gateway_api_keys ADD COLUMN allowed_models TEXT NOT NULL DEFAULT '[]';
",
    "
ALTER TABLE ai_gateway_api_keys ADD COLUMN limits TEXT NOT NULL DEFAULT '{}';
",
];
