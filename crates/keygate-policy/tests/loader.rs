//! The policy loader: precise diagnostics for bad documents, and no panic on garbage.

mod support;

use std::sync::mpsc::RecvTimeoutError;

use keygate_policy::Severity;
use support::compile;

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
        ("on_tcp_connect:\n  - actions:\n      - type: terminate-tls\n", "use `keygate serve --tls-cert/--tls-key`"),
        ("on_http_request:\n  - actions:\n      - type: owasp-crs-request\n", "not supported by Keygate: it runs ngrok's hosted Coraza WAF"),
        ("on_event_stream_message:\n  - actions:\n      - type: deny\n", "cannot run in on_event_stream_message"),
        ("on_event_stream_message:\n  - actions:\n      - type: sse-find-replace\n        config: {replacements: [{field: body, from: a}]}\n", "replacements[0].field: unknown event field 'body'"),
        ("on_http_request:\n  - actions:\n      - type: request-body-find-replace\n        config: {replacements: [{field: data, from: a}]}\n", "field applies to sse-find-replace only"),
        ("on_tcp_connect:\n  - actions:\n      - type: add-headers\n        config: {headers: {a: b}}\n", "cannot run in on_tcp_connect"),
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
fn an_action_in_place_of_a_rule_loads_as_a_one_action_rule_with_a_warning() {
    let policy = compile(
        "on_http_request:\n  - type: custom-response\n    config: {status_code: 418, body: tea}\n",
    )
    .unwrap();
    assert_eq!(
        policy.rule_names(keygate_policy::Phase::OnHttpRequest),
        ["on_http_request[0]"]
    );
    let warnings: Vec<&str> = policy.warnings.iter().map(|w| w.message.as_str()).collect();
    assert!(
        warnings.iter().any(|w| w.contains("in place of a rule")),
        "{warnings:?}"
    );
    // Its config is checked like any action's, under the rule's path.
    let bad = "on_http_request:\n  - type: custom-response\n    config: {status_code: 700}\n";
    let found = errors(bad);
    assert!(
        found[0].starts_with("policy.yml:3:") && found[0].contains("on_http_request[0].config"),
        "{found:?}"
    );
    // A map with neither actions nor a type is still no rule.
    let found = errors("on_http_request:\n  - config: {status_code: 200}\n");
    assert!(
        found
            .iter()
            .any(|e| e.contains("a rule needs at least one action")),
        "{found:?}"
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

/// Deterministic garbage: deep nesting, huge values, odd YAML, and mutations of every policy
/// written in the repository (spans replaced by YAML, JSON and CEL fragments). Every input gets
/// an answer (a policy or diagnostics): no panic, and no hang (a watchdog names the input).
#[test]
fn garbage_and_mutated_policies_never_panic_or_hang() {
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
    let fragments = [
        "",
        "[",
        "]",
        "{",
        "}",
        ":",
        "- ",
        "'",
        "\"",
        "${",
        "}}",
        "null",
        "[[[]]]",
        "{}",
        "7",
        "true",
        "\t",
        "\n  ",
        "\n- ",
        "&a ",
        "*a",
        "!!str ",
        "#",
        "(",
        ")",
        "&&",
        "||",
        "!",
        ".",
        "[0]",
        "req.",
        "vars.",
        "secrets.get(",
        "actions.ngrok.",
        "$1",
        "\\",
        "\u{1F600}",
        "on_tcp_connect:",
        "on_event_stream_message:",
        "type: ",
        "config: ",
    ];
    let policies = support::repository_policies();
    assert!(
        policies.len() >= 6,
        "only {} policies found",
        policies.len()
    );
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for (_, base) in &policies {
        for _ in 0..120 {
            let mut mutated = base.clone();
            for _ in 0..1 + next() % 3 {
                let at = next() as usize % (mutated.len() + 1);
                let end = (at + next() as usize % 6).min(mutated.len());
                if mutated.is_char_boundary(at) && mutated.is_char_boundary(end) {
                    let fragment = fragments[next() as usize % fragments.len()];
                    mutated.replace_range(at..end, fragment);
                }
            }
            inputs.push(mutated);
        }
    }
    let count = inputs.len();
    let current = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (done, finished) = std::sync::mpsc::channel();
    let watched = current.clone();
    std::thread::spawn(move || {
        for input in inputs {
            *watched.lock().unwrap() = input.chars().take(2_000).collect();
            // Either outcome is fine; returning is what matters.
            let _ = compile(&input);
        }
        let _ = done.send(());
    });
    // Generous: a few seconds in a debug build on two busy cores; a hang never ends.
    let outcome = finished.recv_timeout(std::time::Duration::from_secs(300));
    let input = current.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match outcome {
        Ok(()) => {}
        Err(RecvTimeoutError::Timeout) => {
            panic!("policy loading did not finish ({count} inputs); stuck on:\n{input}")
        }
        Err(RecvTimeoutError::Disconnected) => panic!("policy loading panicked on:\n{input}"),
    }
    for (place, text) in &policies {
        assert!(compile(text).is_ok(), "{place} no longer loads");
    }
}
