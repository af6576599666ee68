//! Cost of a secret lookup through the gateway's cache (`secrets.get` on the request path).

use std::hint::black_box;
use std::time::Duration;

use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use keygate_cel::SecretSource;
use keygate_secrets::{CachedSecrets, MasterKeySource, Store};
use secrecy::SecretString;

fn bench_get(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("keygate-bench-cache-{}", std::process::id()));
    let key = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
    let source = MasterKeySource::Inline(SecretString::from(key.as_str()));
    let store = Store::open_unlocked(&dir, &source).expect("open store");
    let vault = store.create_vault("gateway-auth", "").expect("vault");
    for i in 0..100 {
        let value = SecretString::from(format!("token-{i}-abcdefghijklmnopqrstuvwxyz").as_str());
        store
            .create_secret(&vault.id, &format!("client-{i}"), &value, "")
            .expect("secret");
    }
    let cache = CachedSecrets::start(store, Duration::from_millis(250)).expect("cache");
    c.bench_function("cached_secrets_get_hit", |b| {
        b.iter(|| {
            cache
                .get(black_box("gateway-auth"), black_box("client-57"))
                .expect("hit")
        })
    });
    c.bench_function("cached_secrets_get_miss", |b| {
        b.iter(|| {
            cache
                .get(black_box("gateway-auth"), black_box("nope"))
                .is_err()
        })
    });
    drop(cache);
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, bench_get);
criterion_main!(benches);
