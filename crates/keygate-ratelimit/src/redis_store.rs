//! The shared store: one atomic Lua script per decision on a Redis server, so every gateway instance
//! counts into the same buckets on the same (server) clock.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::redis_link::{Error, RedisLink, MAX_LUA_INT};
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

static SCRIPT_SOURCE: &str = include_str!("sliding_log.lua");

/// A [`RateLimiter`] whose buckets live in Redis, shared by every gateway using the same server.
///
/// Keys: `keygate:rl:<name>:<sha256(key) hex>` (a list of `expires_ms:count` entries) and the same with
/// `:n` (their total); both expire after two windows without traffic.
#[derive(Clone)]
pub struct RedisLimiter {
    link: Arc<RedisLink>,
    config: RedisConfig,
    script: Arc<redis::Script>,
}

impl RedisLimiter {
    /// Connects to `url` (`redis://[user:pass@]host:port[/db]`). Only a malformed URL is an error: when
    /// the server is unreachable the limiter starts degraded (answering per `failure_mode`) and keeps
    /// connecting in the background. Must be called inside a Tokio runtime.
    pub async fn connect(url: &str, config: RedisConfig) -> Result<Self, Error> {
        Ok(Self {
            link: RedisLink::connect("rate-limit store", url, config.timeout).await?,
            config,
            script: Arc::new(redis::Script::new(SCRIPT_SOURCE)),
        })
    }

    async fn decide(&self, name: &str, key: &[u8], limit: Limit) -> Decision {
        let base = redis_key(name, key);
        let window = window_ms(limit).min(MAX_LUA_INT);
        let mut call = self.script.prepare_invoke();
        call.key(&base)
            .key(format!("{base}:n"))
            .arg(limit.capacity.min(MAX_LUA_INT))
            .arg(window)
            .arg(granularity_ms(limit))
            .arg((2 * window).max(1_000));
        let instead = match self.config.failure_mode {
            FailureMode::Open => "admitting (failure mode open)",
            FailureMode::Closed => "refusing (failure mode closed)",
        };
        let reply = self
            .link
            .call(instead, |mut conn| async move {
                call.invoke_async::<(u8, u64, u64)>(&mut conn).await
            })
            .await;
        match reply {
            Some((0, remaining, _)) => Decision {
                limited: false,
                remaining,
                retry_after: Duration::ZERO,
            },
            Some((_, remaining, wait_ms)) => Decision {
                limited: true,
                remaining,
                retry_after: retry_after(wait_ms),
            },
            None => match self.config.failure_mode {
                FailureMode::Open => Decision {
                    limited: false,
                    remaining: limit.capacity,
                    retry_after: Duration::ZERO,
                },
                FailureMode::Closed => refused(Duration::from_secs(1)),
            },
        }
    }
}

impl RateLimiter for RedisLimiter {
    fn check<'a>(&'a self, name: &'a str, key: &'a [u8], limit: Limit) -> CheckFuture<'a> {
        Box::pin(self.decide(name, key, limit))
    }

    /// Decisions answered by the failure mode because Redis failed or was too slow (for a metric).
    fn failures(&self) -> u64 {
        self.link.failures()
    }
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No URL: it may carry a password.
        f.debug_struct("RedisLimiter")
            .field("config", &self.config)
            .field("failures", &self.failures())
            .finish_non_exhaustive()
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
    hex::encode(Sha256::digest(key))
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
}
