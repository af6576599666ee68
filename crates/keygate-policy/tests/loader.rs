//! The policy loader: precise diagnostics for bad documents, and no panic on garbage.

use std::sync::Arc;

use keygate_cel::{Compiler, MemorySecrets};
use keygate_policy::{Deps, HttpClient, Policy, PolicyError, Severity};
use keygate_ratelimit::MemoryLimiter;

fn deps() -> Deps {
    Deps {
        secrets: Arc::new(MemorySecrets::default()),
        http: HttpClient::default(),
        rate_limiter: Arc::new(MemoryLimiter::default()),
        budgets: Arc::new(keygate_ratelimit::MemoryBudgets::default()),
        provider_urls: Arc::default(),
        offline: true,
        access_keys: None,
    }
}

fn compile(text: &str) -> Result<Policy, PolicyError> {
    Policy::compile("policy.yml", text, &Compiler::new(), &deps())
}

fn errors(text: &str) -> Vec<String> {
    match compile(text) {
        Ok(_) => panic!("policy was accepted:\n{text}"),
        Err(err) => err
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.in_file("policy.yml").to_string())
            .collect(),
    }
}

#[test]
fn errors_name_file_line_column_and_field() {
    let text = "\
on_http_request:
  - name: ok
    expressions: [\"req.method == 'GET'\"]
    actions:
      - type: custom-response
        config:
          status_code: 200
  - name: broken
    expressions:
      - \"req.method ==\"
    actions:
      - type: custom-response
        config:
          status_code: 200
          bogus: 1
      - type: no-such-action
";
    let errors = errors(text);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(
        errors[0]
            .starts_with("policy.yml:10:23: on_http_request[1].expressions[0]: invalid expression"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].starts_with(
            "policy.yml:15:18: on_http_request[1].actions[0].config.bogus: unknown field `bogus`"
        ),
        "{}",
        errors[1]
    );
    assert!(errors[2].starts_with("policy.yml:16:15: on_http_request[1].actions[1].type: unknown action type 'no-such-action'"), "{}", errors[2]);
}

#[test]
fn structural_mistakes_are_reported() {
    let cases = [
        ("on_http_requests: []\n", "on_http_requests: unknown key"),
        ("on_http_request:\n  - name: x\n", "a rule needs at least one action"),
        ("on_http_request:\n  - actions: []\n", "expected a non-empty list of actions"),
        ("on_http_request:\n  - actions:\n      - type: deny\n        confg: {}\n", "unknown key 'confg'"),
        ("on_http_request:\n  - actions:\n      - type: custom-response\n        config: {status_code: 700}\n", "status_code must be 100-599"),
        ("on_http_request:\n  - actions:\n      - type: custom-response\n        config: {status_code: '200'}\n", "expected i64"),
        ("on_http_request:\n  - actions:\n      - type: deny\n      - type: deny\n", "can never run"),
        ("on_http_request:\n  - actions:\n      - type: deny\n  - actions:\n      - type: deny\n", "rule can never run"),
        ("on_http_response:\n  - actions:\n      - type: deny\n", "cannot run in on_http_response"),
        ("on_http_request:\n  - expressions: \"true\"\n    actions: [{type: deny}]\n", "expected a list of CEL expressions"),
        ("on_http_request:\n  - actions:\n      - type: set-vars\n        config: {vars: [{a: 1, b: 2}]}\n", "exactly one name"),
        ("on_http_request:\n  - actions:\n      - type: add-headers\n        config: {headers: {\"bad header\": x}}\n", "invalid header name"),
        ("on_http_request:\n  - actions:\n      - type: custom-response\n        config: {body: '${req.method ==}'}\n", "invalid interpolation"),
        ("- just a list\n", "expected a map of phases"),
        ("", "the policy is empty"),
    ];
    for (text, expected) in cases {
        let errors = errors(text);
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{text:?}: expected {expected:?} in {errors:#?}"
        );
    }
}

#[test]
fn legacy_names_load_with_warnings() {
    let policy = compile(
        "inbound:\n  - actions:\n      - type: custom-response\n        config: {content: hi}\n",
    )
    .unwrap();
    let warnings: Vec<String> = policy.warnings.iter().map(|w| w.message.clone()).collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("'inbound' is deprecated")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("'content' is deprecated")),
        "{warnings:?}"
    );
}

#[test]
fn json_policies_load() {
    let text = r#"{"on_http_request": [{"name": "r", "expressions": ["req.method == 'GET'"],
        "actions": [{"type": "custom-response", "config": {"status_code": 200, "body": "hi"}}]}]}"#;
    let policy = compile(text).unwrap();
    assert_eq!(
        policy.rule_names(keygate_policy::Phase::OnHttpRequest),
        ["r"]
    );
    let errors = errors("{\n  \"on_http_request\": [\n    {\"actions\": [{\"type\": \"deny\", \"config\": {\"status\": 1}}]}\n  ]\n}");
    assert!(
        errors[0].starts_with("policy.yml:3:56: on_http_request[0].actions[0].config.status"),
        "{errors:?}"
    );
}

#[test]
fn examples_and_seed_policies_load() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).expect("examples dir") {
        let path = entry.expect("entry").path();
        // `NAME.test.yml` files are `keygate policy test` cases, not policies.
        let is_test_file = path
            .file_stem()
            .and_then(|s| s.to_str())
            .is_some_and(|stem| stem.ends_with(".test"));
        if !is_test_file
            && matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yml" | "yaml" | "json")
            )
        {
            let text = std::fs::read_to_string(&path).expect("read example");
            if let Err(err) = compile(&text) {
                panic!("{} does not load: {err}", path.display());
            }
            count += 1;
        }
    }
    assert!(count >= 1, "no examples found");
}

/// Deterministic garbage: mutations of a valid policy, deep nesting, huge values, wrong types.
#[test]
fn garbage_never_panics() {
    let base = "on_http_request:\n  - name: r\n    expressions: [\"req.headers['a'][0] != 'x'\"]\n    actions:\n      - type: custom-response\n        config: {status_code: 401, headers: {a: b}, body: '${req.method}'}\n";
    let mut inputs: Vec<String> = vec![
        "[".repeat(10_000),
        "{a: ".repeat(5_000),
        format!(
            "on_http_request:\n  - name: {}\n    actions: [{{type: deny}}]\n",
            "x".repeat(5_000_000)
        ),
        format!(
            "on_http_request:\n  - expressions: [\"{}\"]\n    actions: [{{type: deny}}]\n",
            "(".repeat(10_000)
        ),
        format!(
            "on_http_request:\n  - expressions: [\"{}\"]\n    actions: [{{type: deny}}]\n",
            "a+".repeat(100_000) + "a"
        ),
        "\u{0}\u{1}\u{2}".into(),
        "on_http_request: !!binary aGVsbG8=\n".into(),
        "on_http_request: &a [*a]\n".into(),
    ];
    let replacements = [
        "", "[", "]", "{", "}", ":", "- ", "'", "\"", "${", "null", "[[[]]]", "{}", "7", "true",
        "\t",
    ];
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    for _ in 0..3000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let at = (seed as usize) % base.len();
        let with = replacements[(seed >> 32) as usize % replacements.len()];
        let mut mutated = base.to_owned();
        if mutated.is_char_boundary(at) {
            let end = (at + (seed >> 48) as usize % 4).min(mutated.len());
            if mutated.is_char_boundary(end) {
                mutated.replace_range(at..end, with);
            }
        }
        inputs.push(mutated);
    }
    for input in &inputs {
        // Either outcome is fine; returning is what matters.
        let _ = compile(input);
    }
    assert!(compile(base).is_ok());
}
