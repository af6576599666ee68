//! The key, secret and IP policy stores on a real PostgreSQL shared by two "instances" (two stores with
//! their own connections and caches, as two gateways would have). Reported as skipped in one line when
//! PostgreSQL is not installed (see `keygate_test_support::parts`).

use std::time::{Duration, Instant};

use keygate_cel::SecretSource;
use keygate_keys::{KeyCache, KeyLimits, KeyStore, Rejection};
use keygate_secrets::test_support::{inline_key, TempDir};
use keygate_secrets::{CachedIpPolicies, CachedSecrets, RuleAction, Store, StoreError};
use keygate_store::Location;
use keygate_test_support::{require, PostgresServer};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Map;

/// One instance: its own data directory (for nothing but a key file it must not need) and store.
fn instance(url: &str, name: &str) -> (TempDir, Store) {
    let dir = TempDir::new(name);
    let location = Location::parse(url).unwrap();
    let mut store = Store::open_database(dir.path(), &location).unwrap();
    store.unlock(&inline_key(7)).unwrap();
    (dir, store)
}

/// Another connection of the same instance, unlocked.
fn unlocked_copy(store: &Store) -> Store {
    let mut copy = store.reopen().unwrap();
    copy.unlock(&inline_key(7)).unwrap();
    copy
}

/// Polls `done` for up to a second, returning how long it took.
fn within_a_second(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{what} not seen within 1 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    start.elapsed()
}

#[test]
fn two_instances_share_keys_secrets_and_ip_policies() {
    let Some(server) = require(PostgresServer::start()) else {
        return;
    };
    let url = server.create_database("keygate");
    let (_a_dir, a) = instance(&url, "pg-a");
    let (_b_dir, b) = instance(&url, "pg-b");

    // Access keys: created on A, authenticated on B; revoked on A, refused on B.
    let keys_a = KeyStore::open(unlocked_copy(&a)).unwrap();
    let cache_b = KeyCache::start(
        KeyStore::open(unlocked_copy(&b)).unwrap(),
        KeyCache::DEFAULT_POLL_INTERVAL,
        Duration::from_secs(3600),
    )
    .unwrap();
    let created = keys_a
        .create_api_key("ci", &Map::new(), None, &[], &[], &KeyLimits::default())
        .unwrap();
    let token = created.token.expose_secret().as_bytes();
    // Misses do not re-read the key store (unauthenticated clients choose them): the feed brings it.
    let created_after = within_a_second("the new key", || cache_b.authenticate(token).is_ok());
    eprintln!("new key seen by the other instance after {created_after:?}");
    keys_a.delete_api_key(&created.key.id).unwrap();
    let revoked = within_a_second("the revocation", || {
        cache_b.authenticate(token).err() == Some(Rejection::Unknown)
    });
    eprintln!("revocation seen by the other instance after {revoked:?}");
    assert_eq!(keys_a.list_api_keys().unwrap(), []);

    // Secrets: rotated on A, used by B.
    let vault = a.create_vault("gateway-auth", "").unwrap();
    let secret = a
        .create_secret(&vault.id, "token", &SecretString::from("old"), "")
        .unwrap();
    let secrets_b = CachedSecrets::start(unlocked_copy(&b), Duration::from_secs(3600)).unwrap();
    assert_eq!(
        secrets_b
            .get("gateway-auth", "token")
            .unwrap()
            .expose_secret(),
        "old"
    );
    a.update_secret(&secret.id, Some(&SecretString::from("new")), None)
        .unwrap();
    let rotated = within_a_second("the rotation", || {
        secrets_b
            .get("gateway-auth", "token")
            .is_ok_and(|value| value.expose_secret() == "new")
    });
    eprintln!("rotation seen by the other instance after {rotated:?}");

    // IP policies and the store's input errors behave as on SQLite.
    let policies_b =
        CachedIpPolicies::start(b.reopen().unwrap(), Duration::from_secs(3600)).unwrap();
    let policy = a.create_ip_policy("office").unwrap();
    a.create_ip_policy_rule(&policy.id, "10.0.0.0/8", RuleAction::Allow, "")
        .unwrap();
    within_a_second("the IP policy rule", || {
        policies_b
            .snapshot()
            .rules(&policy.id)
            .is_some_and(|rules| rules.len() == 1)
    });
    assert!(matches!(
        b.create_vault("gateway-auth", ""),
        Err(StoreError::DuplicateVault(_))
    ));
    let second = b.create_vault("second", "").unwrap();
    assert_eq!(
        a.list_vaults()
            .unwrap()
            .iter()
            .map(|v| &v.id)
            .collect::<Vec<_>>(),
        [&vault.id, &second.id],
        "oldest first, across instances"
    );
    assert!(matches!(
        a.delete_vault(&vault.id, false),
        Err(StoreError::VaultNotEmpty { count: 1, .. })
    ));

    // A database outage stops changes, not traffic: the caches answer from memory (the request path
    // reads no database) and a write fails with a database error.
    let kept = keys_a
        .create_api_key("kept", &Map::new(), None, &[], &[], &KeyLimits::default())
        .unwrap();
    let kept_token = kept.token.expose_secret().as_bytes();
    within_a_second("the kept key", || cache_b.authenticate(kept_token).is_ok());
    server.stop();
    assert!(cache_b.authenticate(kept_token).is_ok());
    assert_eq!(
        secrets_b
            .get("gateway-auth", "token")
            .unwrap()
            .expose_secret(),
        "new"
    );
    assert!(matches!(
        b.create_vault("during-outage", ""),
        Err(StoreError::Db(_))
    ));
    server.restart();

    // The master key stays on the instances: the database holds ciphertext only, and an instance with
    // another key is refused.
    let stored: Vec<Vec<u8>> = a
        .read("secrets", |tx, _| {
            tx.query("SELECT ciphertext FROM secrets", &[])?
                .iter()
                .map(|row| row.get(0))
                .collect::<keygate_store::Result<_>>()
        })
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].windows(3).any(|w| w == b"new"));
    let mut wrong = Store::open_database(_a_dir.path(), &Location::parse(&url).unwrap()).unwrap();
    assert!(matches!(
        wrong.unlock(&inline_key(8)),
        Err(StoreError::WrongMasterKey(_))
    ));
}
