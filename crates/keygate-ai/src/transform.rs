//! Turning the client's body into the upstream body for one candidate:
//! set the upstream model id, drop `models`, strip parameters, merge the configured `body`,
//! cap output tokens, and ask for streamed usage when the client did not.

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::registry::Candidate;
use crate::request::ClientRequest;
use crate::translate::{self, ir::Invalid, ir::Removed, TranslatedRequest};
use crate::Surface;

/// The output limit of a translated request that needs one when the model's is unknown.
const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Keys an allowlist never removes: without them the request is meaningless.
const ALWAYS_KEPT: [&str; 2] = ["model", "stream"];

/// Per-policy settings that shape every upstream body.
#[derive(Debug, Clone, Default)]
pub struct BodyOptions {
    /// `body`: top-level fields that override the client's.
    pub overrides: Map<String, Value>,
    /// `max_output_tokens`: cap on the output-token field of the surface.
    pub max_output_tokens: Option<u64>,
}

/// The upstream body and what was changed for streaming.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedBody<'a> {
    /// The rewritten object, or `None` when the client's body goes out as sent.
    rewritten: Option<Map<String, Value>>,
    /// Keygate set `stream_options.include_usage` itself: drop the extra usage chunk for the client.
    pub added_include_usage: bool,
    /// The surface the body is sent to: the client's, or the one it was translated for.
    pub surface: Surface,
    /// Client fields the translation had no place for (empty when not translated).
    pub removed: Removed,
    request: &'a ClientRequest,
}

impl PreparedBody<'_> {
    /// The upstream object (the client's own when nothing had to change).
    pub fn json(&self) -> &Map<String, Value> {
        self.rewritten
            .as_ref()
            .unwrap_or_else(|| self.request.body())
    }

    /// Whether the client's bytes are sent as they are.
    pub fn is_unchanged(&self) -> bool {
        self.rewritten.is_none()
    }

    /// The serialized body: the client's bytes themselves when nothing changed.
    pub fn to_bytes(&self) -> Bytes {
        match &self.rewritten {
            None => self.request.raw.clone(),
            // Serializing a map of JSON values cannot fail.
            Some(json) => serde_json::to_vec(json).unwrap_or_default().into(),
        }
    }

    /// Whether the body was translated into another format.
    pub fn is_translated(&self, client_surface: Surface) -> bool {
        self.surface != client_surface
    }

    /// Whether the upstream body asks for a stream.
    pub fn streaming(&self) -> bool {
        match &self.rewritten {
            None => self.request.stream,
            Some(json) => json.get("stream").and_then(Value::as_bool).unwrap_or(false),
        }
    }
}

/// Builds the body sent to `candidate` for a request on `surface`. A request already in the
/// provider's shape (decided from the fields read at parse time, without a JSON tree) is
/// forwarded byte for byte; otherwise the client's object is copied and rewritten, or
/// translated first when the candidate does not serve `surface`
/// ([`Candidate::upstream_surface`]). Fails only when the body cannot be translated.
pub fn prepare_body<'a>(
    request: &'a ClientRequest,
    surface: Surface,
    candidate: &Candidate,
    options: &BodyOptions,
) -> Result<PreparedBody<'a>, Invalid> {
    match candidate.upstream_surface(surface) {
        Some(upstream) if upstream != surface => {
            translated_body(request, surface, upstream, candidate, options)
        }
        _ => Ok(native_body(request, surface, candidate, options)),
    }
}

