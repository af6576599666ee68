//! Golden files for each surface's request transformation and the mock provider's answers.
//! Regenerate with `UPDATE_GOLDEN=1 cargo test -p keygate-ai --test golden` and review the diff.

use std::path::PathBuf;

use http::{HeaderMap, HeaderName, HeaderValue};
use keygate_ai::{
    mock_respond, prepare_body, set_credential, upstream_headers, upstream_url, BodyOptions,
    Catalog, ClientRequest, GatewaySpec, Registry, Surface,
};
use serde_json::{json, Map, Value};

fn check(name: &str, actual: &Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.json"));
    let rendered = serde_json::to_string_pretty(actual).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, rendered).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing golden file {}", path.display()));
    assert_eq!(rendered, expected, "golden file {name}.json differs");
}

fn registry() -> Registry {
    let spec = GatewaySpec {
        providers: serde_json::from_value(json!([
            {"id": "azure", "base_url": "https://res.openai.azure.com/openai/deployments/gpt4o?api-version=2024-10-21",
             "models": [{"id": "gpt-4o-azure", "unsupported_params": [{"name": "service_tier"}]}]}
        ]))
        .unwrap(),
        ..Default::default()
    };
    Registry::new(&spec, Catalog::builtin()).unwrap()
}

fn transform(name: &str, surface: Surface, body: Value) {
    let request = ClientRequest::parse(body.to_string().into()).unwrap();
    let candidate = registry()
        .resolve(&request.requested(), surface)
        .unwrap()
        .candidates
        .remove(0);
    let options = BodyOptions {
        overrides: Map::from_iter([("user".to_owned(), json!("keygate"))]),
        max_output_tokens: Some(1024),
    };
    let prepared = prepare_body(&request, surface, &candidate, &options).unwrap();
    let mut client = HeaderMap::new();
    for (k, v) in [
        ("authorization", "Bearer client-token"),
        ("content-type", "application/json"),
        ("x-request-id", "req-1"),
    ] {
        client.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    let mut headers = upstream_headers(&client, surface.format(), true);
    set_credential(&mut headers, surface.format(), "PROVIDER-KEY").unwrap();
    let headers: Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap())))
        .collect();
    let url = upstream_url(&candidate.provider.base_url, surface, None, &[]);
    check(
        &format!("transform_{name}"),
        &json!({"client_body": body, "provider": candidate.provider.id, "url": url, "headers": headers,
                "body": prepared.json(), "added_include_usage": prepared.added_include_usage}),
    );
}

#[test]
fn request_transformations() {
    transform(
        "chat_completions_stream",
        Surface::ChatCompletions,
        json!({"model": "gpt-4o-2024-11-20", "models": ["claude-haiku-4-5"], "stream": true, "max_tokens": 4096,
               "messages": [{"role": "user", "content": "Hello"}], "x_custom": {"kept": true}}),
    );
    transform(
        "chat_completions_reasoning",
        Surface::ChatCompletions,
        json!({"model": "openai:o3", "temperature": 0.3, "top_p": 0.9, "messages": [{"role": "user", "content": "Hi"}]}),
    );
    transform(
        "chat_completions_azure",
        Surface::ChatCompletions,
        json!({"model": "azure:gpt-4o-azure", "service_tier": "auto", "messages": [{"role": "user", "content": "Hi"}]}),
    );
    transform(
        "chat_completions_claude_openai_format",
        Surface::ChatCompletions,
        json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hi"}]}),
    );
    transform(
        "completions",
        Surface::Completions,
        json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi"}),
    );
    transform(
        "embeddings",
        Surface::Embeddings,
        json!({"model": "text-embedding-3-small", "input": ["a", "b"]}),
    );
    transform(
        "responses",
        Surface::Responses,
        json!({"model": "gpt-5", "input": "Hi", "reasoning": {"effort": "low"}}),
    );
    transform(
        "messages",
        Surface::Messages,
        json!({"model": "claude-sonnet-4", "max_tokens": 64, "stream": true,
               "messages": [{"role": "user", "content": "Hi"}], "thinking": {"type": "disabled"}}),
    );
    transform(
        "count_tokens",
        Surface::CountTokens,
        json!({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "Hi"}]}),
    );
}

fn mock(name: &str, surface: Surface, body: Value) {
    let response = mock_respond(surface, body.as_object().unwrap(), 1_764_201_600);
    let chunks: Vec<String> = response
        .chunks
        .iter()
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    check(
        &format!("mock_{name}"),
        &json!({"request": body, "status": response.status, "content_type": response.content_type, "chunks": chunks}),
    );
}

#[test]
fn mock_answers() {
    let chat = json!({"model": "mock-echo", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Hello there"}]});
    mock("chat", Surface::ChatCompletions, chat.clone());
    let mut stream = chat.clone();
    stream["stream"] = json!(true);
    stream["stream_options"] = json!({"include_usage": true});
    mock("chat_stream", Surface::ChatCompletions, stream);
    mock(
        "completions",
        Surface::Completions,
        json!({"model": "mock-echo", "prompt": "Say this"}),
    );
    mock(
        "completions_stream",
        Surface::Completions,
        json!({"model": "mock-echo", "prompt": "Say this", "stream": true}),
    );
    mock(
        "embeddings",
        Surface::Embeddings,
        json!({"model": "mock-embed", "input": "embed me"}),
    );
    mock(
        "responses",
        Surface::Responses,
        json!({"model": "mock-echo", "input": [{"role": "user", "content": "Hi you"}]}),
    );
    mock(
        "responses_stream",
        Surface::Responses,
        json!({"model": "mock-echo", "input": "Hi you", "stream": true}),
    );
    let messages = json!({"model": "mock-echo", "max_tokens": 32, "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello Claude"}]}]});
    mock("messages", Surface::Messages, messages.clone());
    let mut messages_stream = messages.clone();
    messages_stream["stream"] = json!(true);
    mock("messages_stream", Surface::Messages, messages_stream);
    mock("count_tokens", Surface::CountTokens, messages);
}
