use chrono::{Duration, SubsecRound, Utc};
use keygate_secrets::test_support::{all_file_bytes, inline_key, TempDir};
use keygate_secrets::{Store, StoreError};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Map, Value};

use super::*;
use crate::error::KeyError;
use crate::limits::{KeyLimits, Rate, StoreFailure};
use crate::model::{ApiKeyUpdate, CreatedApiKey, ProviderKeyUpdate};
use crate::schema::KEYS;
use crate::token::{Digest, TokenHasher, TOKEN_LEN};
use crate::{KeyCache, Rejection};
use keygate_store::Location;
use keygate_test_support::{on_both_backends, TestDatabase};

on_both_backends!(
    api_key_crud_round_trip,
    api_key_rules,
    provider_key_crud_round_trip,
    provider_key_rules,
    last_use_is_recorded_without_notifying_caches_and_never_goes_back,
    scopes_are_stored_updated_and_cleared,
    limits_are_stored_updated_and_removed,
    the_cache_carries_limits_and_refuses_a_key_whose_limits_are_unreadable,
);

fn locked(db: &TestDatabase) -> KeyStore {
    let location = Location::parse(&db.url).unwrap();
    KeyStore::open(Store::open_database(db.dir.path(), &location).unwrap()).unwrap()
}

fn unlocked(db: &TestDatabase, key: u8) -> KeyStore {
    let mut store = locked(db).into_store();
    store.unlock(&inline_key(key)).unwrap();
    KeyStore::open(store).unwrap()
}

fn unlocked_dir(dir: &TempDir, key: u8) -> KeyStore {
    KeyStore::open(Store::open_unlocked(dir.path(), &inline_key(key)).unwrap()).unwrap()
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn api_key_crud_round_trip(db: &TestDatabase) {
    let keys = unlocked(db, 1);
    let expiry = (Utc::now() + Duration::days(30)).trunc_subsecs(0);
    let created = keys
        .create_api_key(
            "ci runner",
            &object(json!({"team": "search"})),
            Some(expiry),
            &[],
            &[],
            &KeyLimits::default(),
        )
        .unwrap();
    let token = created.token.expose_secret().to_owned();
    let debug = format!("{created:?} {keys:?}");
    assert!(!debug.contains(&token[7..]), "{debug}");
    let key = created.key;
    assert!(
        key.id.starts_with("aigk_") && key.id.len() == 5 + 26,
        "{}",
        key.id
    );
    assert_eq!(token.len(), TOKEN_LEN);
    assert_eq!(
        key.display_name,
        format!("{}...{}", &token[..7], &token[token.len() - 4..])
    );
    assert_eq!(key.metadata["team"], "search");
    assert_eq!(
        key.expires_at.as_deref(),
        Some(keygate_secrets::format_timestamp(expiry).as_str())
    );
    assert_eq!((key.last_used.as_deref(), key.disabled), (None, false));
    assert_eq!(keys.get_api_key(&key.id).unwrap(), key);

    let other = keys
        .create_api_key("", &Map::new(), None, &[], &[], &KeyLimits::default())
        .unwrap()
        .key;
    assert_eq!(
        keys.list_api_keys().unwrap(),
        vec![key.clone(), other.clone()]
    );

    let disabled = keys
        .update_api_key(
            &key.id,
            &ApiKeyUpdate {
                disabled: Some(true),
                expires_at: Some(None),
                ..ApiKeyUpdate::default()
            },
        )
        .unwrap();
    assert!(disabled.disabled);
    assert_eq!(disabled.expires_at, None);
    assert_eq!(disabled.description, "ci runner");
    let described = keys
        .update_api_key(
            &key.id,
            &ApiKeyUpdate {
                description: Some("new"),
                metadata: Some(&object(json!({"owner": "ana"}))),
                ..ApiKeyUpdate::default()
            },
        )
        .unwrap();
    assert_eq!(described.metadata, object(json!({"owner": "ana"})));
    assert!(described.disabled);
    assert_eq!(keys.get_api_key(&key.id).unwrap(), described);

    keys.delete_api_key(&key.id).unwrap();
    assert!(matches!(
        keys.get_api_key(&key.id),
        Err(KeyError::ApiKeyNotFound(_))
    ));
    let err = keys.delete_api_key(&key.id).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("AI gateway API key '{}' not found", key.id)
    );
    assert!(err.is_invalid_input());
    assert_eq!(keys.list_api_keys().unwrap(), vec![other]);
}

