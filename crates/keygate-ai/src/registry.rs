//! The provider/model universe one policy sees: the catalog merged with the policy's `providers[]`,
//! `--provider-url` overrides applied, and the `only_allow_configured_*` switches.
//!
//! Provider order (used when several providers offer the same model id): configured
//! providers in configuration order, then the remaining built-ins in catalog order.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use serde_json::{json, Map, Value};

use crate::catalog::Catalog;
use crate::discovery::DiscoveredModels;
use crate::spec::{ModelSpec, Pricing, ProviderSpec, SurfaceSpec};
use crate::translate;
use crate::url::upstream_url;
use crate::{ApiFormat, Surface};

/// What the policy says about providers, in domain terms (keys live in the policy crate).
#[derive(Debug, Clone, Default)]
pub struct GatewaySpec {
    pub providers: Vec<ProviderSpec>,
    pub only_allow_configured_providers: bool,
    pub only_allow_configured_models: bool,
    /// `--provider-url ID=URL`: base URL overrides of built-in providers (they win over the policy).
    pub provider_urls: HashMap<String, String>,
}

/// A provider after merging catalog and configuration.
#[derive(Debug, Clone)]
pub struct Provider {
    pub id: String,
    pub id_aliases: Vec<String>,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub website: Option<String>,
    /// Base URL without a trailing `/`; `mock://...` for the in-process mock.
    pub base_url: String,
    /// In the built-in catalog (possibly configured too).
    pub builtin: bool,
    /// Listed in the policy's `providers`.
    pub configured: bool,
    pub disabled: bool,
    /// Whether a request with no key from any source is refused (`ERR_KEYGATE_3802`).
    pub requires_api_key: bool,
    pub metadata: Map<String, Value>,
    pub surfaces: Vec<SurfaceSpec>,
    /// Index in `providers[]` when configured.
    pub config_index: Option<usize>,
    /// Per surface, parsed on first use: see [`Provider::upstream_target`].
    plain_targets: [OnceLock<UpstreamTarget>; Surface::COUNT],
    /// Whether its streams carry usage, as learned from the last one that completed.
    pub stream_usage: StreamUsage,
}

/// Whether a provider's streams report token usage, learned while serving it (unknown again
/// with each policy load). A provider known to report it needs no estimate of its streams.
#[derive(Debug, Default)]
pub struct StreamUsage(AtomicU8);

impl StreamUsage {
    const REPORTED: u8 = 1;
    const OMITTED: u8 = 2;

    /// True when the last complete stream carried usage.
    pub fn reported(&self) -> bool {
        self.0.load(Ordering::Relaxed) == Self::REPORTED
    }

    /// Notes whether a complete stream carried usage.
    pub fn learn(&self, reported: bool) {
        let value = if reported {
            Self::REPORTED
        } else {
            Self::OMITTED
        };
        self.0.store(value, Ordering::Relaxed);
    }
}

impl Clone for StreamUsage {
    fn clone(&self) -> Self {
        Self(AtomicU8::new(self.0.load(Ordering::Relaxed)))
    }
}

/// Where an attempt goes: the URI (`None` when the base URL does not make a valid one), and the
/// URL without its query as traces show it (a configured query parameter may hold a secret).
#[derive(Debug, Clone)]
pub struct UpstreamTarget {
    pub uri: Option<http::Uri>,
    pub shown_url: String,
}

impl Provider {
    /// Whether this provider is Keygate's in-process mock (base URL scheme `mock:`).
    pub fn is_mock(&self) -> bool {
        self.base_url.starts_with("mock:")
    }

    /// Where its server lists its models (`GET`), by the same rule as the surfaces: `/models`
    /// under a base URL with a path, `/v1/models` under a bare origin; the base URL's query kept.
    pub fn models_url(&self) -> String {
        upstream_url(&self.base_url, Surface::Models, None, &[])
    }

