//! The connection every Redis store shares the handling of: one `ConnectionManager`, each call bounded by
//! a timeout, failures counted and logged at a bounded rate, and a first connection retried in the
//! background, so a store starts and heals without a restart.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::clock::{Clock, MonotonicClock};

/// Errors connecting a Redis store ([`RedisLimiter`](crate::RedisLimiter), [`RedisBudgets`](crate::RedisBudgets)).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL is not a usable `redis://` URL (the URL itself is not repeated: it may hold a password).
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
}

/// Lua numbers are doubles, exact up to 2^53: every number a script receives is clamped to 2^50, so the
/// sums and products the scripts form of a few of them stay exact.
pub(crate) const MAX_LUA_INT: u64 = 1 << 50;

/// At most one warning per this many milliseconds while Redis is failing.
const WARN_EVERY_MS: u64 = 10_000;
/// Longest pause between background connection attempts while Redis is down at start.
const MAX_CONNECT_BACKOFF: Duration = Duration::from_secs(5);

/// A Redis connection with failure bookkeeping, shared by the clones of one store.
pub(crate) struct RedisLink {
    /// Names the store in log lines ("rate-limit store", "budget store").
    store: &'static str,
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    manager_config: ConnectionManagerConfig,
    timeout: Duration,
    failures: AtomicU64,
    degraded: AtomicBool,
    clock: MonotonicClock,
    next_warn_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl RedisLink {
    /// Connects to `url`. Only a malformed URL is an error: when the server is unreachable the link starts
    /// degraded (every call fails) and keeps connecting in the background. Must be called inside a Tokio
    /// runtime.
    pub(crate) async fn connect(
        store: &'static str,
        url: &str,
        timeout: Duration,
    ) -> Result<Arc<Self>, Error> {
        let client = redis::Client::open(url).map_err(|e| Error::InvalidUrl(e.to_string()))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(timeout)
            .set_factor(100)
            .set_exponent_base(2)
            .set_number_of_retries(3)
            .set_max_delay(1_000);
        let link = Arc::new(Self {
            store,
            client,
            conn: Mutex::new(None),
            manager_config,
            timeout,
            failures: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
            clock: MonotonicClock::new(),
            next_warn_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        });
        if let Err(reason) = link.try_connect().await {
            link.degraded.store(true, Ordering::Relaxed);
            tracing::warn!(
                error = %reason,
                "{store}: Redis unreachable at start, retrying in the background"
            );
            tokio::spawn(connect_in_background(Arc::downgrade(&link)));
        }
        Ok(link)
    }

    /// Runs `op` on the connection within the timeout. On failure: counts it, logs it at most every
    /// [`WARN_EVERY_MS`] saying what the store does instead (`instead`), and returns `None`.
    pub(crate) async fn call<T, F, Fut>(&self, instead: &str, op: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.lock_conn().clone();
        let Some(conn) = conn else {
            self.fail("not connected yet", instead);
            return None;
        };
        match tokio::time::timeout(self.timeout, op(conn)).await {
            Ok(Ok(value)) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!("{}: Redis reachable again", self.store);
                }
                Some(value)
            }
            Ok(Err(e)) => {
                self.fail(&e.to_string(), instead);
                None
            }
            Err(_) => {
                self.fail("timed out", instead);
                None
            }
        }
    }

    /// Calls that failed since the link was made.
    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The bound on each call and connection attempt.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    fn lock_conn(&self) -> std::sync::MutexGuard<'_, Option<ConnectionManager>> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn try_connect(&self) -> Result<(), String> {
        let connecting =
            ConnectionManager::new_with_config(self.client.clone(), self.manager_config.clone());
        match tokio::time::timeout(self.timeout, connecting).await {
            Ok(Ok(manager)) => {
                *self.lock_conn() = Some(manager);
                Ok(())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_owned()),
        }
    }

    fn fail(&self, reason: &str, instead: &str) {
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
                instead,
                suppressed = self.suppressed.swap(0, Ordering::Relaxed),
                failures_total = self.failures.load(Ordering::Relaxed),
                "{}: Redis failed",
                self.store
            );
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Retries the first connection with backoff until it succeeds or the store is dropped.
async fn connect_in_background(link: Weak<RedisLink>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        tokio::time::sleep(backoff).await;
        let Some(link) = link.upgrade() else {
            return;
        };
        if link.try_connect().await.is_ok() {
            return;
        }
        backoff = (backoff * 2).min(MAX_CONNECT_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn malformed_url_is_an_error_without_echoing_it() {
        let err = RedisLink::connect(
            "test store",
            "http://user:hunter2@h",
            Duration::from_millis(250),
        )
        .await
        .err()
        .expect("malformed URL");
        assert!(!err.to_string().contains("hunter2"));
    }
}
