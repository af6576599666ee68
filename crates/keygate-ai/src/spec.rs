//! Declarative provider and model descriptions, shared by the built-in catalog and the policy's
//! `providers[]` configuration (same field names as ngrok's `ai-gateway` schema).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{ApiFormat, Surface};

/// A `{name: ...}` entry of `supported_params` / `unsupported_params`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamName {
    pub name: String,
}

/// Prices in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    pub input: f64,
    pub output: f64,
}

/// One API surface a provider serves (`supported_api_surfaces[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurfaceSpec {
    pub format: ApiFormat,
    /// A single surface; absent means every surface of `format`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surface: Option<Surface>,
    /// Allowlist of top-level body keys; non-empty means every other key is removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supported_params: Vec<ParamName>,
}

impl SurfaceSpec {
    /// Whether this entry covers `surface`.
    pub fn covers(&self, surface: Surface) -> bool {
        self.format == surface.format() && self.surface.is_none_or(|s| s == surface)
    }

    /// Checks the entry is coherent; the message names the problem.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(surface) = self.surface {
            if surface == Surface::Models {
                return Err(
                    "surface 'models' is answered by the gateway and cannot be configured".into(),
                );
            }
            if surface.format() != self.format {
                return Err(format!(
                    "surface '{surface}' does not use the '{}' format",
                    self.format.name()
                ));
            }
        } else if !self.supported_params.is_empty() {
            return Err("supported_params requires a surface".into());
        }
        Ok(())
    }
}

/// A model (`providers[].models[]` or a catalog entry).
///
/// `pricing` and `surfaces` are Keygate extensions: the catalog always sets them, configured
/// models may (pricing feeds `sortBy('price')`; surfaces restrict where a model is offered).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub id_aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_modalities: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_modalities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_context_window: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supported_features: Vec<String>,
    /// Denylist of top-level body keys, stripped whatever the surface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsupported_params: Vec<ParamName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<Pricing>,
    /// Surfaces the model can serve; empty means every surface of its provider.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub surfaces: Vec<Surface>,
}

/// A provider: a catalog entry, or one `providers[]` item of a policy (minus its keys).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    pub id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub id_aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    /// Required for custom providers; built-ins default to the catalog's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    /// Absent: the catalog's surfaces for built-ins, `[{format: openai}]` for custom providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supported_api_surfaces: Option<Vec<SurfaceSpec>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelSpec>,
    /// Catalog only: whether requests without any key are refused (`ERR_KEYGATE_3802`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_api_key: Option<bool>,
}

impl ModelSpec {
    /// Whether `name` is this model's id or one of its aliases (case-insensitive).
    pub fn answers_to(&self, name: &str) -> bool {
        self.id.eq_ignore_ascii_case(name)
            || self.id_aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    }
}

impl ProviderSpec {
    /// Whether `name` is this provider's id or one of its aliases (case-insensitive).
    pub fn answers_to(&self, name: &str) -> bool {
        self.id.eq_ignore_ascii_case(name)
            || self.id_aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surface_spec_rules() {
        let ok: SurfaceSpec = serde_json::from_value(serde_json::json!({
            "format": "openai", "surface": "chat-completions", "supported_params": [{"name": "model"}]
        }))
        .unwrap();
        assert!(ok.validate().is_ok());
        assert!(ok.covers(Surface::ChatCompletions));
        assert!(!ok.covers(Surface::Embeddings));
        let wide = SurfaceSpec {
            format: ApiFormat::OpenAi,
            surface: None,
            supported_params: vec![],
        };
        assert!(wide.covers(Surface::Embeddings) && !wide.covers(Surface::Messages));
        let mismatch = SurfaceSpec {
            format: ApiFormat::OpenAi,
            surface: Some(Surface::Messages),
            supported_params: vec![],
        };
        assert!(mismatch.validate().unwrap_err().contains("does not use"));
        let params_without_surface = SurfaceSpec {
            format: ApiFormat::OpenAi,
            surface: None,
            supported_params: vec![ParamName {
                name: "model".into(),
            }],
        };
        assert!(params_without_surface.validate().is_err());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_value::<ModelSpec>(serde_json::json!({"id": "x", "bogus": 1}))
            .unwrap_err();
        assert!(err.to_string().contains("bogus"));
        let err = serde_json::from_value::<SurfaceSpec>(serde_json::json!({"format": "grpc"}))
            .unwrap_err();
        assert!(err.to_string().contains("grpc"));
    }

    #[test]
    fn names_match_case_insensitively() {
        let model = ModelSpec {
            id: "gpt-4o".into(),
            id_aliases: vec!["chatgpt-4o-latest".into()],
            ..Default::default()
        };
        assert!(
            model.answers_to("GPT-4o")
                && model.answers_to("ChatGPT-4o-latest")
                && !model.answers_to("gpt-4")
        );
    }
}