fn api_key_rules(db: &TestDatabase) {
    let keys = unlocked(db, 1);
    let past = Utc::now() - Duration::seconds(1);
    let err = keys
        .create_api_key("", &Map::new(), Some(past), &[], &[], &KeyLimits::default())
        .unwrap_err();
    assert!(
        err.is_invalid_input() && err.to_string().contains("not in the future"),
        "{err}"
    );
    let big = object(json!({"k": "x".repeat(5000)}));
    assert!(keys
        .create_api_key("", &big, None, &[], &[], &KeyLimits::default())
        .unwrap_err()
        .is_invalid_input());
    assert!(keys
        .create_api_key(
            "bell\u{7}",
            &Map::new(),
            None,
            &[],
            &[],
            &KeyLimits::default()
        )
        .unwrap_err()
        .is_invalid_input());
    let key = keys
        .create_api_key("", &Map::new(), None, &[], &[], &KeyLimits::default())
        .unwrap()
        .key;
    let update = ApiKeyUpdate {
        expires_at: Some(Some(past)),
        ..ApiKeyUpdate::default()
    };
    assert!(keys
        .update_api_key(&key.id, &update)
        .unwrap_err()
        .is_invalid_input());
    assert!(matches!(
        keys.update_api_key("aigk_nope", &ApiKeyUpdate::default()),
        Err(KeyError::ApiKeyNotFound(_))
    ));
    // Metadata reads need no key; creating a token does.
    let locked = locked(db);
    assert_eq!(locked.list_api_keys().unwrap(), vec![key]);
    assert!(matches!(
        locked.create_api_key("", &Map::new(), None, &[], &[], &KeyLimits::default()),
        Err(KeyError::Store(StoreError::Locked))
    ));
}

#[test]
fn the_store_keeps_a_keyed_hash_of_the_token() {
    let dir = TempDir::new("keyed-hash");
    let keys = unlocked_dir(&dir, 1);
    let created = keys
        .create_api_key("", &Map::new(), None, &[], &[], &KeyLimits::default())
        .unwrap();
    let token = created.token.expose_secret().as_bytes();
    let stored: Vec<u8> = keys
        .store()
        .read(KEYS.name, |tx, _| {
            tx.query_one("SELECT token_hash FROM ai_gateway_api_keys", &[])?
                .get::<Vec<u8>>(0)
        })
        .unwrap();
    let stored = Digest(stored.try_into().unwrap());
    assert!(TokenHasher::for_store(keys.store()).unwrap().digest(token) == stored);
    // The same token under another master key hashes to something else.
    let elsewhere = TempDir::new("keyed-hash-other");
    let other = unlocked_dir(&elsewhere, 2);
    assert!(TokenHasher::for_store(other.store()).unwrap().digest(token) != stored);
    for (path, bytes) in all_file_bytes(dir.path()) {
        assert!(
            !bytes.windows(token.len()).any(|w| w == token),
            "{}",
            path.display()
        );
    }
}