    /// The upstream target of `surface` ([`upstream_url`]). Without query parameters from the
    /// request or the config (the common case) it is built and parsed once per provider and
    /// surface.
    pub fn upstream_target(
        &self,
        surface: Surface,
        client_query: Option<&str>,
        extra: &[(String, String)],
    ) -> UpstreamTarget {
        let build = || {
            let url = upstream_url(&self.base_url, surface, client_query, extra);
            UpstreamTarget {
                shown_url: url.split('?').next().unwrap_or_default().to_owned(),
                uri: url.parse().ok(),
            }
        };
        if client_query.is_some_and(|q| !q.is_empty()) || !extra.is_empty() {
            return build();
        }
        match self.plain_targets.get(surface as usize) {
            Some(target) => target.get_or_init(build).clone(),
            None => build(),
        }
    }

    /// The surface entry serving `surface`: an exact-surface entry wins over a format-wide one.
    pub fn surface_spec(&self, surface: Surface) -> Option<&SurfaceSpec> {
        self.surfaces
            .iter()
            .find(|s| s.surface == Some(surface) && s.covers(surface))
            .or_else(|| self.surfaces.iter().find(|s| s.covers(surface)))
    }

    fn answers_to(&self, name: &str) -> bool {
        self.id.eq_ignore_ascii_case(name)
            || self.id_aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    }
}

/// A model after merging catalog and configuration (or a pass-through id).
#[derive(Debug, Clone)]
pub struct Model {
    /// The id sent upstream.
    pub id: String,
    pub id_aliases: Vec<String>,
    pub author_id: Option<String>,
    pub display_name: Option<String>,
    pub description: Option<String>,
    /// In the built-in catalog.
    pub known: bool,
    /// Declared in the policy's `providers[].models`, or discovered from the provider's server
    /// (which the policy asked for).
    pub custom: bool,
    /// Listed by the provider's server (model discovery) rather than configured or catalogued.
    pub discovered: bool,
    pub disabled: bool,
    pub metadata: Map<String, Value>,
    pub input_modalities: Vec<String>,
    pub output_modalities: Vec<String>,
    pub max_context_window: Option<u64>,
    pub max_output_tokens: Option<u64>,
    pub supported_features: Vec<String>,
    pub unsupported_params: Vec<String>,
    pub pricing: Option<Pricing>,
    /// Empty: any surface of the provider.
    pub surfaces: Vec<Surface>,
}

impl Model {
    fn from_spec(spec: &ModelSpec, known: bool, custom: bool) -> Model {
        Model {
            id: spec.id.clone(),
            id_aliases: spec.id_aliases.clone(),
            author_id: spec.author_id.clone(),
            display_name: spec.display_name.clone(),
            description: spec.description.clone(),
            known,
            custom,
            discovered: false,
            disabled: spec.disabled,
            metadata: spec.metadata.clone(),
            input_modalities: spec.input_modalities.clone(),
            output_modalities: spec.output_modalities.clone(),
            max_context_window: spec.max_context_window,
            max_output_tokens: spec.max_output_tokens,
            supported_features: spec.supported_features.clone(),
            unsupported_params: spec
                .unsupported_params
                .iter()
                .map(|p| p.name.clone())
                .collect(),
            pricing: spec.pricing,
            surfaces: spec.surfaces.clone(),
        }
    }

    /// A model the catalog does not know, forwarded verbatim (`provider:some-new-model`).
    fn pass_through(id: &str) -> Model {
        Model::from_spec(
            &ModelSpec {
                id: id.to_owned(),
                ..ModelSpec::default()
            },
            false,
            false,
        )
    }

    /// A model the provider's server listed: usable like a configured one, with no catalog data.
    fn discovered(id: &str) -> Model {
        Model {
            discovered: true,
            ..Model::from_spec(
                &ModelSpec {
                    id: id.to_owned(),
                    ..ModelSpec::default()
                },
                false,
                true,
            )
        }
    }

