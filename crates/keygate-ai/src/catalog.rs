//! The built-in provider and model catalog: a versioned data file (`catalog/catalog.json`) embedded
//! at build time, parsed and validated once.

use std::collections::HashSet;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::spec::ProviderSpec;

/// The embedded catalog file.
const CATALOG_JSON: &str = include_str!("../catalog/catalog.json");

/// The provider and model catalog.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Release date of the data, `YYYY-MM-DD`.
    pub version: String,
    /// Currency of every price (`USD`).
    pub currency: String,
    /// Unit of every price (`per million tokens`).
    pub pricing_unit: String,
    pub providers: Vec<ProviderSpec>,
}

/// Why a catalog file is unusable.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CatalogError {
    #[error("catalog is not valid JSON for the schema: {0}")]
    Parse(String),
    #[error("catalog provider '{provider}': {message}")]
    Invalid { provider: String, message: String },
}

impl Catalog {
    /// The catalog compiled into this binary.
    pub fn builtin() -> &'static Catalog {
        static BUILTIN: OnceLock<Catalog> = OnceLock::new();
        // The embedded file is checked by the `builtin_catalog_is_valid` test, so this cannot fail
        // in a released binary.
        BUILTIN
            .get_or_init(|| Catalog::parse(CATALOG_JSON).expect("embedded catalog.json is valid"))
    }

    /// Parses and validates a catalog document.
    pub fn parse(json: &str) -> Result<Catalog, CatalogError> {
        let catalog: Catalog =
            serde_json::from_str(json).map_err(|e| CatalogError::Parse(e.to_string()))?;
        catalog.validate()?;
        Ok(catalog)
    }

    /// The built-in provider with this id or alias (case-insensitive).
    pub fn provider(&self, name: &str) -> Option<&ProviderSpec> {
        self.providers.iter().find(|p| p.answers_to(name))
    }

    fn validate(&self) -> Result<(), CatalogError> {
        let version_ok = self.version.len() == 10
            && self.version.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
        if !version_ok {
            return Err(CatalogError::Parse(format!(
                "version '{}' is not YYYY-MM-DD",
                self.version
            )));
        }
        let mut provider_names = HashSet::new();
        for provider in &self.providers {
            let fail = |message: String| CatalogError::Invalid {
                provider: provider.id.clone(),
                message,
            };
            for name in std::iter::once(&provider.id).chain(&provider.id_aliases) {
                if !provider_names.insert(name.to_ascii_lowercase()) {
                    return Err(fail(format!("id or alias '{name}' is used twice")));
                }
            }
            let base = provider
                .base_url
                .as_deref()
                .ok_or_else(|| fail("base_url is missing".into()))?;
            if !["https://", "http://", "mock://"]
                .iter()
                .any(|scheme| base.starts_with(scheme))
            {
                return Err(fail(format!("base_url '{base}' has an unsupported scheme")));
            }
            if provider.requires_api_key.is_none() {
                return Err(fail("requires_api_key is missing".into()));
            }
            let surfaces = provider
                .supported_api_surfaces
                .as_deref()
                .unwrap_or_default();
            if surfaces.is_empty() {
                return Err(fail("supported_api_surfaces is empty".into()));
            }
            for spec in surfaces {
                spec.validate().map_err(&fail)?;
            }
            let mut model_names = HashSet::new();
            for model in &provider.models {
                for name in std::iter::once(&model.id).chain(&model.id_aliases) {
                    if !model_names.insert(name.to_ascii_lowercase()) {
                        return Err(fail(format!("model id or alias '{name}' is used twice")));
                    }
                }
                let pricing = model
                    .pricing
                    .ok_or_else(|| fail(format!("model '{}' has no pricing", model.id)))?;
                if !(pricing.input >= 0.0 && pricing.output >= 0.0) {
                    return Err(fail(format!("model '{}' has a negative price", model.id)));
                }
                if model.author_id.is_none()
                    || model.max_context_window.is_none()
                    || model.surfaces.is_empty()
                {
                    return Err(fail(format!(
                        "model '{}' lacks author_id, max_context_window or surfaces",
                        model.id
                    )));
                }
                if let Some(surface) = model
                    .surfaces
                    .iter()
                    .find(|s| !surfaces.iter().any(|spec| spec.covers(**s)))
                {
                    return Err(fail(format!(
                        "model '{}' lists surface '{surface}' the provider does not serve",
                        model.id
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ApiFormat, Surface};

    #[test]
    fn builtin_catalog_is_valid() {
        let catalog = Catalog::parse(CATALOG_JSON).unwrap();
        assert_eq!(catalog.version, "2026-11-27");
        for id in [
            "openai",
            "anthropic",
            "google",
            "deepseek",
            "groq",
            "mistral",
            "openrouter",
            "xai",
            "mock",
        ] {
            let provider = catalog
                .provider(id)
                .unwrap_or_else(|| panic!("{id} missing"));
            assert!(!provider.models.is_empty(), "{id} has no models");
        }
    }

    #[test]
    fn catalog_facts_clients_rely_on() {
        let catalog = Catalog::builtin();
        assert_eq!(catalog.provider("open-ai").unwrap().id, "openai");
        let anthropic = catalog.provider("anthropic").unwrap();
        let surfaces = anthropic.supported_api_surfaces.as_deref().unwrap();
        assert!(surfaces.iter().any(|s| s.covers(Surface::Messages)));
        assert!(surfaces
            .iter()
            .any(|s| s.covers(Surface::ChatCompletions) && s.format == ApiFormat::OpenAi));
        let gpt4o = catalog
            .provider("openai")
            .unwrap()
            .models
            .iter()
            .find(|m| m.answers_to("chatgpt-4o-latest"))
            .unwrap();
        assert_eq!(gpt4o.id, "gpt-4o");
        assert_eq!(gpt4o.max_context_window, Some(128_000));
        assert!(catalog
            .provider("mock")
            .unwrap()
            .base_url
            .as_deref()
            .unwrap()
            .starts_with("mock://"));
    }

    #[test]
    fn invalid_catalogs_are_refused() {
        let base = r#"{"version": "2026-11-27", "currency": "USD", "pricing_unit": "x", "providers": [
            {"id": "a", "base_url": "https://a", "requires_api_key": true,
             "supported_api_surfaces": [{"format": "openai", "surface": "embeddings"}],
             "models": [{"id": "m", "author_id": "a", "max_context_window": 1,
                         "pricing": {"input": 1, "output": 1}, "surfaces": ["SURFACE"]}]}]}"#;
        assert!(Catalog::parse(&base.replace("SURFACE", "embeddings")).is_ok());
        let err = Catalog::parse(&base.replace("SURFACE", "chat-completions")).unwrap_err();
        assert!(err.to_string().contains("does not serve"), "{err}");
        let err = Catalog::parse(
            &base
                .replace("SURFACE", "embeddings")
                .replace("2026-11-27", "v1"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("YYYY-MM-DD"));
        let err = Catalog::parse(
            &base
                .replace("SURFACE", "embeddings")
                .replace("https://a", "ftp://a"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("scheme"));
    }
}
