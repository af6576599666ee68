//! `ai-gateway`: routes OpenAI- and Anthropic-format requests to providers with server-side
//! keys, model resolution, selection strategies, failover across keys and models, and streamed
//! responses metered as they pass.
//!
//! This module is the policy side: `config` (the strict schema), `strategy` + `chain` (CEL model
//! selection), `pipeline` (one request from body to candidates, the templates rendered, the key
//! source), `budget` (access keys' request limits and token/spend budgets), `results`
//! (`actions.ngrok.ai_gateway.*`), `errors` (the error responses). The call itself (attempts,
//! failover, the metered stream) runs in `keygate_ai_gateway::Runtime`, built here once per
//! action.

mod budget;
mod chain;
mod config;
mod discovery;
mod errors;
mod pipeline;
mod results;
mod strategy;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use keygate_ai::redaction::{DEFAULT_HOLD_BACK, MAX_HOLD_BACK};
use keygate_ai::{Catalog, GatewaySpec, MetricsStore, Redaction, Registry, Rule};
use keygate_ai_gateway::{Health, HealthTracker, Runtime, Upstreams};
use keygate_cel::Template;

use crate::access_keys::AccessKeyMode;
use crate::action::{Action, ActionFuture, ActionKind, Phase, Termination};
use crate::actions::find_replace;
use crate::actions::header_templates::HeaderTemplates;
use crate::actions::value_template::ValueTemplate;
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::exchange::Exchange;
use budget::KeyBudgets;
pub use config::parse_duration;
pub(crate) use config::OnError;
use config::{
    Config, ProviderTls, RedactConfig, DEFAULT_HEALTH_COOLDOWN, DEFAULT_PER_REQUEST_TIMEOUT,
    DEFAULT_TOTAL_TIMEOUT, MAX_TOKEN_LIMIT,
};
use discovery::Discovery;
use keygate_http::{ClientCert, HttpClient, TlsFiles};
use strategy::Strategy;

pub const KIND: ActionKind = ActionKind {
    name: "ai-gateway",
    result_name: "ai_gateway",
    phases: &[Phase::OnHttpRequest],
    termination: Termination::Sometimes,
    needs_config: false,
    build,
};

/// Rolling per-(provider, model) statistics behind `m.metrics`, shared by every policy load so a
/// reload keeps the history.
static METRICS: LazyLock<MetricsStore> =
    LazyLock::new(|| MetricsStore::new(Duration::from_secs(300), 1024));

/// Which providers stopped answering (by id and base URL), shared by every policy load like
/// [`METRICS`], so a reload neither forgets a hung provider nor waits on it again.
static HEALTH: LazyLock<HealthTracker> = LazyLock::new(HealthTracker::new);

/// A compiled `ai-gateway` action.
struct AiGateway {
    /// The registry (`registry()`), with the models discovered from providers' servers.
    discovery: Discovery,
    /// `providers[i].api_keys[j].value`, by provider config index.
    keys: Vec<Vec<Template>>,
    /// Some provider has server-side keys: the client's credential then never goes upstream.
    server_keys: bool,
    strategies: Vec<Strategy>,
    /// Some strategy reads `metrics`: only then are `m.metrics` values built per request.
    strategies_read_metrics: bool,
    /// Something in the policy reads `actions.ngrok.ai_gateway`: only then are results built.
    publish_results: bool,
    headers: HeaderTemplates,
    query_params: Vec<(String, Template)>,
    body: Option<ValueTemplate>,
    max_input_tokens: Option<u64>,
    max_output_tokens: Option<u64>,
    on_error: OnError,
    /// Attempts, failover and the metered stream.
    runtime: Runtime,
    access_keys: Option<AccessKeyMode>,
    /// Access keys' request limits and budgets.
    budgets: KeyBudgets,
}