    /// Applies a configured override on top of a catalog entry.
    fn overlay(&mut self, spec: &ModelSpec) {
        self.custom = true;
        self.disabled = spec.disabled;
        extend_unique(&mut self.id_aliases, &spec.id_aliases);
        let set = |target: &mut Option<String>, value: &Option<String>| {
            if value.is_some() {
                target.clone_from(value);
            }
        };
        set(&mut self.author_id, &spec.author_id);
        set(&mut self.display_name, &spec.display_name);
        set(&mut self.description, &spec.description);
        self.metadata.extend(spec.metadata.clone());
        replace_if_set(&mut self.input_modalities, &spec.input_modalities);
        replace_if_set(&mut self.output_modalities, &spec.output_modalities);
        replace_if_set(&mut self.supported_features, &spec.supported_features);
        replace_if_set(&mut self.surfaces, &spec.surfaces);
        self.max_context_window = spec.max_context_window.or(self.max_context_window);
        self.max_output_tokens = spec.max_output_tokens.or(self.max_output_tokens);
        self.pricing = spec.pricing.or(self.pricing);
        extend_unique(
            &mut self.unsupported_params,
            &spec
                .unsupported_params
                .iter()
                .map(|p| p.name.clone())
                .collect::<Vec<_>>(),
        );
    }

    fn answers_to(&self, name: &str) -> bool {
        self.id.eq_ignore_ascii_case(name)
            || self.id_aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    }
}

fn replace_if_set<T: Clone>(target: &mut Vec<T>, value: &[T]) {
    if !value.is_empty() {
        *target = value.to_vec();
    }
}

fn extend_unique(target: &mut Vec<String>, extra: &[String]) {
    for item in extra {
        if !target.iter().any(|t| t.eq_ignore_ascii_case(item)) {
            target.push(item.clone());
        }
    }
}

/// One (provider, model) pair that may serve a request.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub provider: Arc<Provider>,
    pub model: Arc<Model>,
}

impl Candidate {
    /// `provider:model`, the unambiguous client-facing name.
    pub fn name(&self) -> String {
        format!("{}:{}", self.provider.id, self.model.id)
    }

    /// Whether both refer to the same provider and model.
    pub fn same_as(&self, other: &Candidate) -> bool {
        self.provider.id == other.provider.id && self.model.id == other.model.id
    }

    /// The surface this candidate is called on for a client request on `surface`: `surface`
    /// itself when the provider serves it and the model supports it, else a surface the request
    /// can be translated to ([`translate::targets`]), taken in the order of the provider's
    /// `supported_api_surfaces` (so a provider listing its own format first is called in it).
    pub fn upstream_surface(&self, surface: Surface) -> Option<Surface> {
        if self.provider.surface_spec(surface).is_some() && self.model_supports(surface) {
            return Some(surface);
        }
        let targets = translate::targets(surface);
        self.provider.surfaces.iter().find_map(|spec| {
            targets
                .iter()
                .copied()
                .find(|&target| spec.covers(target) && self.model_supports(target))
        })
    }

    fn model_supports(&self, surface: Surface) -> bool {
        self.model.surfaces.is_empty() || self.model.surfaces.contains(&surface)
    }

    /// The `AIModel` value strategies see (`ai.models` elements), with `metrics` supplied by the caller.
    pub fn to_json(&self, metrics: Value) -> Value {
        let m = &self.model;
        let p = &self.provider;
        let pricing = m.pricing.map_or(
            Value::Null,
            |pr| json!({"input": pr.input, "output": pr.output}),
        );
        json!({
            "id": m.id,
            "id_aliases": m.id_aliases,
            "provider_id": p.id,
            "provider_id_aliases": p.id_aliases,
            "author_id": m.author_id.clone().unwrap_or_default(),
            "author_id_aliases": [],
            "display_name": m.display_name.clone().unwrap_or_else(|| m.id.clone()),
            "description": m.description.clone().unwrap_or_default(),
            "known": m.known,
            "custom": m.custom,
            "metadata": Value::Object(merged_metadata(p, m)),
            "input_modalities": m.input_modalities,
            "output_modalities": m.output_modalities,
            "supported_features": m.supported_features,
            "max_context_window": m.max_context_window.unwrap_or(0),
            "max_output_tokens": m.max_output_tokens.unwrap_or(0),
            "pricing": pricing,
            "datacenters": [],
            "metrics": metrics,
        })
    }
}