fn provider_key_crud_round_trip(db: &TestDatabase) {
    let keys = unlocked(db, 1);
    let api_key = keys
        .create_api_key("", &Map::new(), None, &[], &[], &KeyLimits::default())
        .unwrap()
        .key;
    let other_api_key = keys
        .create_api_key("", &Map::new(), None, &[], &[], &KeyLimits::default())
        .unwrap()
        .key;
    let value = SecretString::from("sk-live-provider-value");
    let pk = keys
        .create_provider_key(
            &api_key.id,
            "openai",
            &value,
            "prod",
            &object(json!({"tier": 1})),
        )
        .unwrap();
    assert!(pk.id.starts_with("aigpk_") && pk.id.len() == "aigpk_".len() + 26);
    assert_eq!(pk.ai_gateway_api_key.id, api_key.id);
    assert_eq!(
        (pk.provider_id.as_str(), pk.description.as_str()),
        ("openai", "prod")
    );
    assert_eq!(keys.get_provider_key(&pk.id).unwrap(), pk);
    let elsewhere = keys
        .create_provider_key(&other_api_key.id, "anthropic", &value, "", &Map::new())
        .unwrap();
    assert_eq!(
        keys.list_provider_keys(None).unwrap(),
        vec![pk.clone(), elsewhere.clone()]
    );
    assert_eq!(
        keys.list_provider_keys(Some(&api_key.id)).unwrap(),
        vec![pk.clone()]
    );
    assert!(matches!(
        keys.list_provider_keys(Some("aigk_nope")),
        Err(KeyError::ApiKeyNotFound(_))
    ));
    let json = serde_json::to_string(&keys.list_provider_keys(None).unwrap()).unwrap();
    assert!(!json.contains("sk-live"), "{json}");

    let new_value = SecretString::from("sk-rotated");
    let updated = keys
        .update_provider_key(
            &pk.id,
            &ProviderKeyUpdate {
                value: Some(&new_value),
                description: Some("rotated"),
                ..ProviderKeyUpdate::default()
            },
        )
        .unwrap();
    assert_eq!(updated.description, "rotated");
    assert_eq!(updated.metadata, pk.metadata);

    keys.delete_provider_key(&pk.id).unwrap();
    assert!(matches!(
        keys.get_provider_key(&pk.id),
        Err(KeyError::ProviderKeyNotFound(_))
    ));
    assert!(matches!(
        keys.delete_provider_key(&pk.id),
        Err(KeyError::ProviderKeyNotFound(_))
    ));
    // Deleting an access key deletes what is attached to it.
    keys.delete_api_key(&other_api_key.id).unwrap();
    assert!(keys.list_provider_keys(None).unwrap().is_empty());
}

fn provider_key_rules(db: &TestDatabase) {
    let keys = unlocked(db, 1);
    let api_key = keys
        .create_api_key("", &Map::new(), None, &[], &[], &KeyLimits::default())
        .unwrap()
        .key;
    let value = SecretString::from("sk");
    let create = |provider: &str, value: &SecretString| {
        keys.create_provider_key(&api_key.id, provider, value, "", &Map::new())
    };
    assert!(create("Open AI", &value)
        .unwrap_err()
        .to_string()
        .starts_with("invalid provider id"));
    let err = create("openai", &SecretString::from("")).unwrap_err();
    assert_eq!(err.to_string(), "secret value is empty");
    assert!(matches!(
        keys.create_provider_key("aigk_nope", "openai", &value, "", &Map::new()),
        Err(KeyError::ApiKeyNotFound(_))
    ));
    for _ in 0..crate::MAX_PROVIDER_KEYS_PER_PROVIDER {
        create("openai", &value).unwrap();
    }
    let err = create("openai", &value).unwrap_err();
    assert!(
        matches!(err, KeyError::TooManyProviderKeys { .. }) && err.is_invalid_input(),
        "{err}"
    );
    create("anthropic", &value).unwrap();
    let locked = locked(db);
    assert!(matches!(
        locked.create_provider_key(&api_key.id, "google", &value, "", &Map::new()),
        Err(KeyError::Store(StoreError::Locked))
    ));
}