/// The client's body for a provider of its own format.
fn native_body<'a>(
    request: &'a ClientRequest,
    surface: Surface,
    candidate: &Candidate,
    options: &BodyOptions,
) -> PreparedBody<'a> {
    let model = &candidate.model.id;
    let allowlist = candidate
        .provider
        .surface_spec(surface)
        .map(|s| &s.supported_params[..])
        .unwrap_or_default();
    let allowed = |key: &str| ALWAYS_KEPT.contains(&key) || allowlist.iter().any(|p| p.name == key);
    let denylist = &candidate.model.unsupported_params;
    let denied = |key: &str| key != "model" && denylist.iter().any(|d| d == key);
    let stream_options_allowed = (allowlist.is_empty()
        || allowlist.iter().any(|p| p.name == "stream_options"))
        && !denylist.iter().any(|p| p == "stream_options");
    // Streamed usage is asked for where the surface reports it and the provider takes it.
    let usage_applies = stream_options_allowed
        && matches!(surface, Surface::ChatCompletions | Surface::Completions);
    let unchanged = request.model.as_ref() == Some(model)
        && !request.has_key("models")
        && (allowlist.is_empty() || request.keys.iter().all(|key| allowed(key)))
        && !request.keys.iter().any(|key| denied(key))
        && options.overrides.is_empty()
        && options.max_output_tokens.is_none()
        && !(usage_applies && request.stream && !request.include_usage);
    if unchanged {
        return PreparedBody {
            rewritten: None,
            added_include_usage: false,
            surface,
            removed: Removed::default(),
            request,
        };
    }
    let mut json = request.body().clone();
    json.remove("models");
    reshape(&mut json, surface, candidate, options);
    let added_include_usage = usage_applies
        && json.get("stream").and_then(Value::as_bool) == Some(true)
        && json
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            != Some(true);
    if added_include_usage {
        add_include_usage(&mut json);
    }
    PreparedBody {
        rewritten: Some(json),
        added_include_usage,
        surface,
        removed: Removed::default(),
        request,
    }
}

/// The client's body translated from `surface` to `upstream`. The output limit Messages
/// requires defaults to the model's maximum (what the client gets from a provider that needs
/// none). Streamed usage is the translator's to ask for and to pass on.
fn translated_body<'a>(
    request: &'a ClientRequest,
    surface: Surface,
    upstream: Surface,
    candidate: &Candidate,
    options: &BodyOptions,
) -> Result<PreparedBody<'a>, Invalid> {
    let max_tokens = options
        .max_output_tokens
        .or(candidate.model.max_output_tokens)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let mut translated = translate::request(surface, upstream, request.body(), max_tokens)?;
    translated.removed.forget("models");
    fit_model(&mut translated, upstream, candidate);
    reshape(&mut translated.body, upstream, candidate, options);
    Ok(PreparedBody {
        rewritten: Some(translated.body),
        added_include_usage: false,
        surface: upstream,
        removed: translated.removed,
        request,
    })
}

/// Fits a translated body to what the model takes: a known model without the `reasoning`
/// feature gets no reasoning settings (Claude Code asks for thinking whatever the model, and
/// OpenAI refuses `reasoning_effort` for gpt-4o), and OpenAI's chat endpoint gets its output
/// limit as `max_completion_tokens` (its reasoning models refuse `max_tokens`).
fn fit_model(translated: &mut TranslatedRequest, upstream: Surface, candidate: &Candidate) {
    let model = &candidate.model;
    let body = &mut translated.body;
    if model.known && !model.supported_features.iter().any(|f| f == "reasoning") {
        for key in ["thinking", "reasoning", "reasoning_effort"] {
            if body.remove(key).is_some() {
                translated.removed.note("reasoning");
            }
        }
    }
    if upstream == Surface::ChatCompletions && candidate.provider.id == "openai" {
        if let Some(limit) = body.remove("max_tokens") {
            body.insert("max_completion_tokens".into(), limit);
        }
    }
}

/// Sets the upstream model id, keeps what the provider's allowlist and the model's denylist
/// allow, applies the policy's overrides and caps the output tokens.
fn reshape(
    json: &mut Map<String, Value>,
    surface: Surface,
    candidate: &Candidate,
    options: &BodyOptions,
) {
    let allowlist = candidate
        .provider
        .surface_spec(surface)
        .map(|s| &s.supported_params[..])
        .unwrap_or_default();
    let denylist = &candidate.model.unsupported_params;
    json.insert("model".into(), Value::String(candidate.model.id.clone()));
    if !allowlist.is_empty() {
        json.retain(|key, _| {
            ALWAYS_KEPT.contains(&key.as_str()) || allowlist.iter().any(|p| p.name == *key)
        });
    }
    json.retain(|key, _| key == "model" || !denylist.iter().any(|d| d == key));
    for (key, value) in &options.overrides {
        json.insert(key.clone(), value.clone());
    }
    if let Some(cap) = options.max_output_tokens {
        cap_output_tokens(json, surface, &candidate.provider.id, cap);
    }
}

