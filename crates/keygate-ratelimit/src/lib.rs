//! Sliding-window rate limiting: in-memory sharded store and Redis store behind one trait.
//!
//! INTERFACE CONTRACT (used by the `rate-limit` action in `keygate-policy`): `Limit`, `Decision` and
//! `RateLimiter::check` keep these names and signatures.
//!
//! Both stores run the same exact sliding log (`window.rs`; the Redis Lua script is a port of it): a request
//! is counted until one window after it, limited requests count nothing, and no trailing window ever holds
//! more than `capacity` admitted requests. Design and measurements: `docs/rate-limit.md`.
//!
//! Token and spend budgets ([`BudgetStore`]) are counters a request reserves from before it runs and
//! settles when it ends, in the same two kinds of store (`budget/`).

mod budget;
mod clock;
mod memory;
mod observed;
mod redis_link;
mod redis_store;
mod window;

pub use budget::{
    Ask, BudgetFailure, BudgetFuture, BudgetStore, Counter, Draw, Grant, MemoryBudgets,
    RedisBudgets,
};
pub use clock::{Clock, ManualClock, MonotonicClock};
pub use memory::{MemoryConfig, MemoryLimiter};
pub use observed::Observed;
pub use redis_link::Error;
pub use redis_store::{key_digest_hex, FailureMode, RedisConfig, RedisLimiter};

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A limit: at most `capacity` requests in any trailing `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Most requests admitted in any trailing `window`.
    pub capacity: u64,
    /// Length of the sliding window.
    pub window: Duration,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// True when the request must be refused; a limited request consumes no capacity.
    pub limited: bool,
    /// Requests still admitted in the current window after this one.
    pub remaining: u64,
    /// When limited: how long until a request would pass (whole seconds, at least 1).
    pub retry_after: Duration,
}

/// A boxed future returned by [`RateLimiter::check`].
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Decision> + Send + 'a>>;

/// A rate-limit store. Store failures are handled inside (configured fail-open or fail-closed).
pub trait RateLimiter: Send + Sync {
    /// Counts one request against bucket `key` of the limiter named `name`, unless the window
    /// already holds `limit.capacity` requests. `key` is raw bucket identity (may hold tokens):
    /// stores must hash it and never keep it.
    fn check<'a>(&'a self, name: &'a str, key: &'a [u8], limit: Limit) -> CheckFuture<'a>;

    /// Decisions answered by the failure mode because the store failed (always 0 for memory).
    fn failures(&self) -> u64 {
        0
    }
}