fn last_use_is_recorded_without_notifying_caches_and_never_goes_back(db: &TestDatabase) {
    let keys = unlocked(db, 1);
    let key = keys
        .create_api_key("", &Map::new(), None, &[], &[], &KeyLimits::default())
        .unwrap()
        .key;
    let generation = keys.store().generation(KEYS.name).unwrap();
    let later = Utc::now().trunc_subsecs(0);
    let earlier = later - Duration::minutes(5);
    keys.record_last_used(&[(&key.id, later)]).unwrap();
    keys.record_last_used(&[(&key.id, earlier), ("aigk_gone", later)])
        .unwrap();
    assert_eq!(
        keys.get_api_key(&key.id).unwrap().last_used,
        Some(keygate_secrets::format_timestamp(later))
    );
    assert_eq!(keys.store().generation(KEYS.name).unwrap(), generation);
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn scopes_are_stored_updated_and_cleared(db: &TestDatabase) {
    let keys = unlocked(db, 1);
    let (providers, models) = (
        strings(&["openai", "anth*"]),
        strings(&["gpt-4o*", "openai:o1"]),
    );
    let key = keys
        .create_api_key(
            "",
            &Map::new(),
            None,
            &providers,
            &models,
            &KeyLimits::default(),
        )
        .unwrap()
        .key;
    assert_eq!(
        (&key.allowed_providers, &key.allowed_models),
        (&providers, &models)
    );
    let shown = serde_json::to_value(&key).unwrap();
    assert_eq!(shown["allowed_models"], json!(["gpt-4o*", "openai:o1"]));
    assert_eq!(keys.get_api_key(&key.id).unwrap(), key);

    let narrowed = strings(&["claude-*"]);
    let update = ApiKeyUpdate {
        allowed_models: Some(&narrowed),
        ..ApiKeyUpdate::default()
    };
    let updated = keys.update_api_key(&key.id, &update).unwrap();
    assert_eq!(
        (updated.allowed_providers, updated.allowed_models),
        (providers, narrowed)
    );
    let update = ApiKeyUpdate {
        allowed_providers: Some(&[]),
        allowed_models: Some(&[]),
        ..ApiKeyUpdate::default()
    };
    let cleared = keys.update_api_key(&key.id, &update).unwrap();
    assert!(cleared.allowed_providers.is_empty() && cleared.allowed_models.is_empty());
    assert_eq!(keys.get_api_key(&key.id).unwrap(), cleared);

    let bad = strings(&["Open AI"]);
    let err = keys
        .create_api_key("", &Map::new(), None, &bad, &[], &KeyLimits::default())
        .unwrap_err();
    assert!(
        err.is_invalid_input() && err.to_string().contains("in allowed providers"),
        "{err}"
    );
    let update = ApiKeyUpdate {
        allowed_models: Some(&bad),
        ..ApiKeyUpdate::default()
    };
    let err = keys.update_api_key(&key.id, &update).unwrap_err();
    assert!(
        err.is_invalid_input() && err.to_string().contains("in allowed models"),
        "{err}"
    );
}

fn rate(text: &str) -> Rate {
    text.parse().unwrap()
}

fn limits_are_stored_updated_and_removed(db: &TestDatabase) {
    let keys = unlocked(db, 1);
    let limits = KeyLimits {
        requests: Some(rate("100/min")),
        tokens: Some(rate("50000/day")),
        daily_spend_micros: Some(5_000_000),
        monthly_spend_micros: Some(50_250_000),
        on_store_failure: StoreFailure::Closed,
    };
    let key = keys
        .create_api_key("", &Map::new(), None, &[], &[], &limits)
        .unwrap()
        .key;
    assert_eq!(key.limits, limits);
    assert_eq!(
        serde_json::to_value(&key).unwrap()["limits"],
        json!({"requests": "100/min", "tokens": "50000/day", "daily_spend_usd": "5.00",
               "monthly_spend_usd": "50.25", "on_store_failure": "closed"})
    );
    assert_eq!(keys.get_api_key(&key.id).unwrap(), key);

    // One limit changes; the others are passed back as they were.
    let mut changed = key.limits.clone();
    changed.tokens = Some(rate("2000/h"));
    let update = ApiKeyUpdate {
        limits: Some(&changed),
        ..ApiKeyUpdate::default()
    };
    assert_eq!(
        keys.update_api_key(&key.id, &update).unwrap().limits,
        changed
    );
    let mut removed = changed.clone();
    removed.daily_spend_micros = None;
    let update = ApiKeyUpdate {
        limits: Some(&removed),
        ..ApiKeyUpdate::default()
    };
    keys.update_api_key(&key.id, &update).unwrap();
    let described = ApiKeyUpdate {
        description: Some("limits untouched"),
        ..ApiKeyUpdate::default()
    };
    assert_eq!(
        keys.update_api_key(&key.id, &described).unwrap().limits,
        removed
    );
    assert_eq!(keys.get_api_key(&key.id).unwrap().limits, removed);
    let update = ApiKeyUpdate {
        limits: Some(&KeyLimits::default()),
        ..ApiKeyUpdate::default()
    };
    let unlimited = keys.update_api_key(&key.id, &update).unwrap();
    assert!(unlimited.limits.is_unlimited());
    assert_eq!(
        serde_json::to_value(&unlimited).unwrap()["limits"],
        json!({})
    );

    let closed_without_budget = KeyLimits {
        requests: Some(rate("1/s")),
        on_store_failure: StoreFailure::Closed,
        ..KeyLimits::default()
    };
    let zero_rate = KeyLimits {
        requests: Some(Rate {
            count: 0,
            window: std::time::Duration::from_secs(60),
        }),
        ..KeyLimits::default()
    };
    for bad in [&closed_without_budget, &zero_rate] {
        let err = keys
            .create_api_key("", &Map::new(), None, &[], &[], bad)
            .unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
        let update = ApiKeyUpdate {
            limits: Some(bad),
            ..ApiKeyUpdate::default()
        };
        assert!(keys
            .update_api_key(&key.id, &update)
            .unwrap_err()
            .is_invalid_input());
    }
    assert_eq!(keys.get_api_key(&key.id).unwrap(), unlimited);
}

fn the_cache_carries_limits_and_refuses_a_key_whose_limits_are_unreadable(db: &TestDatabase) {
    let keys = unlocked(db, 1);
    let limits = KeyLimits {
        tokens: Some(rate("50000/day")),
        monthly_spend_micros: Some(1),
        ..KeyLimits::default()
    };
    let limited = keys
        .create_api_key("", &Map::new(), None, &[], &[], &limits)
        .unwrap();
    let plain = keys
        .create_api_key("", &Map::new(), None, &[], &[], &KeyLimits::default())
        .unwrap();
    let edited = keys
        .create_api_key("", &Map::new(), None, &[], &[], &KeyLimits::default())
        .unwrap();
    keys.store()
        .write_unannounced(|tx| {
            tx.execute(
                "UPDATE ai_gateway_api_keys SET limits = '{\"tokens\": \"5/week\"}' WHERE id = $1",
                &[&edited.key.id],
            )
        })
        .unwrap();
    let cache = KeyCache::start(
        keys,
        KeyCache::DEFAULT_POLL_INTERVAL,
        std::time::Duration::from_secs(3600),
    )
    .unwrap();
    let authenticate =
        |created: &CreatedApiKey| cache.authenticate(created.token.expose_secret().as_bytes());
    assert_eq!(authenticate(&limited).unwrap().limits(), &limits);
    assert!(authenticate(&plain).unwrap().limits().is_unlimited());
    assert_eq!(authenticate(&edited).unwrap_err(), Rejection::Unknown);
}

#[test]
fn a_data_dir_of_any_earlier_schema_version_upgrades_in_place() {
    for version in 1..KEYS.steps.len() {
        let dir = TempDir::new("upgrade");
        let store = Store::open_unlocked(dir.path(), &inline_key(1)).unwrap();
        let earlier = keygate_store::Component {
            name: KEYS.name,
            steps: &KEYS.steps[..version],
        };
        store.migrate_component(&earlier).unwrap();
        store
            .write_unannounced(|tx| {
                tx.execute(
                    "INSERT INTO ai_gateway_api_keys (id, token_hash, display_name, description, metadata, \
                     created_at, updated_at, disabled) VALUES ('aigk_old', $1, 'kg-old...abcd', 'old', '{}', \
                     '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', 0)",
                    &[&b"\x00".as_slice()],
                )
            })
            .unwrap();
        let keys = KeyStore::open(store).unwrap();
        let old = keys.get_api_key("aigk_old").unwrap();
        assert_eq!(old.description, "old", "from version {version}");
        assert!(old.allowed_providers.is_empty() && old.allowed_models.is_empty());
        assert_eq!(old.limits, KeyLimits::default());
        let models = strings(&["gpt-4o*"]);
        let limits = KeyLimits {
            requests: Some(rate("10/s")),
            ..KeyLimits::default()
        };
        let update = ApiKeyUpdate {
            allowed_models: Some(&models),
            limits: Some(&limits),
            ..ApiKeyUpdate::default()
        };
        let updated = keys.update_api_key("aigk_old", &update).unwrap();
        assert_eq!((updated.allowed_models, updated.limits), (models, limits));
    }
}
