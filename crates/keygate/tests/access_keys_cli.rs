//! `keygate api ai-gateway-api-keys|ai-gateway-provider-keys ...` driven through the real binary.

mod api_support;

use std::time::Duration;

use api_support::*;
use keygate_keys::{KeyCache, KeyLimits, KeyStore, Rate, StoreFailure};
use keygate_secrets::{MasterKeySource, Store};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

/// The field names of an object, sorted.
fn fields(value: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    names
}

/// A cache over the directory, opened with its key file, as the gateway will.
fn cache(dir: &DataDir) -> KeyCache {
    let store = Store::open_unlocked(dir.path(), &MasterKeySource::DefaultFile).unwrap();
    KeyCache::start(
        KeyStore::open(store).unwrap(),
        KeyCache::DEFAULT_POLL_INTERVAL,
        Duration::from_secs(3600),
    )
    .unwrap()
}

const API_KEY_FIELDS: [&str; 12] = [
    "allowed_models",
    "allowed_providers",
    "created_at",
    "description",
    "disabled",
    "display_name",
    "expires_at",
    "id",
    "last_used",
    "limits",
    "metadata",
    "updated_at",
];

#[test]
fn api_keys_round_trip_and_the_token_is_printed_only_on_create() {
    let dir = DataDir::new("api-keys");
    let create = dir.run(&[
        "ai-gateway-api-keys",
        "create",
        "--description",
        "ci runner",
        "--metadata",
        r#"{"team": "search", "cost_center": 42}"#,
        "--expires-in",
        "30d",
    ]);
    let created = parse_ok(&create);
    let mut with_token = API_KEY_FIELDS.to_vec();
    with_token.push("token");
    with_token.sort_unstable();
    assert_eq!(fields(&created), with_token);
    let token = str_field(&created, "token").to_owned();
    let id = str_field(&created, "id").to_owned();
    assert!(
        id.starts_with("aigk_") && id.len() == "aigk_".len() + 26,
        "{id}"
    );
    assert!(token.starts_with("kg-") && token.len() >= 3 + 43, "{token}");
    assert_eq!(
        str_field(&created, "display_name"),
        format!("{}...{}", &token[..7], &token[token.len() - 4..])
    );
    assert_eq!(
        created["metadata"],
        json!({"team": "search", "cost_center": 42})
    );
    assert_eq!(created["last_used"], Value::Null);
    assert_eq!(created["disabled"], false);
    assert_eq!(created["limits"], json!({}));
    let expires_at = str_field(&created, "expires_at");
    assert!(expires_at.ends_with('Z') && expires_at > str_field(&created, "created_at"));

    let mut key = created.clone();
    key.as_object_mut().unwrap().remove("token");
    let mut outputs = vec![dir.run(&["ai-gateway-api-keys", "get", &id])];
    assert_eq!(parse_ok(&outputs[0]), key);
    outputs.push(dir.run(&["ai-gateway-api-keys", "list"]));
    assert_eq!(
        parse_ok(&outputs[1]),
        json!({ "ai_gateway_api_keys": [key] })
    );

    let at = dir.json(&[
        "ai-gateway-api-keys",
        "create",
        "--expires-at",
        "2099-01-02T03:04:05.678+01:00",
    ]);
    assert_eq!(str_field(&at, "expires_at"), "2099-01-02T02:04:05Z");
    assert_eq!(at["metadata"], json!({}));
    assert_eq!(str_field(&at, "description"), "");

    let disabled = dir.run(&["ai-gateway-api-keys", "update", &id, "--disabled", "true"]);
    let disabled_json = parse_ok(&disabled);
    outputs.push(disabled);
    assert_eq!(fields(&disabled_json), API_KEY_FIELDS);
    assert_eq!(disabled_json["disabled"], true);
    assert_eq!(disabled_json["description"], "ci runner");
    let cleared = dir.json(&[
        "ai-gateway-api-keys",
        "update",
        &id,
        "--no-expiry",
        "--description",
        "nightly",
        "--metadata",
        "{}",
        "--disabled",
        "false",
    ]);
    assert_eq!(
        (
            &cleared["expires_at"],
            &cleared["description"],
            &cleared["metadata"],
            &cleared["disabled"]
        ),
        (&Value::Null, &json!("nightly"), &json!({}), &json!(false))
    );
    assert_eq!(dir.json(&["ai-gateway-api-keys", "get", &id]), cleared);

    // The token works until the key is deleted, then it is unknown.
    let keys = cache(&dir);
    assert_eq!(keys.authenticate(token.as_bytes()).unwrap().id(), id);
    for out in &outputs {
        assert!(!contains(&out.stdout, &token) && !contains(&out.stderr, &token));
    }
    let deleted = dir.run(&["ai-gateway-api-keys", "delete", &id]);
    assert!(deleted.status.success() && deleted.stdout.is_empty());
    keys.refresh();
    assert!(keys.authenticate(token.as_bytes()).is_err());
    assert_fails(
        &dir.run(&["ai-gateway-api-keys", "get", &id]),
        2,
        &format!("error: AI gateway API key '{id}' not found"),
    );
    assert_eq!(
        dir.json(&["ai-gateway-api-keys", "list"])["ai_gateway_api_keys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn provider_keys_round_trip_and_values_are_never_printed() {
    let dir = DataDir::new("provider-keys");
    let created = dir.json(&["ai-gateway-api-keys", "create"]);
    let (api_key_id, token) = (str_field(&created, "id"), str_field(&created, "token"));
    let other = dir.json(&["ai-gateway-api-keys", "create"]);
    let other_id = str_field(&other, "id");
    let (v1, v2, v3) = (
        random_value("sk-one"),
        random_value("sk-two"),
        random_value("sk-new"),
    );

    let create = [
        "ai-gateway-provider-keys",
        "create",
        "--ai-gateway-api-key-id",
        api_key_id,
        "--provider-id",
        "openai",
        "--value",
        "-",
        "--description",
        "prod",
        "--metadata",
        r#"{"rotated": false}"#,
    ];
    let mut outputs = vec![dir.run_with_stdin(&create, format!("{v1}\n").as_bytes())];
    let pk = parse_ok(&outputs[0]);
    assert_eq!(
        fields(&pk),
        [
            "ai_gateway_api_key",
            "created_at",
            "description",
            "id",
            "metadata",
            "provider_id",
            "updated_at"
        ]
    );
    let pk_id = str_field(&pk, "id").to_owned();
    assert!(
        pk_id.starts_with("aigpk_") && pk_id.len() == "aigpk_".len() + 26,
        "{pk_id}"
    );
    assert_eq!(pk["ai_gateway_api_key"], json!({ "id": api_key_id }));
    assert_eq!(
        (&pk["provider_id"], &pk["description"], &pk["metadata"]),
        (&json!("openai"), &json!("prod"), &json!({"rotated": false}))
    );
    outputs.push(dir.run(&[
        "ai-gateway-provider-keys",
        "create",
        "--ai-gateway-api-key-id",
        other_id,
        "--provider-id",
        "anthropic",
        "--value",
        &v2,
    ]));
    let elsewhere = parse_ok(&outputs[1]);

    outputs.push(dir.run(&["ai-gateway-provider-keys", "list"]));
    assert_eq!(
        parse_ok(&outputs[2]),
        json!({ "ai_gateway_provider_keys": [pk, elsewhere] })
    );
    let only = dir.json(&[
        "ai-gateway-provider-keys",
        "list",
        "--ai-gateway-api-key-id",
        api_key_id,
    ]);
    assert_eq!(only, json!({ "ai_gateway_provider_keys": [pk] }));
    outputs.push(dir.run(&["ai-gateway-provider-keys", "get", &pk_id]));
    assert_eq!(parse_ok(&outputs[3]), pk);

    let keys = cache(&dir);
    let value_of = |keys: &KeyCache| {
        let key = keys.authenticate(token.as_bytes()).unwrap();
        let attached = &key.provider_keys()[0];
        assert_eq!(
            (attached.id(), attached.provider_id()),
            (pk_id.as_str(), "openai")
        );
        attached.value().unwrap().expose_secret().to_owned()
    };
    assert_eq!(value_of(&keys), v1);

    let update = ["ai-gateway-provider-keys", "update", &pk_id, "--value", "-"];
    outputs.push(dir.run_with_stdin(&update, v3.as_bytes()));
    let updated = parse_ok(&outputs[4]);
    assert_eq!(updated["description"], "prod");
    let described = dir.json(&[
        "ai-gateway-provider-keys",
        "update",
        &pk_id,
        "--description",
        "rotated",
    ]);
    assert_eq!(described["description"], "rotated");
    keys.refresh();
    assert_eq!(value_of(&keys), v3);

    for out in &outputs {
        for value in [&v1, &v2, &v3] {
            assert!(!contains(&out.stdout, value) && !contains(&out.stderr, value));
        }
    }

    let deleted = dir.run(&["ai-gateway-provider-keys", "delete", &pk_id]);
    assert!(deleted.status.success() && deleted.stdout.is_empty());
    assert_fails(
        &dir.run(&["ai-gateway-provider-keys", "get", &pk_id]),
        2,
        &format!("error: AI gateway provider key '{pk_id}' not found"),
    );
    // Deleting an access key takes its provider keys with it.
    assert!(dir
        .run(&["ai-gateway-api-keys", "delete", other_id])
        .status
        .success());
    assert_eq!(
        dir.json(&["ai-gateway-provider-keys", "list"]),
        json!({ "ai_gateway_provider_keys": [] })
    );
}

#[test]
fn tokens_and_provider_key_values_never_reach_the_data_dir() {
    let dir = DataDir::new("key-plaintext");
    dir.json(&["vaults", "create", "--name", "v"]);
    // An open connection keeps the WAL file in place while the CLI writes.
    let watcher = rusqlite::Connection::open(dir.path().join("keygate.db")).unwrap();
    watcher
        .query_row("SELECT COUNT(*) FROM vaults", [], |row| {
            row.get::<_, i64>(0)
        })
        .unwrap();
    let created = dir.json(&["ai-gateway-api-keys", "create"]);
    let (api_key_id, token) = (str_field(&created, "id"), str_field(&created, "token"));
    let (arg_value, piped_value, updated) = (
        random_value("sk-arg"),
        random_value("sk-piped"),
        random_value("sk-updated"),
    );
    let provider = |provider: &str, value: &str| {
        [
            "ai-gateway-provider-keys",
            "create",
            "--ai-gateway-api-key-id",
            api_key_id,
            "--provider-id",
            provider,
            "--value",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([value.to_owned()])
        .collect::<Vec<_>>()
    };
    let args = provider("openai", &arg_value);
    let pk = dir.json(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let args = provider("anthropic", "-");
    parse_ok(&dir.run_with_stdin(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        piped_value.as_bytes(),
    ));
    dir.json(&[
        "ai-gateway-provider-keys",
        "update",
        str_field(&pk, "id"),
        "--value",
        &updated,
    ]);
    // The gateway side: a cache authenticates and records last use, which writes to the same files.
    let keys = cache(&dir);
    keys.authenticate(token.as_bytes()).unwrap();
    drop(keys);
    assert!(dir.json(&["ai-gateway-api-keys", "get", api_key_id])["last_used"].is_string());

    let needles = [
        token,
        arg_value.as_str(),
        piped_value.as_str(),
        updated.as_str(),
    ];
    assert!(dir.path().join("keygate.db-wal").exists());
    assert!(assert_absent_from_files(dir.path(), "before checkpoint", &needles) >= 3);
    watcher
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    assert_absent_from_files(dir.path(), "after checkpoint", &needles);
    drop(watcher);
    assert_absent_from_files(dir.path(), "after close", &needles);
}

#[test]
fn scopes_are_set_on_create_changed_and_cleared_on_update() {
    let dir = DataDir::new("api-key-scopes");
    let created = dir.json(&[
        "ai-gateway-api-keys",
        "create",
        "--allowed-providers",
        "openai, anthropic",
        "--allowed-models",
        "gpt-4o*,anthropic:claude-*",
    ]);
    assert_eq!(created["allowed_providers"], json!(["openai", "anthropic"]));
    assert_eq!(
        created["allowed_models"],
        json!(["gpt-4o*", "anthropic:claude-*"])
    );
    let id = str_field(&created, "id").to_owned();
    let updated = dir.json(&[
        "ai-gateway-api-keys",
        "update",
        &id,
        "--allowed-models",
        "o1",
    ]);
    assert_eq!(updated["allowed_providers"], json!(["openai", "anthropic"]));
    assert_eq!(updated["allowed_models"], json!(["o1"]));
    let cleared = dir.json(&[
        "ai-gateway-api-keys",
        "update",
        &id,
        "--allowed-providers",
        "",
    ]);
    assert_eq!(cleared["allowed_providers"], json!([]));
    assert_eq!(dir.json(&["ai-gateway-api-keys", "get", &id]), cleared);
    let plain = dir.json(&["ai-gateway-api-keys", "create"]);
    assert_eq!(
        (&plain["allowed_providers"], &plain["allowed_models"]),
        (&json!([]), &json!([]))
    );

    let out = dir.run(&[
        "ai-gateway-api-keys",
        "update",
        &id,
        "--allowed-providers",
        "Open AI",
    ]);
    assert_fails(&out, 2, "invalid pattern 'Open AI' in allowed providers");
    let many = vec!["m"; 65].join(",");
    let out = dir.run(&["ai-gateway-api-keys", "create", "--allowed-models", &many]);
    assert_fails(&out, 2, "allowed models lists 65 patterns; the limit is 64");
    assert_eq!(dir.json(&["ai-gateway-api-keys", "get", &id]), cleared);
}

#[test]
fn limits_are_set_on_create_changed_and_removed_on_update() {
    let dir = DataDir::new("api-key-limits");
    let created = dir.json(&[
        "ai-gateway-api-keys",
        "create",
        "--request-limit",
        "100/minute",
        "--token-limit",
        "50000/day",
        "--daily-spend-limit",
        "5",
        "--monthly-spend-limit",
        "50.125",
        "--on-store-failure",
        "closed",
    ]);
    assert_eq!(
        created["limits"],
        json!({"requests": "100/min", "tokens": "50000/day", "daily_spend_usd": "5.00",
               "monthly_spend_usd": "50.125", "on_store_failure": "closed"})
    );
    let (id, token) = (str_field(&created, "id"), str_field(&created, "token"));
    let keys = cache(&dir);
    let minute = Duration::from_secs(60);
    assert_eq!(
        keys.authenticate(token.as_bytes()).unwrap().limits(),
        &KeyLimits {
            requests: Some(Rate {
                count: 100,
                window: minute
            }),
            tokens: Some(Rate {
                count: 50_000,
                window: Duration::from_secs(86_400)
            }),
            daily_spend_micros: Some(5_000_000),
            monthly_spend_micros: Some(50_125_000),
            on_store_failure: StoreFailure::Closed,
        }
    );

    // One flag changes one limit; the others stay.
    let changed = dir.json(&[
        "ai-gateway-api-keys",
        "update",
        id,
        "--token-limit",
        "2000/h",
    ]);
    assert_eq!(
        changed["limits"],
        json!({"requests": "100/min", "tokens": "2000/h", "daily_spend_usd": "5.00",
               "monthly_spend_usd": "50.125", "on_store_failure": "closed"})
    );
    let removed = dir.json(&[
        "ai-gateway-api-keys",
        "update",
        id,
        "--daily-spend-limit",
        "",
        "--monthly-spend-limit",
        "",
    ]);
    assert_eq!(
        removed["limits"],
        json!({"requests": "100/min", "tokens": "2000/h", "on_store_failure": "closed"})
    );
    let described = dir.json(&["ai-gateway-api-keys", "update", id, "--description", "d"]);
    assert_eq!(described["limits"], removed["limits"]);
    // The mode belongs to the budgets and goes with the last of them.
    let requests_only = dir.json(&["ai-gateway-api-keys", "update", id, "--token-limit", ""]);
    assert_eq!(requests_only["limits"], json!({"requests": "100/min"}));
    assert_eq!(dir.json(&["ai-gateway-api-keys", "get", id]), requests_only);
    keys.refresh();
    assert_eq!(
        keys.authenticate(token.as_bytes()).unwrap().limits(),
        &KeyLimits {
            requests: Some(Rate {
                count: 100,
                window: minute
            }),
            ..KeyLimits::default()
        }
    );
    // A limit flag alone is a change; the default mode needs no budget.
    let local = dir.json(&[
        "ai-gateway-api-keys",
        "update",
        id,
        "--on-store-failure",
        "local",
    ]);
    assert_eq!(local["limits"], json!({"requests": "100/min"}));
    let unlimited = dir.json(&["ai-gateway-api-keys", "update", id, "--request-limit", ""]);
    assert_eq!(unlimited["limits"], json!({}));
    let spend = dir.json(&[
        "ai-gateway-api-keys",
        "update",
        id,
        "--daily-spend-limit",
        "0.25",
    ]);
    assert_eq!(
        spend["limits"],
        json!({"daily_spend_usd": "0.25", "on_store_failure": "local"})
    );
}

#[test]
fn invalid_input_exits_2_with_one_sentence() {
    let dir = DataDir::new("key-invalid");
    let created = dir.json(&["ai-gateway-api-keys", "create"]);
    let id = str_field(&created, "id");
    let one_sentence = |out: &std::process::Output, needle: &str| {
        let stderr = assert_fails(out, 2, needle);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
    };
    for (args, needle) in [
        (
            vec!["ai-gateway-api-keys", "get", "aigk_nope"],
            "AI gateway API key 'aigk_nope' not found",
        ),
        (
            vec![
                "ai-gateway-api-keys",
                "update",
                "aigk_nope",
                "--disabled",
                "true",
            ],
            "AI gateway API key 'aigk_nope' not found",
        ),
        (
            vec!["ai-gateway-api-keys", "delete", "aigk_nope"],
            "AI gateway API key 'aigk_nope' not found",
        ),
        (
            vec!["ai-gateway-api-keys", "create", "--expires-at", "next week"],
            "invalid expiry time 'next week': expected an RFC 3339 time",
        ),
        (
            vec!["ai-gateway-api-keys", "create", "--expires-in", "30y"],
            "invalid duration '30y'",
        ),
        (
            vec![
                "ai-gateway-api-keys",
                "update",
                id,
                "--expires-at",
                "2001-01-01T00:00:00Z",
            ],
            "expiry 2001-01-01T00:00:00Z is not in the future",
        ),
        (
            vec!["ai-gateway-api-keys", "create", "--metadata", "[\"a\"]"],
            "metadata must be a JSON object",
        ),
        (
            vec![
                "ai-gateway-api-keys",
                "update",
                id,
                "--metadata",
                "not json",
            ],
            "metadata must be a JSON object",
        ),
        (
            vec!["ai-gateway-provider-keys", "get", "aigpk_nope"],
            "AI gateway provider key 'aigpk_nope' not found",
        ),
        (
            vec![
                "ai-gateway-provider-keys",
                "update",
                "aigpk_nope",
                "--description",
                "d",
            ],
            "AI gateway provider key 'aigpk_nope' not found",
        ),
        (
            vec!["ai-gateway-provider-keys", "delete", "aigpk_nope"],
            "AI gateway provider key 'aigpk_nope' not found",
        ),
        (
            vec![
                "ai-gateway-provider-keys",
                "list",
                "--ai-gateway-api-key-id",
                "aigk_nope",
            ],
            "AI gateway API key 'aigk_nope' not found",
        ),
        (
            vec![
                "ai-gateway-provider-keys",
                "create",
                "--ai-gateway-api-key-id",
                "aigk_nope",
                "--provider-id",
                "openai",
                "--value",
                "sk",
            ],
            "AI gateway API key 'aigk_nope' not found",
        ),
        (
            vec![
                "ai-gateway-provider-keys",
                "create",
                "--ai-gateway-api-key-id",
                id,
                "--provider-id",
                "Open AI",
                "--value",
                "sk",
            ],
            "invalid provider id 'Open AI'",
        ),
        (
            vec![
                "ai-gateway-provider-keys",
                "create",
                "--ai-gateway-api-key-id",
                id,
                "--provider-id",
                "openai",
                "--value",
                "",
            ],
            "secret value is empty",
        ),
        (
            vec!["ai-gateway-api-keys", "create", "--request-limit", "100/week"],
            "--request-limit: invalid rate '100/week': expected a whole number from 1 to 2^50, '/' and \
             a unit (s, min, h or day), such as 100/min or 50000/day",
        ),
        (
            vec!["ai-gateway-api-keys", "update", id, "--token-limit", "0/day"],
            "--token-limit: invalid rate '0/day'",
        ),
        (
            vec![
                "ai-gateway-api-keys",
                "create",
                "--daily-spend-limit",
                "1.2345678",
            ],
            "--daily-spend-limit: invalid amount '1.2345678': expected US dollars above 0 and at most \
             1000000000, with at most 6 decimal places, such as 5 or 0.25",
        ),
        (
            vec![
                "ai-gateway-api-keys",
                "update",
                id,
                "--monthly-spend-limit",
                "$50",
            ],
            "--monthly-spend-limit: invalid amount '$50'",
        ),
        (
            vec![
                "ai-gateway-api-keys",
                "create",
                "--token-limit",
                "1/s",
                "--on-store-failure",
                "open",
            ],
            "--on-store-failure: invalid store failure mode 'open': expected local or closed",
        ),
        (
            vec![
                "ai-gateway-api-keys",
                "update",
                id,
                "--on-store-failure",
                "closed",
            ],
            "--on-store-failure closed needs a token or spend limit on the key",
        ),
        (
            vec![
                "ai-gateway-api-keys",
                "update",
                "aigk_nope",
                "--token-limit",
                "1/s",
            ],
            "AI gateway API key 'aigk_nope' not found",
        ),
    ] {
        one_sentence(&dir.run(&args), needle);
    }
    let big = format!(r#"{{"k": "{}"}}"#, "x".repeat(5000));
    one_sentence(
        &dir.run(&["ai-gateway-api-keys", "create", "--metadata", &big]),
        "the limit is 4096",
    );
    // Usage errors from the argument parser also exit 2.
    for args in [
        vec!["ai-gateway-api-keys", "update", id],
        vec!["ai-gateway-api-keys", "update", id, "--disabled", "maybe"],
        vec![
            "ai-gateway-api-keys",
            "create",
            "--expires-at",
            "2099-01-01T00:00:00Z",
            "--expires-in",
            "1d",
        ],
        vec!["ai-gateway-provider-keys", "update", "aigpk_x"],
    ] {
        assert_eq!(dir.run(&args).status.code(), Some(2), "{args:?}");
    }
    // Nothing was half-written.
    assert_eq!(
        dir.json(&["ai-gateway-api-keys", "list"])["ai_gateway_api_keys"],
        json!([created.as_object().map(|o| {
            let mut o = o.clone();
            o.remove("token");
            o
        })])
    );
}
