//! Cost of an access key check through the gateway's cache (`KeyCache::authenticate` on the request path).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use keygate_keys::{KeyCache, KeyLimits, KeyStore, TOKEN_LEN, TOKEN_PREFIX};
use keygate_secrets::test_support::{inline_key, TempDir};
use keygate_secrets::Store;
use secrecy::ExposeSecret;
use serde_json::Map;

fn bench_authenticate(c: &mut Criterion) {
    let dir = TempDir::new("bench-authenticate");
    let store = Store::open_unlocked(dir.path(), &inline_key(42)).expect("open store");
    let keys = KeyStore::open(store).expect("key tables");
    let tokens: Vec<String> = (0..1000)
        .map(|_| {
            let created = keys
                .create_api_key("", &Map::new(), None, &[], &[], &KeyLimits::default())
                .expect("key");
            created.token.expose_secret().to_owned()
        })
        .collect();
    let cache =
        KeyCache::start(keys, Duration::from_millis(250), Duration::from_secs(10)).expect("cache");
    let hit = tokens[577].as_bytes();
    let mut unknown = format!(
        "{TOKEN_PREFIX}{}",
        "A".repeat(TOKEN_LEN - TOKEN_PREFIX.len())
    );
    c.bench_function("key_cache_authenticate_hit", |b| {
        b.iter(|| cache.authenticate(black_box(hit)).expect("hit"))
    });
    c.bench_function("key_cache_authenticate_unknown", |b| {
        b.iter(|| cache.authenticate(black_box(unknown.as_bytes())).is_err())
    });
    unknown.truncate(10);
    c.bench_function("key_cache_authenticate_wrong_format", |b| {
        b.iter(|| cache.authenticate(black_box(unknown.as_bytes())).is_err())
    });
}

criterion_group!(benches, bench_authenticate);
criterion_main!(benches);
