//! The shared store: one atomic Lua script per decision on a Redis server, so every gateway instance
//! counts into the same buckets on the same (server) clock.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};

use crate::clock::{Clock, MonotonicClock};
use crate::window::{granularity_ms, refused, retry_after, window_ms};
use crate::{CheckFuture, Decision, Limit, RateLimiter};

/// What a check answers when Redis cannot be reached in time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FailureMode {
    /// Admit the request (availability over enforcement).
    #[default]
    Open,
    /// Refuse the request with `Retry-After: 1`.
    Closed,
}

/// Settings of a [`RedisLimiter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisConfig {
    /// Longest a decision (or a connection attempt) may wait for Redis before `failure_mode` applies.
    pub timeout: Duration,
    /// The answer while Redis is unreachable.
    pub failure_mode: FailureMode,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(250),
            failure_mode: FailureMode::Open,
        }
    }
}

/// Errors building a [`RedisLimiter`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL is not a usable `redis://` URL (the URL itself is not repeated: it may hold a password).
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
}

/// At most one warning per this many milliseconds while Redis is failing.
const WARN_EVERY_MS: u64 = 10_000;
/// Longest pause between background connection attempts while Redis is down at start.
const MAX_CONNECT_BACKOFF: Duration = Duration::from_secs(5);
/// Lua numbers are doubles: keep every argument exactly representable.
const MAX_LUA_INT: u64 = 1 << 50;

static SCRIPT_SOURCE: &str = include_str!("sliding_log.lua");

struct Shared {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    manager_config: ConnectionManagerConfig,
    config: RedisConfig,
    script: redis::Script,
    failures: AtomicU64,
    degraded: AtomicBool,
    clock: MonotonicClock,
    next_warn_ms: AtomicU64,
    suppressed: AtomicU64,
}

/// A [`RateLimiter`] whose buckets live in Redis, shared by every gateway using the same server.
///
/// Keys: `keygate:rl:<name>:<sha256(key) hex>` (a list of `expires_ms:count` entries) and the same with
/// `:n` (their total); both expire after two windows without traffic.
#[derive(Clone)]
pub struct RedisLimiter {
    shared: Arc<Shared>,
}

impl RedisLimiter {
    /// Connects to `url` (`redis://[user:pass@]host:port[/db]`). Only a malformed URL is an error: when
    /// the server is unreachable the limiter starts degraded (answering per `failure_mode`) and keeps
    /// connecting in the background. Must be called inside a Tokio runtime.
    pub async fn connect(url: &str, config: RedisConfig) -> Result<Self, Error> {
        let client = redis::Client::open(url).map_err(|e| Error::InvalidUrl(e.to_string()))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(config.timeout)
            .set_factor(100)
            .set_exponent_base(2)
            .set_number_of_retries(3)
            .set_max_delay(1_000);
        let shared = Arc::new(Shared {
            client,
            conn: Mutex::new(None),
            manager_config,
            config,
            script: redis::Script::new(SCRIPT_SOURCE),
            failures: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
            clock: MonotonicClock::new(),
            next_warn_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        });
        if let Err(reason) = shared.try_connect().await {
            shared.degraded.store(true, Ordering::Relaxed);
            tracing::warn!(
                error = %reason,
                failure_mode = ?config.failure_mode,
                "rate-limit store: Redis unreachable at start, retrying in the background"
            );
            tokio::spawn(connect_in_background(Arc::downgrade(&shared)));
        }
        Ok(Self { shared })
    }

    async fn decide(&self, name: &str, key: &[u8], limit: Limit) -> Decision {
        let shared = &self.shared;
        let conn = shared.lock_conn().clone();
        let Some(mut conn) = conn else {
            return shared.fail(limit, "not connected yet");
        };
        let base = redis_key(name, key);
        let window = window_ms(limit).min(MAX_LUA_INT);
        let mut call = shared.script.prepare_invoke();
        call.key(&base)
            .key(format!("{base}:n"))
            .arg(limit.capacity.min(MAX_LUA_INT))
            .arg(window)
            .arg(granularity_ms(limit))
            .arg((2 * window).max(1_000));
        let reply = tokio::time::timeout(
            shared.config.timeout,
            call.invoke_async::<(u8, u64, u64)>(&mut conn),
        )
        .await;
        match reply {
            Ok(Ok((limited, remaining, wait_ms))) => {
                shared.recovered();
                Decision {
                    limited: limited != 0,
                    remaining,
                    retry_after: if limited != 0 {
                        retry_after(wait_ms)
                    } else {
                        Duration::ZERO
                    },
                }
            }
            Ok(Err(e)) => shared.fail(limit, &e.to_string()),
            Err(_) => shared.fail(limit, "timed out"),
        }
    }
}