/// Provider metadata with the model's metadata layered on top.
fn merged_metadata(provider: &Provider, model: &Model) -> Map<String, Value> {
    let mut merged = provider.metadata.clone();
    merged.extend(model.metadata.clone());
    merged
}

/// A client-named model that was dropped, and why (`client.rejected_models[]`): one reason per
/// provider that offers the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub model: String,
    pub reasons: Vec<RejectReason>,
}

impl Rejection {
    /// The reasons as one sentence, `; `-separated.
    pub fn reason(&self) -> String {
        let texts: Vec<String> = self.reasons.iter().map(ToString::to_string).collect();
        texts.join("; ")
    }

    /// The `only_allow_configured_*` switch that refused this model, when only those switches
    /// did (the first reason's, if the model's providers met both).
    pub fn restriction(&self) -> Option<Restriction> {
        let restriction = |reason: &RejectReason| match reason {
            RejectReason::ProviderNotAllowed { .. } => Some(Restriction::Provider),
            RejectReason::ModelNotAllowed { .. } => Some(Restriction::Model),
            _ => None,
        };
        let first = restriction(self.reasons.first()?)?;
        self.reasons
            .iter()
            .all(|r| restriction(r).is_some())
            .then_some(first)
    }
}

/// Which `only_allow_configured_*` switch refused a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restriction {
    /// `only_allow_configured_providers`.
    Provider,
    /// `only_allow_configured_models`.
    Model,
}

/// Why one candidate for a client-named model cannot be used. The messages follow ngrok's where
/// it has one ("... is not allowed by gateway configuration").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    #[error("unknown model '{name}'")]
    UnknownModel { name: String },
    #[error("provider '{provider}' is disabled")]
    ProviderDisabled { provider: String },
    #[error("Provider '{provider}' is not allowed by gateway configuration")]
    ProviderNotAllowed { provider: String },
    #[error("model '{model}' is disabled")]
    ModelDisabled { model: String },
    #[error("Model '{model}' is not allowed by gateway configuration")]
    ModelNotAllowed { model: String },
    #[error("provider '{provider}' does not serve the {format} surface '{surface}'")]
    SurfaceNotServed {
        provider: String,
        format: &'static str,
        surface: Surface,
    },
    #[error("model '{model}' does not support surface '{surface}'")]
    SurfaceNotSupported { model: String, surface: Surface },
}

impl RejectReason {
    /// Whether the candidate was refused for the request's format or surface only (not by the
    /// policy): when every reason is, the answer is `ERR_KEYGATE_3813`.
    fn is_format(&self) -> bool {
        matches!(
            self,
            RejectReason::SurfaceNotServed { .. } | RejectReason::SurfaceNotSupported { .. }
        )
    }
}

/// The outcome of resolving the client's requested models.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// Usable candidates in client order (`model` first, then `models`).
    pub candidates: Vec<Candidate>,
    pub rejected: Vec<Rejection>,
}

/// Why no requested model can be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    /// `ERR_KEYGATE_3804`.
    #[error("no matching models: {}", describe(.rejected))]
    NoMatchingModels { rejected: Vec<Rejection> },
    /// `ERR_KEYGATE_3813`.
    #[error("no models compatible with the {format} API format on surface '{surface}': {}", describe(.rejected))]
    IncompatibleFormat {
        format: &'static str,
        surface: Surface,
        rejected: Vec<Rejection>,
    },
}

