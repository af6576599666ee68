//! Decision latency: in-memory store from one and two threads, Redis store on loopback.
//! The Redis bench starts its own `redis-server` on a free port (`cargo xtask test` installs it).

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keygate_ratelimit::{
    FailureMode, Limit, MemoryConfig, MemoryLimiter, RateLimiter, RedisConfig, RedisLimiter,
};
use keygate_test_support::RedisServer;

/// A limit that admits every request in the bench, so each decision takes the admitting path.
const LIMIT: Limit = Limit {
    capacity: 2_000_000_000,
    window: Duration::from_secs(60),
};

fn keys(prefix: &str) -> Vec<Vec<u8>> {
    (0..1024)
        .map(|i| format!("Bearer {prefix}-token-{i:04}").into_bytes())
        .collect()
}

fn memory(c: &mut Criterion) {
    let limiter = MemoryLimiter::new(MemoryConfig::default());
    let ks = keys("a");
    let mut i = 0;
    c.bench_function("memory/uncontended", |b| {
        b.iter(|| {
            i = (i + 1) % ks.len();
            black_box(limiter.check_now("bench", &ks[i], LIMIT))
        })
    });
    let mut i = 0;
    c.bench_function("memory/uncontended_via_trait", |b| {
        let dyn_limiter: &dyn RateLimiter = &limiter;
        let waker = std::task::Waker::noop();
        b.iter(|| {
            i = (i + 1) % ks.len();
            let mut f = dyn_limiter.check("bench", &ks[i], LIMIT);
            black_box(f.as_mut().poll(&mut std::task::Context::from_waker(waker)))
        })
    });
    let per_thread = [keys("t0"), keys("t1")];
    c.bench_function("memory/2_threads_distinct_keys", |b| {
        b.iter_custom(|iters| two_threads(&limiter, iters, |t, n| &per_thread[t][n % 1024]))
    });
    c.bench_function("memory/2_threads_same_key", |b| {
        b.iter_custom(|iters| two_threads(&limiter, iters, |_, _| b"Bearer shared"))
    });
}

/// Wall time for two threads to make `iters` decisions each, started together.
fn two_threads<'k>(
    limiter: &MemoryLimiter,
    iters: u64,
    key: impl Fn(usize, usize) -> &'k [u8] + Sync,
) -> Duration {
    let barrier = Barrier::new(3);
    std::thread::scope(|s| {
        for t in 0..2 {
            let (barrier, key) = (&barrier, &key);
            s.spawn(move || {
                barrier.wait();
                for n in 0..iters as usize {
                    black_box(limiter.check_now("bench", key(t, n), LIMIT));
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let started = Instant::now();
        barrier.wait();
        started.elapsed()
    })
}

fn redis(c: &mut Criterion) {
    let redis = RedisServer::start().unwrap_or_else(|missing| panic!("the Redis bench {missing}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let config = RedisConfig {
        timeout: Duration::from_millis(250),
        failure_mode: FailureMode::Closed,
    };
    let url = redis.url();
    let limiter = rt
        .block_on(RedisLimiter::connect(&url, config))
        .expect("connect");
    let ks = keys("r");
    let mut i = 0;
    c.bench_function("redis/loopback", |b| {
        b.iter(|| {
            i = (i + 1) % ks.len();
            black_box(rt.block_on(limiter.check("bench", &ks[i], LIMIT)))
        })
    });
    // 64 decisions in flight at once share the multiplexed connection (pipelined): throughput.
    let limiter = std::sync::Arc::new(limiter);
    let mut group = c.benchmark_group("redis");
    group.throughput(Throughput::Elements(64));
    group.bench_function("loopback_64_concurrent", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut set = tokio::task::JoinSet::new();
                for k in 0..64 {
                    let limiter = limiter.clone();
                    set.spawn(async move {
                        let key = format!("Bearer c-token-{k}");
                        limiter.check("bench", key.as_bytes(), LIMIT).await
                    });
                }
                black_box(set.join_all().await)
            })
        })
    });
    group.finish();
    assert_eq!(limiter.failures(), 0, "Redis failed during the bench");
}

criterion_group!(benches, memory, redis);
criterion_main!(benches);
