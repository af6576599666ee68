//! The request path's store reads with PostgreSQL as the store (`--database postgres://...`): an access
//! key check and a secret lookup, each from its in-memory cache. Measured once with the server running
//! and once after it was stopped: equal numbers mean no database round trip per lookup. Skipped (one
//! line) without PostgreSQL installed.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use keygate_cel::SecretSource;
use keygate_keys::{KeyCache, KeyLimits, KeyStore};
use keygate_secrets::test_support::{inline_key, TempDir};
use keygate_secrets::{CachedSecrets, Store};
use keygate_store::Location;
use keygate_test_support::{require, PostgresServer};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Map;

fn unlocked(dir: &TempDir, url: &str) -> Store {
    let mut store = Store::open_database(dir.path(), &Location::parse(url).unwrap()).unwrap();
    store.unlock(&inline_key(42)).unwrap();
    store
}

fn bench_postgres(c: &mut Criterion) {
    let Some(server) = require(PostgresServer::start()) else {
        return;
    };
    let url = server.create_database("keygate");
    let dir = TempDir::new("bench-postgres");
    let keys = KeyStore::open(unlocked(&dir, &url)).unwrap();
    let tokens: Vec<String> = (0..1000)
        .map(|_| {
            let created = keys
                .create_api_key("", &Map::new(), None, &[], &[], &KeyLimits::default())
                .unwrap();
            created.token.expose_secret().to_owned()
        })
        .collect();
    let store = unlocked(&dir, &url);
    let vault = store.create_vault("gateway-auth", "").unwrap();
    for i in 0..100 {
        let value = SecretString::from(format!("token-{i}-abcdefghijklmnopqrstuvwxyz").as_str());
        store
            .create_secret(&vault.id, &format!("client-{i}"), &value, "")
            .unwrap();
    }
    let cache =
        KeyCache::start(keys, Duration::from_millis(250), Duration::from_secs(3600)).unwrap();
    let secrets = CachedSecrets::start(store, Duration::from_millis(250)).unwrap();
    let hit = tokens[577].as_bytes();
    for server_state in ["running", "stopped"] {
        if server_state == "stopped" {
            server.stop();
        }
        c.bench_function(
            &format!("postgres_{server_state}_key_cache_authenticate_hit"),
            |b| b.iter(|| cache.authenticate(black_box(hit)).expect("hit")),
        );
        c.bench_function(
            &format!("postgres_{server_state}_cached_secrets_get_hit"),
            |b| {
                b.iter(|| {
                    secrets
                        .get(black_box("gateway-auth"), black_box("client-57"))
                        .expect("hit")
                })
            },
        );
    }
}

criterion_group!(benches, bench_postgres);
criterion_main!(benches);