fn describe(rejected: &[Rejection]) -> String {
    rejected
        .iter()
        .map(|r| format!("'{}' ({})", r.model, r.reason()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A configuration problem, located by a path relative to the action's `config`.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{path}: {message}")]
pub struct RegistryError {
    pub path: String,
    pub message: String,
}

/// See [`Registry::by_name`]: the same answers as asking every model of every provider
/// `answers_to(name)` and keeping each provider's first.
fn name_index(
    providers: &[(Arc<Provider>, Vec<Arc<Model>>)],
) -> HashMap<String, Vec<(usize, usize)>> {
    let mut index: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
    for (p, (_, models)) in providers.iter().enumerate() {
        for (m, model) in models.iter().enumerate() {
            for name in std::iter::once(&model.id).chain(&model.id_aliases) {
                let entry = index.entry(name.to_ascii_lowercase()).or_default();
                if entry.last().is_none_or(|&(last, _)| last != p) {
                    entry.push((p, m));
                }
            }
        }
    }
    index
}

/// The merged provider/model universe of one policy.
#[derive(Debug, Clone)]
pub struct Registry {
    providers: Vec<(Arc<Provider>, Vec<Arc<Model>>)>,
    /// Lower-case model id or alias → (provider, model) indices: per provider the first model that
    /// answers to the name, providers in candidate order. Built once, so resolving a request
    /// does not compare the name with every catalog model.
    by_name: HashMap<String, Vec<(usize, usize)>>,
    only_allow_configured_providers: bool,
    only_allow_configured_models: bool,
}

impl Registry {
    /// Merges `spec` into `catalog`.
    pub fn new(spec: &GatewaySpec, catalog: &Catalog) -> Result<Registry, RegistryError> {
        let mut merged = Vec::new();
        let mut taken_builtins = HashSet::new();
        for (index, config) in spec.providers.iter().enumerate() {
            let err = |field: &str, message: String| RegistryError {
                path: format!("providers[{index}]{field}"),
                message,
            };
            if config.id.trim().is_empty() {
                return Err(err(".id", "must not be empty".into()));
            }
            if let Some(surfaces) = &config.supported_api_surfaces {
                for (i, s) in surfaces.iter().enumerate() {
                    s.validate()
                        .map_err(|m| err(&format!(".supported_api_surfaces[{i}]"), m))?;
                }
            }
            let builtin = catalog
                .providers
                .iter()
                .find(|p| p.id.eq_ignore_ascii_case(&config.id));
            let entry = match builtin {
                Some(builtin) => {
                    taken_builtins.insert(builtin.id.clone());
                    merge_builtin(builtin, config, index)
                }
                None => {
                    let shadowed: Vec<&ProviderSpec> = catalog
                        .providers
                        .iter()
                        .filter(|b| {
                            config
                                .id_aliases
                                .iter()
                                .any(|a| a.eq_ignore_ascii_case(&b.id))
                        })
                        .collect();
                    taken_builtins.extend(shadowed.iter().map(|b| b.id.clone()));
                    custom_provider(config, index, shadowed.first().copied())
                        .map_err(|m| err(".base_url", m))?
                }
            };
            check_models(&entry.1).map_err(|(i, m)| err(&format!(".models[{i}]"), m))?;
            merged.push(entry);
        }
        for builtin in &catalog.providers {
            if !taken_builtins.contains(&builtin.id) {
                merged.push(merge_builtin(
                    builtin,
                    &ProviderSpec {
                        id: builtin.id.clone(),
                        ..Default::default()
                    },
                    usize::MAX,
                ));
            }
        }
        check_provider_names(&merged)?;
        for (provider, _) in &mut merged {
            if provider.builtin {
                if let Some(url) = spec.provider_urls.get(&provider.id) {
                    provider.base_url = url.trim_end_matches('/').to_owned();
                }
            }
        }
        let providers: Vec<(Arc<Provider>, Vec<Arc<Model>>)> = merged
            .into_iter()
            .map(|(p, models)| (Arc::new(p), models.into_iter().map(Arc::new).collect()))
            .collect();
        Ok(Registry {
            by_name: name_index(&providers),
            providers,
            only_allow_configured_providers: spec.only_allow_configured_providers,
            only_allow_configured_models: spec.only_allow_configured_models,
        })
    }

    /// Every provider, in candidate order.
    pub fn providers(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.providers.iter().map(|(p, _)| p)
    }

    /// Every provider with its models (configured, catalogued and discovered), in candidate order.
    pub fn provider_models(&self) -> impl Iterator<Item = (&Arc<Provider>, &[Arc<Model>])> {
        self.providers.iter().map(|(p, m)| (p, m.as_slice()))
    }

    /// This registry with `discovered` merged in: each provider's discovered ids are added after
    /// its own models, as configured models without catalog data (`custom`, `discovered`); an id
    /// or alias the provider already answers to is left as it is. Call it on the registry built
    /// from the policy (without discoveries), once per change of the snapshot: the providers are
    /// shared, the name index is rebuilt.
    pub fn with_discovered(&self, discovered: &DiscoveredModels) -> Registry {
        if discovered.is_empty() {
            return self.clone();
        }
        let providers: Vec<(Arc<Provider>, Vec<Arc<Model>>)> = self
            .providers
            .iter()
            .map(|(provider, models)| {
                let mut models = models.clone();
                let own = models.len();
                for id in discovered.get(&provider.id).unwrap_or_default() {
                    if !models[..own].iter().any(|m| m.answers_to(id)) {
                        models.push(Arc::new(Model::discovered(id)));
                    }
                }
                (provider.clone(), models)
            })
            .collect();
        Registry {
            by_name: name_index(&providers),
            providers,
            only_allow_configured_providers: self.only_allow_configured_providers,
            only_allow_configured_models: self.only_allow_configured_models,
        }
    }

    /// Every model usable on `surface` (`ai.models`, `GET /v1/models`); `None` = any forwarded surface.
    pub fn available(&self, surface: Option<Surface>) -> Vec<Candidate> {
        let mut out = Vec::new();
        for (provider, models) in &self.providers {
            for model in models {
                let candidate = Candidate {
                    provider: provider.clone(),
                    model: model.clone(),
                };
                let usable = match surface {
                    Some(surface) => self.exclusion(&candidate, surface).is_none(),
                    None => Surface::FORWARDED
                        .iter()
                        .any(|s| self.exclusion(&candidate, *s).is_none()),
                };
                if usable {
                    out.push(candidate);
                }
            }
        }
        out
    }

    /// Resolves client model names (bare id, alias, `provider:model`, pass-through) for `surface`.
    pub fn resolve(
        &self,
        requested: &[String],
        surface: Surface,
    ) -> Result<Resolution, ResolveError> {
        let mut candidates: Vec<Candidate> = Vec::new();
        let mut rejected = Vec::new();
        let mut format_only = true;
        for name in requested {
            let found = self.lookup(name);
            if found.is_empty() {
                format_only = false;
                let reason = if self.pinned(name).is_some() && self.only_allow_configured_models {
                    RejectReason::ModelNotAllowed {
                        model: name.clone(),
                    }
                } else {
                    RejectReason::UnknownModel { name: name.clone() }
                };
                rejected.push(Rejection {
                    model: name.clone(),
                    reasons: vec![reason],
                });
                continue;
            }
            let before = candidates.len();
            let mut reasons = Vec::new();
            for candidate in found {
                match self.exclusion(&candidate, surface) {
                    None if !candidates.iter().any(|c| c.same_as(&candidate)) => {
                        candidates.push(candidate)
                    }
                    None => {}
                    Some(reason) => {
                        format_only &= reason.is_format();
                        reasons.push(reason);
                    }
                }
            }
            if candidates.len() == before && !reasons.is_empty() {
                rejected.push(Rejection {
                    model: name.clone(),
                    reasons,
                });
            }
        }
        if candidates.is_empty() {
            return Err(if format_only && !rejected.is_empty() {
                ResolveError::IncompatibleFormat {
                    format: surface.format().name(),
                    surface,
                    rejected,
                }
            } else {
                ResolveError::NoMatchingModels { rejected }
            });
        }
        Ok(Resolution {
            candidates,
            rejected,
        })
    }

    /// Every (provider, model) a client name refers to, before allow/format filtering.
    fn lookup(&self, name: &str) -> Vec<Candidate> {
        let name = name.trim();
        if let Some((prefix, model)) = self.pinned(name) {
            // Every provider answering to the prefix: a regional copy aliasing a provider's id
            // serves its `provider:` names too, in candidate order.
            return (self.providers.iter())
                .filter(|(p, _)| p.answers_to(prefix))
                .filter_map(|(p, models)| {
                    let model = match models.iter().find(|m| m.answers_to(model)) {
                        Some(m) => m.clone(),
                        None if self.only_allow_configured_models || model.is_empty() => {
                            return None
                        }
                        None => Arc::new(Model::pass_through(model)),
                    };
                    Some(Candidate {
                        provider: p.clone(),
                        model,
                    })
                })
                .collect();
        }
        let found = match self.by_name.get(name) {
            Some(found) => Some(found),
            None if name.bytes().any(|b| b.is_ascii_uppercase()) => {
                self.by_name.get(&name.to_ascii_lowercase())
            }
            None => None,
        };
        found
            .into_iter()
            .flatten()
            .map(|&(provider, model)| {
                let (p, models) = &self.providers[provider];
                Candidate {
                    provider: p.clone(),
                    model: models[model].clone(),
                }
            })
            .collect()
    }

    /// `provider:model` → (provider part, model part), when the prefix names a provider.
    fn pinned<'n>(&self, name: &'n str) -> Option<(&'n str, &'n str)> {
        let (prefix, model) = name.split_once(':')?;
        (self.providers.iter())
            .any(|(p, _)| p.answers_to(prefix))
            .then_some((prefix, model))
    }

    fn exclusion(&self, candidate: &Candidate, surface: Surface) -> Option<RejectReason> {
        let (p, m) = (&candidate.provider, &candidate.model);
        if p.disabled {
            return Some(RejectReason::ProviderDisabled {
                provider: p.id.clone(),
            });
        }
        if self.only_allow_configured_providers && !p.configured {
            return Some(RejectReason::ProviderNotAllowed {
                provider: p.id.clone(),
            });
        }
        if m.disabled {
            return Some(RejectReason::ModelDisabled {
                model: m.id.clone(),
            });
        }
        if self.only_allow_configured_models && !m.custom {
            return Some(RejectReason::ModelNotAllowed {
                model: m.id.clone(),
            });
        }
        if candidate.upstream_surface(surface).is_some() {
            return None;
        }
        if p.surface_spec(surface).is_none() {
            return Some(RejectReason::SurfaceNotServed {
                provider: p.id.clone(),
                format: surface.format().name(),
                surface,
            });
        }
        Some(RejectReason::SurfaceNotSupported {
            model: m.id.clone(),
            surface,
        })
    }
}

fn merge_builtin(
    builtin: &ProviderSpec,
    config: &ProviderSpec,
    index: usize,
) -> (Provider, Vec<Model>) {
    let configured = index != usize::MAX;
    let mut aliases = builtin.id_aliases.clone();
    extend_unique(&mut aliases, &config.id_aliases);
    let base_url = config
        .base_url
        .as_deref()
        .or(builtin.base_url.as_deref())
        .unwrap_or_default();
    let provider = Provider {
        id: builtin.id.clone(),
        id_aliases: aliases,
        display_name: config
            .display_name
            .clone()
            .or_else(|| builtin.display_name.clone()),
        description: config
            .description
            .clone()
            .or_else(|| builtin.description.clone()),
        website: config.website.clone().or_else(|| builtin.website.clone()),
        base_url: base_url.trim_end_matches('/').to_owned(),
        builtin: true,
        configured,
        disabled: config.disabled,
        requires_api_key: builtin.requires_api_key.unwrap_or(true),
        metadata: config.metadata.clone(),
        surfaces: config
            .supported_api_surfaces
            .clone()
            .or_else(|| builtin.supported_api_surfaces.clone())
            .unwrap_or_default(),
        config_index: configured.then_some(index),
        plain_targets: Default::default(),
        stream_usage: StreamUsage::default(),
    };
    let mut models: Vec<Model> = builtin
        .models
        .iter()
        .map(|m| Model::from_spec(m, true, false))
        .collect();
    for spec in &config.models {
        match models
            .iter_mut()
            .find(|m| m.id.eq_ignore_ascii_case(&spec.id))
        {
            Some(existing) => existing.overlay(spec),
            None => models.push(Model::from_spec(spec, false, true)),
        }
    }
    (provider, models)
}

fn custom_provider(
    config: &ProviderSpec,
    index: usize,
    shadowed: Option<&ProviderSpec>,
) -> Result<(Provider, Vec<Model>), String> {
    let Some(base_url) = config.base_url.as_deref() else {
        return Err(format!("custom provider '{}' needs a base_url", config.id));
    };
    if !(base_url.starts_with("https://")
        || base_url.starts_with("http://")
        || base_url.starts_with("mock://"))
    {
        return Err(format!(
            "base_url '{base_url}' must start with https:// or http://"
        ));
    }
    let default_surfaces = vec![SurfaceSpec {
        format: ApiFormat::OpenAi,
        surface: None,
        supported_params: vec![],
    }];
    let surfaces = config
        .supported_api_surfaces
        .clone()
        .or_else(|| shadowed.and_then(|s| s.supported_api_surfaces.clone()))
        .unwrap_or(default_surfaces);
    let mut models: Vec<Model> = config
        .models
        .iter()
        .map(|m| Model::from_spec(m, false, true))
        .collect();
    if models.is_empty() {
        if let Some(shadowed) = shadowed {
            models = shadowed
                .models
                .iter()
                .map(|m| Model::from_spec(m, true, false))
                .collect();
        }
    }
    let provider = Provider {
        id: config.id.clone(),
        id_aliases: config.id_aliases.clone(),
        display_name: config.display_name.clone(),
        description: config.description.clone(),
        website: config.website.clone(),
        base_url: base_url.trim_end_matches('/').to_owned(),
        builtin: false,
        configured: true,
        disabled: config.disabled,
        requires_api_key: false,
        metadata: config.metadata.clone(),
        surfaces,
        config_index: Some(index),
        plain_targets: Default::default(),
        stream_usage: StreamUsage::default(),
    };
    Ok((provider, models))
}

/// Model ids and aliases must be unique within a provider.
fn check_models(models: &[Model]) -> Result<(), (usize, String)> {
    let mut seen: HashMap<String, &str> = HashMap::new();
    for (i, model) in models.iter().enumerate() {
        for name in std::iter::once(&model.id).chain(&model.id_aliases) {
            if let Some(other) = seen.insert(name.to_ascii_lowercase(), &model.id) {
                if other != model.id {
                    return Err((
                        i,
                        format!(
                            "id or alias '{name}' of model '{}' is already used by model '{other}'",
                            model.id
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Provider ids must be unique across the merged set. Aliases may be shared: ngrok's
/// multi-region pattern adds `id: openai-eu` with `id_aliases: [openai]` beside `id: openai`, and
/// `openai:` names then reach both, in candidate order, for the strategy to choose.
fn check_provider_names(merged: &[(Provider, Vec<Model>)]) -> Result<(), RegistryError> {
    let mut seen: HashMap<String, Option<usize>> = HashMap::new();
    for (provider, _) in merged {
        let id = provider.id.to_ascii_lowercase();
        if let Some(other_index) = seen.insert(id, provider.config_index) {
            let index = provider.config_index.or(other_index).unwrap_or(0);
            return Err(RegistryError {
                path: format!("providers[{index}].id"),
                message: format!("provider '{}' is configured twice", provider.id),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