fn build(cx: &BuildContext<'_>) -> Result<Box<dyn Action>, Diagnostic> {
    let config: Config = cx.config()?;
    for (field, value) in [
        ("max_input_tokens", config.max_input_tokens),
        ("max_output_tokens", config.max_output_tokens),
    ] {
        if value.is_some_and(|v| v == 0 || v > MAX_TOKEN_LIMIT) {
            return Err(cx.error(
                field,
                format!("{field} must be between 1 and {MAX_TOKEN_LIMIT}"),
            ));
        }
    }
    if config
        .api_key_selection
        .as_ref()
        .is_some_and(|s| !s.strategy.is_empty())
    {
        return Err(cx.error(
            "api_key_selection",
            "api_key_selection is deprecated and not supported by Keygate: keys are tried in the order listed",
        ));
    }
    let duration = |field: &str, value: &Option<String>, default: Duration| match value {
        Some(text) => parse_duration(text).map_err(|m| cx.error(field, m)),
        None => Ok(default),
    };
    let per_request_timeout = duration(
        "per_request_timeout",
        &config.per_request_timeout,
        DEFAULT_PER_REQUEST_TIMEOUT,
    )?;
    let total_timeout = duration(
        "total_timeout",
        &config.total_timeout,
        DEFAULT_TOTAL_TIMEOUT,
    )?;
    let health_cooldown = duration(
        "provider_health.cooldown",
        &config.provider_health.cooldown,
        DEFAULT_HEALTH_COOLDOWN,
    )?;
    let spec = GatewaySpec {
        providers: config
            .providers
            .iter()
            .map(config::ProviderConfig::spec)
            .collect(),
        only_allow_configured_providers: config.only_allow_configured_providers,
        only_allow_configured_models: config.only_allow_configured_models,
        provider_urls: (*cx.deps.provider_urls).clone(),
    };
    // Whether it can ever answer is checked with discovery (`Discovery::build`).
    let registry =
        Registry::new(&spec, Catalog::builtin()).map_err(|e| cx.error(&e.path, e.message))?;
    let mut keys = Vec::with_capacity(config.providers.len());
    for (i, provider) in config.providers.iter().enumerate() {
        let mut templates = Vec::with_capacity(provider.api_keys.len());
        for (j, key) in provider.api_keys.iter().enumerate() {
            let field = format!("providers[{i}].api_keys[{j}].value");
            if key.value.trim().is_empty() {
                return Err(cx.error(&field, "an API key value must not be empty"));
            }
            templates.push(cx.template(&field, &key.value)?);
        }
        keys.push(templates);
    }
    let server_keys = keys.iter().any(|k| !k.is_empty());
    let provider_http = config
        .providers
        .iter()
        .enumerate()
        .map(|(i, provider)| provider_client(cx, i, provider.tls.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    let discovery = Discovery::build(cx, &config.providers, registry, &keys, &provider_http)?;
    let strategies = match &config.model_selection {
        Some(selection) => selection
            .strategy
            .iter()
            .enumerate()
            .map(|(i, source)| {
                Strategy::build(cx, &format!("model_selection.strategy[{i}]"), source)
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let headers = HeaderTemplates::build(cx, "headers", &config.headers)?;
    let query_params = config
        .query_params
        .iter()
        .map(|(name, value)| {
            Ok((
                name.clone(),
                cx.template(&format!("query_params.{name}"), value)?,
            ))
        })
        .collect::<Result<Vec<_>, Diagnostic>>()?;
    let body = if config.body.is_empty() {
        None
    } else {
        Some(ValueTemplate::build(
            cx,
            "body",
            &serde_json::Value::Object(config.body),
        )?)
    };
    let redaction = config
        .redact
        .as_ref()
        .map(|redact| redaction(cx, redact))
        .transpose()?;
    let strategies_read_metrics = strategies.iter().any(|s| s.source().contains("metrics"));
    let publish_results = cx.results_read(KIND.result_name);
    let runtime = Runtime {
        upstreams: Upstreams::http(cx.deps.http.clone(), provider_http),
        per_request_timeout,
        total_timeout,
        // A stream may be silent between two chunks as long as an attempt may wait for its first.
        stream_idle_timeout: per_request_timeout,
        server_keys,
        // Only the published results show provider headers.
        keep_response_headers: publish_results,
        // Samples feed `m.metrics`; only a strategy that reads them pays for them.
        metrics: strategies_read_metrics.then_some(&*METRICS),
        // Providers that stop answering are tried after the healthy ones.
        health: config.provider_health.enabled.then_some(Health {
            tracker: &HEALTH,
            cooldown: health_cooldown,
        }),
        redaction,
    };
    Ok(Box::new(AiGateway {
        discovery,
        keys,
        server_keys,
        strategies_read_metrics,
        publish_results,
        strategies,
        headers,
        query_params,
        body,
        max_input_tokens: config.max_input_tokens,
        max_output_tokens: config.max_output_tokens,
        on_error: config.on_error,
        runtime,
        access_keys: config.access_keys,
        budgets: KeyBudgets {
            store: cx.deps.budgets.clone(),
            limiter: cx.deps.rate_limiter.clone(),
        },
    }))
}

/// The compiled `redact` option.
fn redaction(cx: &BuildContext<'_>, config: &RedactConfig) -> Result<Arc<Redaction>, Diagnostic> {
    let hold_back = config.hold_back_bytes.unwrap_or(DEFAULT_HOLD_BACK);
    if hold_back == 0 || hold_back > MAX_HOLD_BACK {
        return Err(cx.error(
            "redact.hold_back_bytes",
            format!("hold_back_bytes must be between 1 and {MAX_HOLD_BACK}"),
        ));
    }
    let rules = find_replace::fixed(cx, "redact.replacements", &config.replacements)?
        .into_iter()
        .map(|(pattern, to)| Rule::new(pattern, &to))
        .collect();
    Ok(Arc::new(Redaction::new(rules, hold_back)))
}

/// The client for provider `index` when it has a `tls` block; its files are read (checked) now.
fn provider_client(
    cx: &BuildContext<'_>,
    index: usize,
    tls: Option<&ProviderTls>,
) -> Result<Option<HttpClient>, Diagnostic> {
    let Some(tls) = tls else {
        return Ok(None);
    };
    let field = |name: &str| format!("providers[{index}].tls.{name}");
    let client_cert = match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(cert_file), Some(key_file)) => Some(ClientCert {
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
        }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(cx.error(
                &field("client_cert_file"),
                "client_cert_file needs client_key_file",
            ))
        }
        (None, Some(_)) => {
            return Err(cx.error(
                &field("client_key_file"),
                "client_key_file needs client_cert_file",
            ))
        }
    };
    let files = TlsFiles {
        ca_files: tls.ca_file.iter().cloned().collect(),
        client_cert,
    };
    cx.deps.http.with_tls(&files).map(Some).map_err(|err| {
        let name = if tls.ca_file.as_ref() == Some(&err.file) {
            "ca_file"
        } else if tls.client_cert_file.as_ref() == Some(&err.file) {
            "client_cert_file"
        } else {
            "client_key_file"
        };
        cx.error(&field(name), format!("invalid TLS file {err}"))
    })
}

impl Action for AiGateway {
    fn run<'a>(&'a self, ex: &'a mut Exchange) -> ActionFuture<'a> {
        Box::pin(self.handle(ex))
    }

    fn access_keys(&self) -> Option<AccessKeyMode> {
        self.access_keys
    }
}

#[cfg(test)]
mod tests;
