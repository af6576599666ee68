//! RedisLimiter against a real `redis-server` started on a free loopback port. Without
//! `redis-server` these tests say so in one line (see `keygate_test_support::parts`).

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keygate_ratelimit::{FailureMode, Limit, RateLimiter, RedisConfig, RedisLimiter};
use keygate_test_support::{require, RedisServer};

fn config(failure_mode: FailureMode) -> RedisConfig {
    RedisConfig {
        timeout: Duration::from_millis(250),
        failure_mode,
    }
}

const MINUTE: Limit = Limit {
    capacity: 3,
    window: Duration::from_secs(60),
};

/// Polls until a fresh bucket of capacity 1 admits once and then limits: proof that Redis counts again.
async fn wait_until_redis_counts(limiter: &RedisLimiter, within: Duration) {
    let limit = Limit {
        capacity: 1,
        window: Duration::from_secs(60),
    };
    let deadline = Instant::now() + within;
    for round in 0u32.. {
        let key = format!("probe-{round}");
        let failures = limiter.failures();
        let first = limiter.check("probe", key.as_bytes(), limit).await;
        let second = limiter.check("probe", key.as_bytes(), limit).await;
        if limiter.failures() == failures && !first.limited && second.limited {
            return;
        }
        assert!(Instant::now() < deadline, "limiter did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_admit_exactly_capacity_in_total() {
    let Some(redis) = require(RedisServer::start()) else {
        return;
    };
    let a = Arc::new(
        RedisLimiter::connect(&redis.url(), config(FailureMode::Closed))
            .await
            .unwrap(),
    );
    let b = Arc::new(
        RedisLimiter::connect(&redis.url(), config(FailureMode::Closed))
            .await
            .unwrap(),
    );
    let limit = Limit {
        capacity: 100,
        window: Duration::from_secs(60),
    };
    let mut tasks = Vec::new();
    for i in 0..40 {
        let limiter = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut admitted = 0u64;
            for _ in 0..10 {
                let d = limiter.check("shared", b"Bearer token-1", limit).await;
                if d.limited {
                    assert!((1..=60).contains(&d.retry_after.as_secs()), "{d:?}");
                } else {
                    admitted += 1;
                }
            }
            admitted
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 100, "400 concurrent requests over two instances");
    assert_eq!(a.failures() + b.failures(), 0);
    // Another key and another limiter name are separate buckets.
    assert!(!a.check("shared", b"Bearer token-2", limit).await.limited);
    assert!(!b.check("other", b"Bearer token-1", limit).await.limited);
}

#[tokio::test]
async fn window_slides_on_the_server_clock_and_limited_requests_consume_nothing() {
    let Some(redis) = require(RedisServer::start()) else {
        return;
    };
    let limiter = RedisLimiter::connect(&redis.url(), config(FailureMode::Closed))
        .await
        .unwrap();
    let limit = Limit {
        capacity: 2,
        window: Duration::from_secs(1),
    };
    let first = limiter.check("n", b"k", limit).await;
    assert_eq!((first.limited, first.remaining), (false, 1));
    let second = limiter.check("n", b"k", limit).await;
    assert_eq!((second.limited, second.remaining), (false, 0));
    for _ in 0..20 {
        let d = limiter.check("n", b"k", limit).await;
        assert!(d.limited);
        assert_eq!(d.retry_after, Duration::from_secs(1));
    }
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    // Both admitted requests left the window; the 20 refused ones were never counted.
    assert!(!limiter.check("n", b"k", limit).await.limited);
    assert!(!limiter.check("n", b"k", limit).await.limited);
    assert!(limiter.check("n", b"k", limit).await.limited);
    assert_eq!(limiter.failures(), 0);
}

#[tokio::test]
async fn keys_hold_no_raw_token_and_expire_on_their_own() {
    let Some(redis) = require(RedisServer::start()) else {
        return;
    };
    let limiter = RedisLimiter::connect(&redis.url(), config(FailureMode::Closed))
        .await
        .unwrap();
    limiter
        .check("ai-limit", b"Bearer sk-secret-token", MINUTE)
        .await;
    let keys = redis.cli(&["--scan"]);
    assert!(!keys.contains("secret"), "{keys}");
    let mut keys: Vec<&str> = keys.lines().collect();
    keys.sort();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys[0].starts_with("keygate:rl:ai-limit:"));
    assert_eq!(keys[1], format!("{}:n", keys[0]));
    for key in keys {
        let ttl: u64 = redis.cli(&["pttl", key]).parse().unwrap();
        assert!((110_000..=120_000).contains(&ttl), "{key}: pttl {ttl}");
    }
}

#[tokio::test]
async fn lost_total_is_rebuilt_and_lowered_capacity_waits_for_enough_expiries() {
    let Some(redis) = require(RedisServer::start()) else {
        return;
    };
    let limiter = RedisLimiter::connect(&redis.url(), config(FailureMode::Closed))
        .await
        .unwrap();
    let four = Limit {
        capacity: 4,
        window: Duration::from_secs(60),
    };
    for _ in 0..4 {
        assert!(!limiter.check("n", b"k", four).await.limited);
    }
    let keys = redis.cli(&["--scan", "--pattern", "keygate:rl:n:*:n"]);
    let total_key = keys.trim();
    assert_eq!(redis.cli(&["get", total_key]).trim(), "4");
    redis.cli(&["del", total_key]);
    // The total is rebuilt from the log: still full.
    assert!(limiter.check("n", b"k", four).await.limited);
    // With capacity lowered to 2, three of the four must leave: they were admitted within a few
    // milliseconds, so the wait is still about a full window.
    let two = Limit {
        capacity: 2,
        window: Duration::from_secs(60),
    };
    let d = limiter.check("n", b"k", two).await;
    assert!(d.limited);
    assert!((59..=60).contains(&d.retry_after.as_secs()), "{d:?}");
    assert_eq!(limiter.failures(), 0);
}

async fn outage_and_recovery(mode: FailureMode) {
    let Some(redis) = require(RedisServer::start()) else {
        return;
    };
    let port = redis.port();
    let limiter = RedisLimiter::connect(&redis.url(), config(mode))
        .await
        .unwrap();
    for _ in 0..3 {
        assert!(!limiter.check("n", b"k", MINUTE).await.limited);
    }
    assert!(limiter.check("n", b"k", MINUTE).await.limited);
    drop(redis); // shutdown nosave: all counts are gone

    let started = Instant::now();
    for _ in 0..5 {
        let d = limiter.check("n", b"k", MINUTE).await;
        match mode {
            FailureMode::Open => assert!(!d.limited),
            FailureMode::Closed => {
                assert!(d.limited);
                assert_eq!(d.retry_after, Duration::from_secs(1));
            }
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(limiter.failures(), 5);

    let _redis = RedisServer::start_on(port).expect("redis-server ran before");
    wait_until_redis_counts(&limiter, Duration::from_secs(10)).await;
    let failures = limiter.failures();
    for _ in 0..3 {
        assert!(!limiter.check("n", b"k", MINUTE).await.limited);
    }
    assert!(limiter.check("n", b"k", MINUTE).await.limited);
    assert_eq!(limiter.failures(), failures);
}

#[tokio::test]
async fn outage_fails_open_then_recovers() {
    outage_and_recovery(FailureMode::Open).await;
}

#[tokio::test]
async fn outage_fails_closed_then_recovers() {
    outage_and_recovery(FailureMode::Closed).await;
}

#[tokio::test]
async fn starts_while_redis_is_down_and_connects_later() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}/");
    let limiter = RedisLimiter::connect(&url, config(FailureMode::Closed))
        .await
        .unwrap();
    assert!(limiter.check("n", b"k", MINUTE).await.limited);
    assert_eq!(limiter.failures(), 1);
    let Some(_redis) = require(RedisServer::start_on(port)) else {
        return;
    };
    wait_until_redis_counts(&limiter, Duration::from_secs(10)).await;
    assert!(!limiter.check("n", b"k", MINUTE).await.limited);
}

#[tokio::test]
async fn a_stalled_redis_is_bounded_by_the_timeout() {
    // A listener that accepts and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}/", listener.local_addr().unwrap());
    let limiter = RedisLimiter::connect(&url, config(FailureMode::Open))
        .await
        .unwrap();
    let started = Instant::now();
    let d = limiter.check("n", b"k", MINUTE).await;
    assert!(!d.limited);
    assert!(started.elapsed() < Duration::from_millis(600));
    assert_eq!(limiter.failures(), 1);
}
