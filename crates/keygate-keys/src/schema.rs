//! The tables of access keys and provider keys, one component of the store's schema.

use keygate_store::{Component, Step};

/// Access keys and the provider keys attached to them. Steps 1 to 3 are what data directories created
/// before the migration record hold (adopted from their `schema_components` row).
pub(crate) const KEYS: Component = Component {
    name: "ai-gateway-keys",
    steps: &[
        Step::per_backend(
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
CREATE TABLE ai_gateway_api_keys (
    id           TEXT PRIMARY KEY,
    token_hash   BYTEA NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    description  TEXT NOT NULL,
    metadata     TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    expires_at   TEXT,
    disabled     BIGINT NOT NULL,
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
    key_nonce   BYTEA NOT NULL,
    wrapped_key BYTEA NOT NULL,
    value_nonce BYTEA NOT NULL,
    ciphertext  BYTEA NOT NULL
);
CREATE INDEX ai_gateway_provider_keys_by_api_key ON ai_gateway_provider_keys (api_key_id);
",
        ),
        Step::same(
            "
ALTER TABLE ai_gateway_api_keys ADD COLUMN allowed_providers TEXT NOT NULL DEFAULT '[]';
ALTER TABLE ai_gateway_api_keys ADD COLUMN allowed_models TEXT NOT NULL DEFAULT '[]';
",
        ),
        Step::same(
            "
ALTER TABLE ai_gateway_api_keys ADD COLUMN limits TEXT NOT NULL DEFAULT '{}';
",
        ),
        // Creation order, for listings on both engines (see `keygate_secrets::next_seq`).
        Step::per_backend(
            "
ALTER TABLE ai_gateway_api_keys ADD COLUMN seq BIGINT;
UPDATE ai_gateway_api_keys SET seq = rowid;
ALTER TABLE ai_gateway_provider_keys ADD COLUMN seq BIGINT;
UPDATE ai_gateway_provider_keys SET seq = rowid;
",
            "
ALTER TABLE ai_gateway_api_keys ADD COLUMN seq BIGINT;
ALTER TABLE ai_gateway_provider_keys ADD COLUMN seq BIGINT;
",
        ),
    ],
};
