use super::*;
use crate::spec::ParamName;

fn provider(json: Value) -> ProviderSpec {
    serde_json::from_value(json).unwrap()
}

fn registry(providers: Vec<ProviderSpec>) -> Registry {
    let spec = GatewaySpec {
        providers,
        ..Default::default()
    };
    Registry::new(&spec, Catalog::builtin()).unwrap()
}

fn names(resolution: &Resolution) -> Vec<String> {
    resolution.candidates.iter().map(Candidate::name).collect()
}

fn resolve(
    reg: &Registry,
    requested: &[&str],
    surface: Surface,
) -> Result<Resolution, ResolveError> {
    reg.resolve(
        &requested.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        surface,
    )
}

#[test]
fn bare_ids_aliases_and_case() {
    let reg = registry(vec![]);
    let r = resolve(
        &reg,
        &["GPT-4o", "chatgpt-4o-latest", "claude-sonnet-4"],
        Surface::ChatCompletions,
    )
    .unwrap();
    assert_eq!(names(&r), ["openai:gpt-4o", "anthropic:claude-sonnet-4-0"]);
    assert_eq!(r.candidates[0].model.id, "gpt-4o");
}

#[test]
fn provider_prefix_and_pass_through() {
    let reg = registry(vec![]);
    let r = resolve(
        &reg,
        &[
            "open-ai:gpt-4o",
            "openai:gpt-9-preview",
            "openrouter:meta-llama/llama-3.3-70b-instruct",
        ],
        Surface::ChatCompletions,
    )
    .unwrap();
    assert_eq!(
        names(&r),
        [
            "openai:gpt-4o",
            "openai:gpt-9-preview",
            "openrouter:meta-llama/llama-3.3-70b-instruct"
        ]
    );
    assert!(!r.candidates[1].model.known);
    let err = resolve(&reg, &["gpt-9-preview"], Surface::ChatCompletions).unwrap_err();
    assert!(
        matches!(err, ResolveError::NoMatchingModels { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("unknown model 'gpt-9-preview'"));
}

#[test]
fn colon_in_a_bare_model_id_is_not_a_provider_prefix() {
    let reg = registry(vec![provider(json!({
        "id": "ollama", "base_url": "http://127.0.0.1:11434/v1", "models": [{"id": "llama3:8b"}]
    }))]);
    assert_eq!(
        names(&resolve(&reg, &["llama3:8b"], Surface::ChatCompletions).unwrap()),
        ["ollama:llama3:8b"]
    );
    assert_eq!(
        names(&resolve(&reg, &["ollama:llama3:8b"], Surface::ChatCompletions).unwrap()),
        ["ollama:llama3:8b"]
    );
}

#[test]
fn configured_providers_come_first_for_shared_ids() {
    let reg = registry(vec![provider(json!({
        "id": "azure-east", "base_url": "https://east.example/openai/deployments/gpt-4o",
        "models": [{"id": "gpt-4o"}]
    }))]);
    let r = resolve(&reg, &["gpt-4o"], Surface::ChatCompletions).unwrap();
    assert_eq!(names(&r), ["azure-east:gpt-4o", "openai:gpt-4o"]);
}

#[test]
fn only_allow_configured_switches() {
    let spec = GatewaySpec {
        providers: vec![provider(
            json!({"id": "openai", "models": [{"id": "gpt-4o-mini"}]}),
        )],
        only_allow_configured_providers: true,
        only_allow_configured_models: true,
        ..Default::default()
    };
    let reg = Registry::new(&spec, Catalog::builtin()).unwrap();
    assert_eq!(
        names(&resolve(&reg, &["gpt-4o-mini"], Surface::ChatCompletions).unwrap()),
        ["openai:gpt-4o-mini"]
    );
    let err = resolve(&reg, &["gpt-4o"], Surface::ChatCompletions).unwrap_err();
    assert!(
        err.to_string()
            .contains("Model 'gpt-4o' is not allowed by gateway configuration"),
        "{err}"
    );
    let err = resolve(&reg, &["claude-haiku-4-5"], Surface::ChatCompletions).unwrap_err();
    assert!(
        err.to_string()
            .contains("Provider 'anthropic' is not allowed"),
        "{err}"
    );
    let err = resolve(&reg, &["openai:brand-new"], Surface::ChatCompletions).unwrap_err();
    assert!(err.to_string().contains("not allowed"), "{err}");
    let available: Vec<String> = reg
        .available(Some(Surface::ChatCompletions))
        .iter()
        .map(Candidate::name)
        .collect();
    assert_eq!(available, ["openai:gpt-4o-mini"]);
}

#[test]
fn disabled_providers_and_models_drop_out() {
    let reg = registry(vec![
        provider(json!({"id": "openai", "disabled": true})),
        provider(
            json!({"id": "anthropic", "models": [{"id": "claude-haiku-4-5", "disabled": true}]}),
        ),
    ]);
    let err = resolve(
        &reg,
        &["gpt-4o", "claude-haiku-4-5"],
        Surface::ChatCompletions,
    )
    .unwrap_err();
    let ResolveError::NoMatchingModels { rejected } = err else {
        panic!("wrong error")
    };
    assert_eq!(rejected.len(), 2);
    assert_eq!(
        rejected[0].reasons,
        [RejectReason::ProviderDisabled {
            provider: "openai".into()
        }]
    );
    assert_eq!(rejected[1].reason(), "model 'claude-haiku-4-5' is disabled");
    let r = resolve(
        &reg,
        &["gpt-4o", "claude-sonnet-4-5"],
        Surface::ChatCompletions,
    )
    .unwrap();
    assert_eq!(names(&r), ["anthropic:claude-sonnet-4-5"]);
    assert_eq!(r.rejected.len(), 1);
}

#[test]
fn format_filter_gives_3813() {
    let reg = registry(vec![]);
    let err = resolve(&reg, &["text-embedding-3-small"], Surface::ChatCompletions).unwrap_err();
    assert!(
        matches!(err, ResolveError::IncompatibleFormat { .. }),
        "{err}"
    );
    let err = resolve(&reg, &["gpt-4o"], Surface::CountTokens).unwrap_err();
    assert!(
        matches!(
            err,
            ResolveError::IncompatibleFormat {
                format: "anthropic",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn chat_messages_and_responses_cross_formats_in_the_providers_order() {
    let reg = registry(vec![]);
    let upstream = |name: &str, surface: Surface| {
        let r = resolve(&reg, &[name], surface).unwrap();
        r.candidates[0].upstream_surface(surface)
    };
    // Served natively: no translation (Claude through Anthropic's OpenAI-compatible endpoint).
    assert_eq!(
        upstream("claude-haiku-4-5", Surface::ChatCompletions),
        Some(Surface::ChatCompletions)
    );
    assert_eq!(
        upstream("gpt-4o", Surface::Responses),
        Some(Surface::Responses)
    );
    // Translated: Anthropic lists its own format first, OpenAI serves every OpenAI surface.
    assert_eq!(
        upstream("claude-haiku-4-5", Surface::Responses),
        Some(Surface::Messages)
    );
    assert_eq!(
        upstream("gpt-4o", Surface::Messages),
        Some(Surface::ChatCompletions)
    );
    // A provider that serves only Responses is reached there.
    let reg = registry(vec![provider(json!({
        "id": "resp-only", "base_url": "http://127.0.0.1:1/v1",
        "supported_api_surfaces": [{"format": "openai", "surface": "responses"}],
        "models": [{"id": "m1"}]
    }))]);
    let r = resolve(&reg, &["m1"], Surface::Messages).unwrap();
    assert_eq!(
        r.candidates[0].upstream_surface(Surface::Messages),
        Some(Surface::Responses)
    );
    assert!(resolve(&reg, &["m1"], Surface::Embeddings).is_err());
}

#[test]
fn a_regional_copy_shares_the_providers_prefix() {
    let reg = registry(vec![
        provider(json!({"id": "openai", "metadata": {"region": "us"}})),
        provider(json!({
            "id": "openai-eu", "id_aliases": ["openai"], "base_url": "https://eu.api.openai.com/v1",
            "metadata": {"region": "eu"}
        })),
    ]);
    let pinned = resolve(&reg, &["openai:gpt-4o"], Surface::ChatCompletions).unwrap();
    assert_eq!(names(&pinned), ["openai:gpt-4o", "openai-eu:gpt-4o"]);
    let bare = resolve(&reg, &["gpt-4o"], Surface::ChatCompletions).unwrap();
    assert_eq!(names(&bare), ["openai:gpt-4o", "openai-eu:gpt-4o"]);
    let regional = resolve(&reg, &["openai-eu:gpt-4o"], Surface::ChatCompletions).unwrap();
    assert_eq!(names(&regional), ["openai-eu:gpt-4o"]);
    assert_eq!(
        pinned.candidates[1].provider.base_url,
        "https://eu.api.openai.com/v1"
    );
}

#[test]
fn custom_provider_aliasing_a_builtin_replaces_it() {
    let reg = registry(vec![provider(json!({
        "id": "openai-eu", "id_aliases": ["openai"], "base_url": "https://eu.api.openai.com/v1"
    }))]);
    let r = resolve(
        &reg,
        &["openai:gpt-4o", "gpt-4o-mini"],
        Surface::ChatCompletions,
    )
    .unwrap();
    assert_eq!(names(&r), ["openai-eu:gpt-4o", "openai-eu:gpt-4o-mini"]);
    assert_eq!(
        r.candidates[0].provider.base_url,
        "https://eu.api.openai.com/v1"
    );
    assert!(reg.providers().all(|p| p.id != "openai"));
}

#[test]
fn configured_models_overlay_catalog_entries() {
    let reg = registry(vec![provider(json!({
        "id": "openai", "metadata": {"tier": "gold"},
        "models": [{"id": "GPT-4o", "id_aliases": ["house-model"], "metadata": {"team": "a"},
                    "unsupported_params": [{"name": "seed"}]}]
    }))]);
    let r = resolve(&reg, &["house-model"], Surface::ChatCompletions).unwrap();
    let model = &r.candidates[0].model;
    assert!(model.known && model.custom);
    assert_eq!(model.max_context_window, Some(128_000));
    assert_eq!(model.unsupported_params, ["seed"]);
    let value = r.candidates[0].to_json(json!({}));
    assert_eq!(value["metadata"], json!({"tier": "gold", "team": "a"}));
    assert_eq!(value["provider_id"], "openai");
    assert_eq!(value["pricing"]["input"], 2.5);
}

#[test]
fn provider_url_overrides_win() {
    let spec = GatewaySpec {
        providers: vec![provider(
            json!({"id": "openai", "base_url": "https://proxy.example/v1"}),
        )],
        provider_urls: HashMap::from([(
            "openai".to_string(),
            "http://127.0.0.1:9999/v1/".to_string(),
        )]),
        ..Default::default()
    };
    let reg = Registry::new(&spec, Catalog::builtin()).unwrap();
    let openai = reg.providers().find(|p| p.id == "openai").unwrap();
    assert_eq!(openai.base_url, "http://127.0.0.1:9999/v1");
}

#[test]
fn configuration_errors_are_located() {
    let spec = |providers| GatewaySpec {
        providers,
        ..Default::default()
    };
    let err = Registry::new(
        &spec(vec![provider(json!({"id": "ollama"}))]),
        Catalog::builtin(),
    )
    .unwrap_err();
    assert_eq!(err.path, "providers[0].base_url");
    let err = Registry::new(
        &spec(vec![provider(json!({"id": "x", "base_url": "ftp://x"}))]),
        Catalog::builtin(),
    )
    .unwrap_err();
    assert!(err.message.contains("https://"));
    let dup = provider(
        json!({"id": "x", "base_url": "http://x", "models": [{"id": "a", "id_aliases": ["b"]}, {"id": "b"}]}),
    );
    let err = Registry::new(&spec(vec![dup]), Catalog::builtin()).unwrap_err();
    assert_eq!(err.path, "providers[0].models[1]");
    let twice = || provider(json!({"id": "x", "base_url": "http://x"}));
    let err = Registry::new(&spec(vec![twice(), twice()]), Catalog::builtin()).unwrap_err();
    assert_eq!(err.path, "providers[1].id");
    assert!(err.message.contains("'x' is configured twice"), "{err}");
    let mut bad_surface = ProviderSpec {
        id: "y".into(),
        base_url: Some("http://y".into()),
        ..Default::default()
    };
    bad_surface.supported_api_surfaces = Some(vec![SurfaceSpec {
        format: ApiFormat::OpenAi,
        surface: Some(Surface::Messages),
        supported_params: vec![ParamName { name: "a".into() }],
    }]);
    let err = Registry::new(&spec(vec![bad_surface]), Catalog::builtin()).unwrap_err();
    assert_eq!(err.path, "providers[0].supported_api_surfaces[0]");
}

#[test]
fn surface_spec_prefers_exact_entries() {
    let reg = registry(vec![provider(json!({
        "id": "vllm", "base_url": "http://127.0.0.1:8000/v1",
        "supported_api_surfaces": [
            {"format": "openai"},
            {"format": "openai", "surface": "chat-completions", "supported_params": [{"name": "messages"}]}
        ],
        "models": [{"id": "qwen"}]
    }))]);
    let vllm = reg.providers().find(|p| p.id == "vllm").unwrap();
    assert_eq!(
        vllm.surface_spec(Surface::ChatCompletions)
            .unwrap()
            .supported_params
            .len(),
        1
    );
    assert!(vllm
        .surface_spec(Surface::Embeddings)
        .unwrap()
        .supported_params
        .is_empty());
    assert!(vllm.surface_spec(Surface::Messages).is_none());
}

/// The name index answers as asking every model of every provider would, for every id and alias
/// of the catalog and of configured providers (sharing ids with the catalog), in any case.
#[test]
fn the_name_index_matches_a_full_scan() {
    let reg = registry(vec![provider(json!({
        "id": "openai-2", "base_url": "http://127.0.0.1:9/v1",
        "models": [{"id": "gpt-4o"}, {"id": "my-model", "id_aliases": ["Mine"]}]
    }))]);
    let scan = |name: &str| -> Vec<String> {
        reg.providers
            .iter()
            .filter_map(|(p, models)| {
                let model = models.iter().find(|m| m.answers_to(name))?;
                Some(format!("{}:{}", p.id, model.id))
            })
            .collect()
    };
    let mut checked = 0;
    for (_, models) in &reg.providers {
        for model in models {
            for name in std::iter::once(&model.id).chain(&model.id_aliases) {
                for name in [name.clone(), name.to_ascii_uppercase()] {
                    let indexed: Vec<String> =
                        reg.lookup(&name).iter().map(Candidate::name).collect();
                    assert_eq!(indexed, scan(&name), "{name}");
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 100, "{checked}");
    assert!(reg.lookup("no-such-model").is_empty());
    assert_eq!(
        scan("GPT-4o").len(),
        2,
        "shared id: catalog and configured provider"
    );
}

/// The cached target (no query from the request or the config) is the one built from scratch;
/// a query from either bypasses the cache; a base URL that is no URI still shows its URL.
#[test]
fn upstream_targets() {
    let reg = registry(vec![
        provider(
            json!({"id": "azure", "base_url": "http://127.0.0.1:9/openai/deployments/d?api-version=1",
            "models": [{"id": "gpt-4o"}]}),
        ),
        provider(
            json!({"id": "broken", "base_url": "http://bad host:9/v1", "models": [{"id": "m"}]}),
        ),
    ]);
    let azure = &reg.lookup("azure:gpt-4o")[0].provider;
    for _ in 0..2 {
        let target = azure.upstream_target(Surface::ChatCompletions, None, &[]);
        assert_eq!(
            target.uri.unwrap().to_string(),
            "http://127.0.0.1:9/openai/deployments/d/chat/completions?api-version=1"
        );
        assert_eq!(
            target.shown_url,
            "http://127.0.0.1:9/openai/deployments/d/chat/completions"
        );
    }
    let with_query = azure.upstream_target(
        Surface::Embeddings,
        Some("x=1"),
        &[("k".into(), "v w".into())],
    );
    assert_eq!(
        with_query.uri.unwrap().to_string(),
        "http://127.0.0.1:9/openai/deployments/d/embeddings?api-version=1&x=1&k=v%20w"
    );
    let cached = azure.upstream_target(Surface::Embeddings, Some(""), &[]);
    assert_eq!(
        cached.uri.unwrap().to_string(),
        "http://127.0.0.1:9/openai/deployments/d/embeddings?api-version=1"
    );
    let broken = &reg.lookup("broken:m")[0].provider;
    let target = broken.upstream_target(Surface::ChatCompletions, None, &[]);
    assert!(target.uri.is_none());
    assert_eq!(target.shown_url, "http://bad host:9/v1/chat/completions");
}

fn discovered(lists: &[(&str, &[&str])]) -> DiscoveredModels {
    let mut snapshot = DiscoveredModels::default();
    for (provider, ids) in lists {
        snapshot.set(provider, ids.iter().map(|s| s.to_string()).collect());
    }
    snapshot
}

fn llamacpp() -> ProviderSpec {
    provider(json!({"id": "llamacpp", "base_url": "http://127.0.0.1:8080/v1"}))
}

/// Before discovery a bare name is unknown (`provider:model` passes through); after it the
/// server's models resolve, list and reach strategies like configured ones, ahead of the
/// built-ins sharing an id, and the registry they were merged into is left as it was.
#[test]
fn discovered_models_behave_like_configured_ones() {
    let base = registry(vec![llamacpp()]);
    let err = resolve(&base, &["smollm2"], Surface::ChatCompletions).unwrap_err();
    assert!(err.to_string().contains("unknown model 'smollm2'"), "{err}");
    let pinned = resolve(&base, &["llamacpp:smollm2"], Surface::ChatCompletions).unwrap();
    assert!(!pinned.candidates[0].model.custom && !pinned.candidates[0].model.discovered);

    let reg = base.with_discovered(&discovered(&[(
        "llamacpp",
        &["smollm2", "qwen2.5:0.5b", "gpt-4o"],
    )]));
    for name in ["smollm2", "SmolLM2", "llamacpp:smollm2", "LLAMACPP:smollm2"] {
        let r = resolve(&reg, &[name], Surface::ChatCompletions).unwrap();
        assert_eq!(names(&r), ["llamacpp:smollm2"], "{name}");
        let model = &r.candidates[0].model;
        assert!(model.discovered && model.custom && !model.known);
    }
    assert_eq!(
        names(&resolve(&reg, &["qwen2.5:0.5b"], Surface::Embeddings).unwrap()),
        ["llamacpp:qwen2.5:0.5b"]
    );
    assert_eq!(
        names(&resolve(&reg, &["gpt-4o"], Surface::ChatCompletions).unwrap()),
        ["llamacpp:gpt-4o", "openai:gpt-4o"]
    );
    // The default OpenAI-format surfaces only: Messages is translated to chat completions.
    let r = resolve(&reg, &["smollm2"], Surface::Messages).unwrap();
    assert_eq!(
        r.candidates[0].upstream_surface(Surface::Messages),
        Some(Surface::ChatCompletions)
    );
    assert!(matches!(
        resolve(&reg, &["smollm2"], Surface::CountTokens),
        Err(ResolveError::IncompatibleFormat { .. })
    ));
    let available: Vec<String> = reg
        .available(None)
        .iter()
        .filter(|c| c.provider.id == "llamacpp")
        .map(Candidate::name)
        .collect();
    assert_eq!(
        available,
        [
            "llamacpp:smollm2",
            "llamacpp:qwen2.5:0.5b",
            "llamacpp:gpt-4o"
        ]
    );
    let value = reg.lookup("smollm2")[0].to_json(Value::Null);
    assert_eq!(value["custom"], true);
    assert_eq!(value["known"], false);
    assert_eq!(value["provider_id"], "llamacpp");
    let list = crate::models_list(&reg.available(None));
    assert_eq!(list["data"][0]["id"], "smollm2");
    assert_eq!(list["data"][0]["owned_by"], "llamacpp");

    assert!(
        base.lookup("smollm2").is_empty(),
        "the base registry is unchanged"
    );
    // A provider sharing the snapshot keeps its own Provider (and its cached targets).
    assert!(Arc::ptr_eq(
        &base.lookup("llamacpp:x")[0].provider,
        &reg.lookup("llamacpp:x")[0].provider
    ));
    // A new snapshot replaces the old list: the base is merged again, not the last merge.
    let changed = base.with_discovered(&discovered(&[("llamacpp", &["phi3"])]));
    assert!(changed.lookup("smollm2").is_empty());
    assert_eq!(
        names(&resolve(&changed, &["phi3"], Surface::ChatCompletions).unwrap()),
        ["llamacpp:phi3"]
    );
    let emptied = base.with_discovered(&discovered(&[("llamacpp", &[])]));
    assert!(emptied.lookup("phi3").is_empty());
}

#[test]
fn discovered_ids_never_shadow_a_providers_own_models() {
    let base = registry(vec![provider(json!({
        "id": "vllm", "base_url": "http://127.0.0.1:8000/v1",
        "models": [{"id": "qwen", "id_aliases": ["house"], "pricing": {"input": 1.0, "output": 2.0}}]
    }))]);
    let reg = base.with_discovered(&discovered(&[
        ("vllm", &["QWEN", "house", "extra"]),
        ("not-a-provider", &["ghost"]),
    ]));
    let models: Vec<&str> = reg
        .provider_models()
        .find(|(p, _)| p.id == "vllm")
        .unwrap()
        .1
        .iter()
        .map(|m| m.id.as_str())
        .collect();
    assert_eq!(models, ["qwen", "extra"]);
    let qwen = &resolve(&reg, &["qwen"], Surface::ChatCompletions)
        .unwrap()
        .candidates[0];
    assert!(!qwen.model.discovered && qwen.model.pricing.is_some());
    assert!(reg.lookup("ghost").is_empty());
}

/// Discovered models are the provider's configured models for the `only_allow_configured_*`
/// switches; the catalog stays out.
#[test]
fn only_allow_configured_switches_admit_discovered_models() {
    let spec = GatewaySpec {
        providers: vec![llamacpp()],
        only_allow_configured_providers: true,
        only_allow_configured_models: true,
        ..Default::default()
    };
    let base = Registry::new(&spec, Catalog::builtin()).unwrap();
    assert!(base.available(None).is_empty());
    let reg = base.with_discovered(&discovered(&[("llamacpp", &["smollm2"])]));
    let available: Vec<String> = reg.available(None).iter().map(Candidate::name).collect();
    assert_eq!(available, ["llamacpp:smollm2"]);
    assert_eq!(
        names(&resolve(&reg, &["smollm2"], Surface::ChatCompletions).unwrap()),
        ["llamacpp:smollm2"]
    );
    assert!(resolve(&reg, &["gpt-4o"], Surface::ChatCompletions).is_err());
}

#[test]
fn models_urls_follow_the_surface_rule() {
    let reg = registry(vec![
        provider(json!({"id": "a", "base_url": "http://127.0.0.1:8080/v1/"})),
        provider(json!({"id": "b", "base_url": "http://127.0.0.1:11434"})),
        provider(
            json!({"id": "c", "base_url": "https://h.example/openai/deployments/d?api-version=1"}),
        ),
    ]);
    let url = |id: &str| reg.providers().find(|p| p.id == id).unwrap().models_url();
    assert_eq!(url("a"), "http://127.0.0.1:8080/v1/models");
    assert_eq!(url("b"), "http://127.0.0.1:11434/v1/models");
    assert_eq!(
        url("c"),
        "https://h.example/openai/deployments/d/models?api-version=1"
    );
}