/// Sets `stream_options.include_usage: true`, replacing a `stream_options` that is not an object.
fn add_include_usage(json: &mut Map<String, Value>) {
    let options = json
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Map::new()));
    if !options.is_object() {
        *options = Value::Object(Map::new());
    }
    if let Value::Object(options) = options {
        options.insert("include_usage".into(), Value::Bool(true));
    }
}

/// `max_output_tokens`: lower any output-token field above the cap; when the
/// client sent none, add the surface's field set to the cap.
fn cap_output_tokens(json: &mut Map<String, Value>, surface: Surface, provider: &str, cap: u64) {
    const FIELDS: [&str; 3] = ["max_tokens", "max_completion_tokens", "max_output_tokens"];
    let mut present = false;
    for field in FIELDS {
        if let Some(value) = json.get_mut(field) {
            present = true;
            if value.as_u64().is_none_or(|v| v > cap) {
                *value = Value::from(cap);
            }
        }
    }
    if present {
        return;
    }
    let field = match surface {
        Surface::ChatCompletions if provider == "openai" => "max_completion_tokens",
        Surface::ChatCompletions | Surface::Completions | Surface::Messages => "max_tokens",
        Surface::Responses => "max_output_tokens",
        Surface::Embeddings | Surface::CountTokens | Surface::Models => return,
    };
    json.insert(field.into(), Value::from(cap));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Catalog, GatewaySpec, Registry};
    use serde_json::json;

    fn candidate(providers: Value, name: &str, surface: Surface) -> Candidate {
        let spec = GatewaySpec {
            providers: serde_json::from_value(providers).unwrap(),
            ..Default::default()
        };
        let reg = Registry::new(&spec, Catalog::builtin()).unwrap();
        reg.resolve(&[name.to_string()], surface)
            .unwrap()
            .candidates
            .remove(0)
    }

    fn request(body: Value) -> ClientRequest {
        ClientRequest::parse(body.to_string().into()).unwrap()
    }

    #[test]
    fn sets_model_drops_models_and_strips_denylisted_params() {
        let c = candidate(json!([]), "o3-2025-04-16", Surface::ChatCompletions);
        let req = request(
            json!({"model": "o3-2025-04-16", "models": ["x"], "temperature": 0.2, "messages": []}),
        );
        let out =
            prepare_body(&req, Surface::ChatCompletions, &c, &BodyOptions::default()).unwrap();
        assert_eq!(
            Value::Object(out.json().clone()),
            json!({"model": "o3", "messages": []})
        );
    }

    #[test]
    fn a_body_already_in_shape_is_forwarded_byte_for_byte() {
        let c = candidate(json!([]), "gpt-4o", Surface::ChatCompletions);
        let raw = r#"{ "messages": [{"role": "user", "content": "hi"}],   "model": "gpt-4o" }"#;
        let req = ClientRequest::parse(raw.into()).unwrap();
        let out =
            prepare_body(&req, Surface::ChatCompletions, &c, &BodyOptions::default()).unwrap();
        assert!(out.is_unchanged());
        assert_eq!(out.to_bytes(), raw.as_bytes());

        let req = request(json!({"model": "gpt-4o", "stream": true}));
        let out =
            prepare_body(&req, Surface::ChatCompletions, &c, &BodyOptions::default()).unwrap();
        assert!(!out.is_unchanged());
        let sent: Value = serde_json::from_slice(&out.to_bytes()).unwrap();
        assert_eq!(
            sent,
            json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true}})
        );
    }

    #[test]
    fn allowlist_then_denylist_then_overrides() {
        let providers = json!([{"id": "vllm", "base_url": "http://127.0.0.1:1/v1",
            "supported_api_surfaces": [{"format": "openai", "surface": "chat-completions",
                "supported_params": [{"name": "messages"}, {"name": "temperature"}, {"name": "seed"}]}],
            "models": [{"id": "qwen", "unsupported_params": [{"name": "seed"}]}]}]);
        let c = candidate(providers, "vllm:qwen", Surface::ChatCompletions);
        let req = request(
            json!({"model": "vllm:qwen", "messages": [1], "temperature": 1, "seed": 4, "user": "u", "stream": false}),
        );
        let options = BodyOptions {
            overrides: Map::from_iter([("temperature".into(), json!(0))]),
            max_output_tokens: None,
        };
        let out = prepare_body(&req, Surface::ChatCompletions, &c, &options).unwrap();
        assert_eq!(
            Value::Object(out.json().clone()),
            json!({"model": "qwen", "messages": [1], "temperature": 0, "stream": false})
        );
    }

    /// The upstream body for `body` (as the bytes sent) and whether include_usage was added.
    fn prepared(
        body: Value,
        surface: Surface,
        candidate: &Candidate,
        options: &BodyOptions,
    ) -> (Value, bool) {
        let request = request(body);
        let out = prepare_body(&request, surface, candidate, options).unwrap();
        let sent: Value = serde_json::from_slice(&out.to_bytes()).unwrap();
        assert_eq!(sent, Value::Object(out.json().clone()));
        (sent, out.added_include_usage)
    }

    #[test]
    fn include_usage_is_added_only_when_missing() {
        let c = candidate(json!([]), "gpt-4o", Surface::ChatCompletions);
        let none = BodyOptions::default();
        let chat = Surface::ChatCompletions;
        let (sent, added) = prepared(json!({"model": "gpt-4o", "stream": true}), chat, &c, &none);
        assert!(added);
        assert_eq!(sent["stream_options"], json!({"include_usage": true}));
        let asked =
            json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true}});
        assert!(!prepared(asked, chat, &c, &none).1);
        let (sent, added) = prepared(json!({"model": "gpt-4o"}), chat, &c, &none);
        assert!(!added && sent.get("stream_options").is_none());
        let claude = candidate(json!([]), "claude-haiku-4-5", Surface::Messages);
        let body = json!({"model": "claude-haiku-4-5", "stream": true});
        let (sent, added) = prepared(body, Surface::Messages, &claude, &none);
        assert!(!added && sent.get("stream_options").is_none());
    }

    #[test]
    fn a_translated_request_fits_the_model() {
        let thinking = json!({"model": "gpt-4o", "max_tokens": 900, "thinking":
            {"type": "enabled", "budget_tokens": 2048},
            "messages": [{"role": "user", "content": "hi"}]});
        let gpt4o = candidate(json!([]), "gpt-4o", Surface::Messages);
        let to_gpt4o = request(thinking.clone());
        let out = prepare_body(
            &to_gpt4o,
            Surface::Messages,
            &gpt4o,
            &BodyOptions::default(),
        )
        .unwrap();
        assert_eq!(out.surface, Surface::ChatCompletions);
        let sent = Value::Object(out.json().clone());
        assert_eq!(sent["max_completion_tokens"], 900);
        assert!(sent.get("max_tokens").is_none() && sent.get("reasoning_effort").is_none());
        assert!(out.removed.names().contains(&"reasoning".to_owned()));

        let mut reasoning = thinking;
        reasoning["model"] = json!("gpt-5");
        let gpt5 = candidate(json!([]), "gpt-5", Surface::Messages);
        let to_gpt5 = request(reasoning);
        let out =
            prepare_body(&to_gpt5, Surface::Messages, &gpt5, &BodyOptions::default()).unwrap();
        assert_eq!(out.json()["reasoning_effort"], "low");
        assert!(out.removed.is_empty(), "{:?}", out.removed);
    }

    #[test]
    fn output_tokens_are_capped() {
        let c = candidate(json!([]), "gpt-4o", Surface::ChatCompletions);
        let options = BodyOptions {
            max_output_tokens: Some(100),
            ..Default::default()
        };
        let chat = Surface::ChatCompletions;
        let capped = |body: Value| prepared(body, chat, &c, &options).0;
        assert_eq!(
            capped(json!({"model": "gpt-4o", "max_tokens": 500}))["max_tokens"],
            100
        );
        assert_eq!(
            capped(json!({"model": "gpt-4o", "max_tokens": 50}))["max_tokens"],
            50
        );
        assert_eq!(
            capped(json!({"model": "gpt-4o"}))["max_completion_tokens"],
            100
        );
        let claude = candidate(json!([]), "claude-haiku-4-5", Surface::Messages);
        let (sent, _) = prepared(
            json!({"model": "claude-haiku-4-5"}),
            Surface::Messages,
            &claude,
            &options,
        );
        assert_eq!(sent["max_tokens"], 100);
    }
}
