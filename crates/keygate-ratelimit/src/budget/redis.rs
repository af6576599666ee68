//! The shared budget store: one Lua script per reservation and per settlement on a Redis server, so every
//! gateway instance draws on the same counters; a [`MemoryBudgets`] stands in while Redis is unreachable.

use std::sync::Arc;
use std::time::Duration;

use redis::Script;

use super::{
    check_deltas, exact, exact_delta, Ask, BudgetFailure, BudgetFuture, BudgetStore, Counter,
    Grant, MemoryBudgets,
};
use crate::redis_link::{Error, RedisLink};

static RESERVE_SOURCE: &str = include_str!("reserve.lua");
static SETTLE_SOURCE: &str = include_str!("settle.lua");

/// A [`BudgetStore`] whose counters live in Redis, shared by every gateway using the same server.
///
/// Keys: `keygate:budget:<counter id>`, an integer, expiring at the counter's `expires_at_ms`; a counter
/// at 0 is deleted. While Redis fails, each reservation follows its [`BudgetFailure`]: charge the
/// in-process fallback (see [`RedisBudgets::fallback`]) or refuse; a settlement of a grant charged to
/// Redis is dropped (counted in [`BudgetStore::failures`]), and `used` reads the fallback.
pub struct RedisBudgets {
    link: Arc<RedisLink>,
    reserve: Script,
    settle: Script,
    local: MemoryBudgets,
}

impl RedisBudgets {
    /// Connects to `url` (`redis://[user:pass@]host:port[/db]`); `timeout` bounds every operation and
    /// connection attempt. Only a malformed URL is an error: when the server is unreachable the store
    /// starts degraded (every operation fails over) and keeps connecting in the background. Must be
    /// called inside a Tokio runtime.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Self, Error> {
        Ok(Self {
            link: RedisLink::connect("budget store", url, timeout).await?,
            reserve: Script::new(RESERVE_SOURCE),
            settle: Script::new(SETTLE_SOURCE),
            local: MemoryBudgets::default(),
        })
    }

    /// The in-process store that reservations with [`BudgetFailure::Local`] charge while Redis fails. Its
    /// counters are separate from Redis's and are never merged into them.
    pub fn fallback(&self) -> &MemoryBudgets {
        &self.local
    }

    async fn reserve_shared(&self, ask: Ask<'_>, on_failure: BudgetFailure) -> Grant {
        ask.check_shape();
        let (min, max) = ask.range();
        let mut call = self.reserve.prepare_invoke();
        for counter in ask.counters {
            call.key(redis_key(counter));
        }
        for counter in ask.counters {
            call.arg(exact(counter.limit));
        }
        for counter in ask.counters {
            call.arg(exact(counter.expires_at_ms));
        }
        for draw in ask.draws {
            call.arg(exact(draw.base));
        }
        for draw in ask.draws {
            call.arg(exact(draw.per_unit));
        }
        call.arg(min).arg(max);
        let instead = match on_failure {
            BudgetFailure::Local => "charging the in-process fallback",
            BudgetFailure::Closed => "refusing the reservation",
        };
        let reply = self
            .link
            .call(instead, |mut conn| async move {
                call.invoke_async::<(bool, u64)>(&mut conn).await
            })
            .await;
        match (reply, on_failure) {
            (Some((true, units)), _) => Grant::Granted {
                units,
                local: false,
            },
            (Some((false, counter)), _) => Grant::Exhausted {
                counter: usize::try_from(counter).unwrap_or(usize::MAX),
            },
            (None, BudgetFailure::Local) => match self.local.reserve_now(ask) {
                Grant::Granted { units, .. } => Grant::Granted { units, local: true },
                refused => refused,
            },
            (None, BudgetFailure::Closed) => Grant::Unavailable,
        }
    }

    async fn settle_shared(&self, counters: &[Counter], deltas: &[i64], local: bool) {
        check_deltas(counters, deltas);
        if local {
            self.local.settle_now(counters, deltas);
            return;
        }
        let mut call = self.settle.prepare_invoke();
        for counter in counters {
            call.key(redis_key(counter));
        }
        for &delta in deltas {
            call.arg(exact_delta(delta));
        }
        for counter in counters {
            call.arg(exact(counter.expires_at_ms));
        }
        self.link
            .call("dropping the settlement", |mut conn| async move {
                call.invoke_async::<()>(&mut conn).await
            })
            .await;
    }

    async fn used_shared(&self, counter: &Counter) -> u64 {
        let key = redis_key(counter);
        let reply = self
            .link
            .call("reading the in-process fallback", |mut conn| async move {
                redis::cmd("GET")
                    .arg(key)
                    .query_async::<Option<u64>>(&mut conn)
                    .await
            })
            .await;
        match reply {
            Some(used) => used.unwrap_or(0),
            None => self.local.used_now(counter),
        }
    }
}

impl BudgetStore for RedisBudgets {
    fn reserve<'a>(&'a self, ask: Ask<'a>, on_failure: BudgetFailure) -> BudgetFuture<'a, Grant> {
        Box::pin(self.reserve_shared(ask, on_failure))
    }

    fn settle<'a>(
        &'a self,
        counters: &'a [Counter],
        deltas: &'a [i64],
        local: bool,
    ) -> BudgetFuture<'a, ()> {
        Box::pin(self.settle_shared(counters, deltas, local))
    }

    fn used<'a>(&'a self, counter: &'a Counter) -> BudgetFuture<'a, u64> {
        Box::pin(self.used_shared(counter))
    }

    /// Operations that Redis failed or answered too late: reservations answered by the fallback or
    /// refused, settlements dropped, and reads answered by the fallback (for a metric).
    fn failures(&self) -> u64 {
        self.link.failures()
    }
}

impl std::fmt::Debug for RedisBudgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No URL: it may carry a password.
        f.debug_struct("RedisBudgets")
            .field("timeout", &self.link.timeout())
            .field("failures", &self.failures())
            .finish_non_exhaustive()
    }
}

/// `keygate:budget:<id>`: the id is the counter's whole identity and holds no secret.
fn redis_key(counter: &Counter) -> String {
    format!("keygate:budget:{}", counter.id)
}
