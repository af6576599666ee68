//! RedisBudgets against a real `redis-server` started on a free loopback port. Without `redis-server`
//! these tests say so in one line (see `keygate_test_support::parts`).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keygate_ratelimit::{
    Ask, BudgetFailure, BudgetStore, Counter, Draw, Grant, MemoryBudgets, RedisBudgets,
};
use keygate_test_support::{require, RedisServer};

const TIMEOUT: Duration = Duration::from_millis(250);

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A counter whose window ends in an hour.
fn counter(id: &str, limit: u64) -> Counter {
    Counter {
        id: id.to_owned(),
        limit,
        expires_at_ms: unix_ms() + 3_600_000,
    }
}

fn granted(units: u64, local: bool) -> Grant {
    Grant::Granted { units, local }
}

const FLAT: Draw = Draw {
    base: 40,
    per_unit: 0,
};

/// Polls with fresh counters until a reservation is charged to Redis again.
async fn wait_until_redis_grants(store: &RedisBudgets, within: Duration) {
    let deadline = Instant::now() + within;
    for round in 0u32.. {
        let probe = [counter(&format!("probe-{round}"), 100)];
        let failures = store.failures();
        let grant = store
            .reserve(Ask::new(&probe, &[FLAT], 0..=0), BudgetFailure::Local)
            .await;
        if grant == granted(0, false) && store.failures() == failures {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "store did not recover: {grant:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_never_charge_past_the_limit() {
    let Some(redis) = require(RedisServer::start()) else {
        return;
    };
    let a = Arc::new(RedisBudgets::connect(&redis.url(), TIMEOUT).await.unwrap());
    let b = Arc::new(RedisBudgets::connect(&redis.url(), TIMEOUT).await.unwrap());
    let tokens = Arc::new([counter("aigk_X:tokens:3600:1", 1_000)]);
    let draw = Draw {
        base: 10,
        per_unit: 1,
    };
    let mut tasks = Vec::new();
    for i in 0..400 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let tokens = tokens.clone();
        tasks.push(tokio::spawn(async move {
            let grant = store
                .reserve(
                    Ask::new(&tokens[..], &[draw], 1..=20),
                    BudgetFailure::Closed,
                )
                .await;
            match grant {
                Grant::Granted {
                    units,
                    local: false,
                } => {
                    assert!((1..=20).contains(&units), "{grant:?}");
                    10 + units
                }
                Grant::Exhausted { counter: 0 } => 0,
                other => panic!("{other:?}"),
            }
        }));
    }
    let mut charged = 0;
    for t in tasks {
        charged += t.await.unwrap();
    }
    assert_eq!(a.used(&tokens[0]).await, charged);
    // 400 reservations wanted up to 12,000: every one that found 11 or more left was granted.
    assert!((990..=1_000).contains(&charged), "{charged}");
    assert_eq!(a.failures() + b.failures(), 0);
}

/// A small deterministic generator, so a failing sequence can be replayed.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test]
async fn memory_and_redis_answer_the_same_sequence_the_same_way() {
    let Some(redis) = require(RedisServer::start()) else {
        return;
    };
    let on_redis = RedisBudgets::connect(&redis.url(), TIMEOUT).await.unwrap();
    let memory = MemoryBudgets::default();
    let stores: [&dyn BudgetStore; 2] = [&on_redis, &memory];
    // The last limit reads as 2^50 in both stores.
    let counters = [
        counter("k:tokens", 2_000),
        counter("k:spend", 50_000),
        counter("k:requests", 300),
        counter("k:huge", u64::MAX),
    ];
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut grants = 0;
    for step in 0..3_000 {
        // A random non-empty subset of the counters, in a random rotation.
        let first = rng.below(4) as usize;
        let len = 1 + rng.below(4) as usize;
        let picked: Vec<Counter> = (0..len)
            .map(|k| counters[(first + k) % 4].clone())
            .collect();
        if rng.below(3) == 0 {
            let deltas: Vec<i64> = picked
                .iter()
                .map(|_| match rng.below(30) {
                    // Beyond any counter: clamped alike (and Redis's INCRBY never overflows).
                    0..=2 => i64::MIN,
                    3 => i64::MAX,
                    _ => rng.below(401) as i64 - 250,
                })
                .collect();
            for store in stores {
                store.settle(&picked, &deltas, false).await;
            }
        } else {
            let draws: Vec<Draw> = picked
                .iter()
                .map(|c| match (rng.below(8), c.id == "k:huge") {
                    // Numbers beyond what Lua's doubles hold exactly: clamped alike.
                    (0, true) => Draw {
                        base: u64::MAX - rng.below(3),
                        per_unit: 0,
                    },
                    (2, true) => Draw {
                        base: rng.below(9),
                        per_unit: (1 << 49) + rng.below(5),
                    },
                    (3, true) => Draw {
                        base: rng.below(9),
                        per_unit: u64::MAX,
                    },
                    (1, _) => Draw {
                        base: rng.below(5),
                        per_unit: 0,
                    },
                    _ => Draw {
                        base: rng.below(60),
                        per_unit: rng.below(20),
                    },
                })
                .collect();
            let min = rng.below(8);
            // Sometimes below min (read as min), sometimes far above any room.
            let max = match rng.below(6) {
                0 => min.saturating_sub(1),
                1 => u64::MAX,
                _ => min + rng.below(100),
            };
            let a = Ask::new(&picked, &draws, min..=max);
            let from_redis = stores[0].reserve(a, BudgetFailure::Closed).await;
            let from_memory = stores[1].reserve(a, BudgetFailure::Closed).await;
            assert_eq!(from_redis, from_memory, "step {step}: {a:?}");
            if matches!(from_redis, Grant::Granted { .. }) {
                grants += 1;
            }
        }
        for c in &counters {
            let (r, m) = (stores[0].used(c).await, stores[1].used(c).await);
            assert_eq!(r, m, "step {step}: {}", c.id);
        }
    }
    // The sequence exercises both answers.
    assert!((300..1_700).contains(&grants), "{grants}");
    assert_eq!(on_redis.failures(), 0);
}

#[tokio::test]
async fn keys_are_prefixed_expire_with_their_window_and_vanish_at_zero() {
    let Some(redis) = require(RedisServer::start()) else {
        return;
    };
    let store = RedisBudgets::connect(&redis.url(), TIMEOUT).await.unwrap();
    let mut tokens = counter("aigk_X:tokens:3600:481234", 1_000);
    tokens.expires_at_ms = unix_ms() + 60_000;
    let cs = [tokens];
    assert_eq!(
        store
            .reserve(Ask::new(&cs, &[FLAT], 0..=0), BudgetFailure::Closed)
            .await,
        granted(0, false)
    );
    let key = "keygate:budget:aigk_X:tokens:3600:481234";
    assert_eq!(redis.cli(&["--scan"]), key);
    assert_eq!(redis.cli(&["get", key]), "40");
    let pttl: u64 = redis.cli(&["pttl", key]).parse().unwrap();
    assert!((55_000..=60_000).contains(&pttl), "pttl {pttl}");
    // A settlement keeps the expiry; a refund to 0 (or below) deletes the key.
    store.settle(&cs, &[5], false).await;
    assert_eq!(redis.cli(&["get", key]), "45");
    assert!(redis.cli(&["pttl", key]).parse::<u64>().unwrap() > 55_000);
    store.settle(&cs, &[-100], false).await;
    assert_eq!(redis.cli(&["exists", key]), "0");
    assert_eq!(store.used(&cs[0]).await, 0);
    // A counter whose window is over is not kept.
    let mut over = counter("aigk_X:tokens:3600:481233", 1_000);
    over.expires_at_ms = unix_ms() - 1_000;
    let over = [over];
    assert_eq!(
        store
            .reserve(Ask::new(&over, &[FLAT], 0..=0), BudgetFailure::Closed)
            .await,
        granted(0, false)
    );
    store.settle(&over, &[7], false).await;
    assert_eq!(redis.cli(&["dbsize"]), "0");
    assert_eq!(store.failures(), 0);
}

async fn outage_and_recovery(mode: BudgetFailure) {
    let Some(redis) = require(RedisServer::start()) else {
        return;
    };
    let port = redis.port();
    let store = RedisBudgets::connect(&redis.url(), TIMEOUT).await.unwrap();
    let cs = [counter("k:requests", 100)];
    let one = Ask::new(&cs, &[FLAT], 0..=0);
    assert_eq!(store.reserve(one, mode).await, granted(0, false));
    redis.stop(); // shutdown nosave: all counters are gone

    let started = Instant::now();
    match mode {
        BudgetFailure::Local => {
            // The fallback enforces the budget on its own: 40 + 40, then no room for another 40.
            assert_eq!(store.reserve(one, mode).await, granted(0, true));
            assert_eq!(store.reserve(one, mode).await, granted(0, true));
            assert_eq!(
                store.reserve(one, mode).await,
                Grant::Exhausted { counter: 0 }
            );
            // A local grant settles locally; `used` reads the fallback while Redis is down.
            store.settle(&cs, &[-30], true).await;
            assert_eq!(store.fallback().used_now(&cs[0]), 50);
            assert_eq!(store.used(&cs[0]).await, 50);
        }
        BudgetFailure::Closed => {
            for _ in 0..3 {
                assert_eq!(store.reserve(one, mode).await, Grant::Unavailable);
            }
            assert_eq!(store.fallback().used_now(&cs[0]), 0);
        }
    }
    // A settlement of a grant charged to Redis is dropped, and counted.
    let failures = store.failures();
    store.settle(&cs, &[-40], false).await;
    assert_eq!(store.failures(), failures + 1);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    let redis = RedisServer::start_on(port).expect("redis-server ran before");
    wait_until_redis_grants(&store, Duration::from_secs(10)).await;
    let failures = store.failures();
    // Redis starts empty; the fallback's counters stay where they were.
    assert_eq!(store.reserve(one, mode).await, granted(0, false));
    assert_eq!(store.reserve(one, mode).await, granted(0, false));
    assert_eq!(
        store.reserve(one, mode).await,
        Grant::Exhausted { counter: 0 }
    );
    assert_eq!(store.used(&cs[0]).await, 80);
    assert_eq!(redis.cli(&["get", "keygate:budget:k:requests"]), "80");
    assert_eq!(store.failures(), failures);
}

#[tokio::test]
async fn outage_charges_the_local_fallback_or_refuses_then_recovers() {
    tokio::join!(
        outage_and_recovery(BudgetFailure::Local),
        outage_and_recovery(BudgetFailure::Closed)
    );
}