impl RateLimiter for RedisLimiter {
    fn check<'a>(&'a self, name: &'a str, key: &'a [u8], limit: Limit) -> CheckFuture<'a> {
        Box::pin(self.decide(name, key, limit))
    }

    /// Decisions answered by the failure mode because Redis failed or was too slow (for a metric).
    fn failures(&self) -> u64 {
        self.shared.failures.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No URL: it may carry a password.
        f.debug_struct("RedisLimiter")
            .field("config", &self.shared.config)
            .field("failures", &self.failures())
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn lock_conn(&self) -> std::sync::MutexGuard<'_, Option<ConnectionManager>> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn try_connect(&self) -> Result<(), String> {
        let connecting =
            ConnectionManager::new_with_config(self.client.clone(), self.manager_config.clone());
        match tokio::time::timeout(self.config.timeout, connecting).await {
            Ok(Ok(manager)) => {
                *self.lock_conn() = Some(manager);
                Ok(())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_owned()),
        }
    }

    /// Counts a failure, logs it at most every [`WARN_EVERY_MS`], and answers per the failure mode.
    fn fail(&self, limit: Limit, reason: &str) -> Decision {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.degraded.store(true, Ordering::Relaxed);
        let now = self.clock.now_ms();
        let next = self.next_warn_ms.load(Ordering::Relaxed);
        let due = now >= next
            && self
                .next_warn_ms
                .compare_exchange(
                    next,
                    now + WARN_EVERY_MS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        if due {
            tracing::warn!(
                error = reason,
                failure_mode = ?self.config.failure_mode,
                suppressed = self.suppressed.swap(0, Ordering::Relaxed),
                failures_total = self.failures.load(Ordering::Relaxed),
                "rate-limit store: Redis failed, applying the failure mode"
            );
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
        match self.config.failure_mode {
            FailureMode::Open => Decision {
                limited: false,
                remaining: limit.capacity,
                retry_after: Duration::ZERO,
            },
            FailureMode::Closed => refused(Duration::from_secs(1)),
        }
    }

    fn recovered(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!("rate-limit store: Redis reachable again");
        }
    }
}

/// Retries the first connection with backoff until it succeeds or the limiter is dropped.
async fn connect_in_background(shared: Weak<Shared>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        tokio::time::sleep(backoff).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.try_connect().await.is_ok() {
            return;
        }
        backoff = (backoff * 2).min(MAX_CONNECT_BACKOFF);
    }
}

/// `keygate:rl:<name>:<hex sha256 of key>`: every instance derives the same key, and the raw key is never
/// sent to Redis.
fn redis_key(name: &str, key: &[u8]) -> String {
    format!("keygate:rl:{name}:{}", key_digest_hex(key))
}

/// The lowercase hex SHA-256 of a bucket key, as used in Redis key names: a stable bucket identity that
/// does not reveal the key (for logs and result variables).
pub fn key_digest_hex(key: &[u8]) -> String {
    let mut out = String::with_capacity(64);
    for b in Sha256::digest(key) {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced_and_hashed() {
        let k = redis_key("ai-gateway-limit", b"Bearer secret-token");
        assert!(k.starts_with("keygate:rl:ai-gateway-limit:"));
        assert!(!k.contains("secret"));
        let hex = &k["keygate:rl:ai-gateway-limit:".len()..];
        assert_eq!(hex.len(), 64);
        assert_eq!(
            redis_key("n", b"abc"),
            "keygate:rl:n:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[tokio::test]
    async fn malformed_url_is_an_error_without_echoing_it() {
        let err = RedisLimiter::connect("http://user:hunter2@h", RedisConfig::default())
            .await
            .unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }
}
