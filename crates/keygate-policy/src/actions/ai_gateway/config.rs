//! The `ai-gateway` configuration, deserialized strictly, and its duration fields.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::access_keys::AccessKeyMode;
use crate::actions::find_replace::ReplacementConfig;
use keygate_ai::{ModelSpec, ProviderSpec, SurfaceSpec};
use serde::Deserialize;

/// Default `per_request_timeout`.
pub const DEFAULT_PER_REQUEST_TIMEOUT: Duration = Duration::from_secs(180);
/// Default `total_timeout`.
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(360);
/// Largest `max_input_tokens` / `max_output_tokens` accepted.
pub const MAX_TOKEN_LIMIT: u64 = 500_000;
/// Default `provider_health.cooldown`.
pub const DEFAULT_HEALTH_COOLDOWN: Duration = Duration::from_secs(30);

/// `config` of an `ai-gateway` action.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
    /// Extra upstream headers; values are templates.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Extra upstream query parameters; values are templates.
    #[serde(default)]
    pub query_params: BTreeMap<String, String>,
    /// Fields merged into the JSON body (override the client's); strings are templates.
    #[serde(default)]
    pub body: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub on_error: OnError,
    pub total_timeout: Option<String>,
    pub per_request_timeout: Option<String>,
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    #[serde(default)]
    pub only_allow_configured_providers: bool,
    #[serde(default)]
    pub only_allow_configured_models: bool,
    #[serde(default)]
    pub model_selection: Option<Selection>,
    #[serde(default)]
    pub api_key_selection: Option<Selection>,
    /// Keygate extension: check `kg-` access keys before the first rule (docs/access-keys.md).
    pub access_keys: Option<AccessKeyMode>,
    /// Keygate extension: slow-provider demotion (docs/ai-gateway.md#slow-providers).
    #[serde(default)]
    pub provider_health: ProviderHealthConfig,
    /// Keygate extension: find-and-replace on the answers' text, streamed or whole
    /// (docs/ai-gateway.md#redacting-answers).
    pub redact: Option<RedactConfig>,
}

/// `redact`: the rules (as in `response-body-find-replace`, compiled at load) and how many
/// bytes of a streamed block's text are held back to find a match split over deltas.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactConfig {
    pub replacements: Vec<ReplacementConfig>,
    /// Default [`keygate_ai::redaction::DEFAULT_HOLD_BACK`].
    pub hold_back_bytes: Option<usize>,
}

/// `provider_health`: providers that gave no answer (connect failure, dropped connection,
/// `per_request_timeout`) are tried after the healthy ones for `cooldown`, then probed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderHealthConfig {
    /// Default `true`.
    #[serde(default = "health_enabled")]
    pub enabled: bool,
    /// Default 30s; doubled per failed probe in a row, at most 8 times.
    pub cooldown: Option<String>,
}

impl Default for ProviderHealthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            cooldown: None,
        }
    }
}

fn health_enabled() -> bool {
    true
}

/// What happens after a pre-flight error or when every candidate failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Answer the client with the error.
    #[default]
    Halt,
    /// Record `actions.ngrok.ai_gateway.*` and run the next action.
    Continue,
}

/// `model_selection` / `api_key_selection`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    #[serde(default)]
    pub strategy: Vec<String>,
}

/// One `providers[]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub id: String,
    #[serde(default)]
    pub id_aliases: Vec<String>,
    pub base_url: Option<String>,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub website: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    #[serde(default)]
    pub models: Vec<ModelSpec>,
    pub supported_api_surfaces: Option<Vec<SurfaceSpec>>,
    /// Keygate extension: TLS settings for this provider's connections, on top of the server's
    /// `--upstream-*` ones.
    pub tls: Option<ProviderTls>,
    /// Keygate extension: list the provider's models from its server (`GET {base_url}/models`).
    /// On by default for a custom provider that declares no models.
    pub model_discovery: Option<ModelDiscoveryConfig>,
}

/// `providers[].model_discovery` (docs/ai-gateway.md#model-discovery).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDiscoveryConfig {
    /// Default `true` (the block asks for discovery); `false` turns it off.
    pub enabled: Option<bool>,
    /// Time between two lists (default 60s, at least 1s).
    pub interval: Option<String>,
    /// Bound of one list request, connect to last byte (default 5s).
    pub timeout: Option<String>,
}

/// `providers[].tls`: PEM files, paths relative to the gateway's working directory.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderTls {
    /// A CA to trust for this provider besides the system, webpki and `--upstream-ca-file` roots.
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain for mTLS (with `client_key_file`); replaces the server's.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
}

/// `providers[].api_keys[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// A template, usually `${secrets.get('vault', 'name')}`.
    pub value: String,
}

impl ProviderConfig {
    /// The domain description of this provider (without its keys).
    pub fn spec(&self) -> ProviderSpec {
        ProviderSpec {
            id: self.id.clone(),
            id_aliases: self.id_aliases.clone(),
            display_name: self.display_name.clone(),
            description: self.description.clone(),
            website: self.website.clone(),
            base_url: self.base_url.clone(),
            disabled: self.disabled,
            metadata: self.metadata.clone(),
            supported_api_surfaces: self.supported_api_surfaces.clone(),
            models: self.models.clone(),
            requires_api_key: None,
        }
    }
}

/// Parses `500ms`, `30s`, `5m`, `1h` or combinations such as `1m30s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid =
        || format!("invalid duration '{text}': use a number with ms, s, m or h (e.g. 30s, 5m)");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(invalid)?;
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let step = match &rest[..unit_len] {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            _ => return Err(invalid()),
        };
        total = total.saturating_add(step);
        rest = &rest[unit_len..];
    }
    if total.is_zero() {
        return Err(format!("duration '{text}' must be greater than zero"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        for bad in ["", "5", "m", "5x", "-5s", "0s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn strict_fields() {
        let err = serde_json::from_value::<Config>(
            serde_json::json!({"providers": [{"id": "openai", "api_key": "x"}]}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("api_key"), "{err}");
        let err =
            serde_json::from_value::<Config>(serde_json::json!({"on_error": "retry"})).unwrap_err();
        assert!(err.to_string().contains("retry"), "{err}");
        let ok: Config = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(ok.on_error, OnError::Halt);
        assert!(ok.provider_health.enabled, "demotion is on by default");
        let off: Config = serde_json::from_value(
            serde_json::json!({"provider_health": {"enabled": false, "cooldown": "5s"}}),
        )
        .unwrap();
        assert!(!off.provider_health.enabled);
        let err = serde_json::from_value::<Config>(
            serde_json::json!({"provider_health": {"cooldown_s": 5}}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("cooldown_s"), "{err}");
    }
}
