//! Token and spend budgets: counters a request reserves from before it runs and settles when it ends.
//!
//! A reservation checks and charges every counter it draws on at once, or none: concurrent requests can
//! never together charge a counter past its limit. The settlement then adds what was used beyond the
//! reservation, or refunds what was not. Both stores decide a reservation with [`units`] (the Redis script
//! `reserve.lua` is a port of it) and read every number through the same clamps, so they answer the same
//! sequence of operations the same way.

mod memory;
mod redis;

pub use self::memory::MemoryBudgets;
pub use self::redis::RedisBudgets;

use std::future::Future;
use std::ops::RangeInclusive;
use std::pin::Pin;

use crate::redis_link::MAX_LUA_INT;

/// One counter a reservation draws on: e.g. an access key's tokens in the current hour, or its
/// spend (micro-USD) today. The caller picks the window; the store only counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    /// Identity, unique per key, kind and window (e.g. "aigk_X:tokens:3600:481234"); the Redis
    /// store prefixes it ("keygate:budget:") and uses it as given (it holds no secret).
    pub id: String,
    /// Most units the window may hold.
    pub limit: u64,
    /// When the window ends (Unix ms): the store may forget the counter after it.
    pub expires_at_ms: u64,
}

/// How much one reservation asks of each counter: `base + x * per_unit`, where the store picks
/// the largest `x` in `min_units..=max_units` that every counter still has room for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draw {
    /// Charged whatever `x` is (e.g. the prompt's tokens).
    pub base: u64,
    /// Charged per unit granted (e.g. 1 per output token, or its price in micro-USD).
    pub per_unit: u64,
}

/// The request: one `Draw` per counter (same order), and the range of units wanted.
///
/// Both stores read every number as at most 2^50 (the Redis scripts compute in doubles), and a
/// `max_units` below `min_units` as `min_units`. Counter ids within one ask must be distinct: a
/// repeated id would be checked twice against the same value and charged twice.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The counters to charge.
    pub counters: &'a [Counter],
    /// What to charge each counter, by index; must be as long as `counters`.
    pub draws: &'a [Draw],
    /// Fewest units worth granting (0: the bases alone are worth reserving).
    pub min_units: u64,
    /// Most units wanted.
    pub max_units: u64,
}

/// The answer of `reserve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// `units` granted (min_units..=max_units); every counter was charged `base + units * per_unit`.
    /// `local`: charged to the in-process fallback because the shared store was unreachable (a
    /// later settle of this grant must go to the same place).
    Granted {
        /// Units granted.
        units: u64,
        /// Charged to the in-process fallback.
        local: bool,
    },
    /// Some counter has no room even for `min_units`: nothing was charged. `counter` is its index.
    Exhausted {
        /// Index in `Ask::counters` of the first counter without room.
        counter: usize,
    },
    /// The shared store is unreachable and the failure mode is closed: nothing was charged.
    Unavailable,
}

/// What a reservation does while the shared store is unreachable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BudgetFailure {
    /// Keep enforcing budgets in this process's memory (bounded: each instance admits at most the
    /// budget on its own while the shared store is down).
    #[default]
    Local,
    /// Refuse (Grant::Unavailable).
    Closed,
}

/// A boxed future returned by [`BudgetStore`] methods.
pub type BudgetFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Reserve-then-settle budget counters.
pub trait BudgetStore: Send + Sync {
    /// Atomically (one Redis round trip) checks and charges every counter, or charges none.
    ///
    /// # Panics
    /// When `ask.draws` is not as long as `ask.counters`.
    fn reserve<'a>(&'a self, ask: Ask<'a>, on_failure: BudgetFailure) -> BudgetFuture<'a, Grant>;

    /// Adds `deltas[i]` to counter i (negative: refund, never below 0), in one round trip, never
    /// refusing. `local` is what the grant said. A failed settle on Redis is counted and logged
    /// (rate-limited), not retried.
    ///
    /// # Panics
    /// When `deltas` is not as long as `counters`.
    fn settle<'a>(
        &'a self,
        counters: &'a [Counter],
        deltas: &'a [i64],
        local: bool,
    ) -> BudgetFuture<'a, ()>;

    /// Current value of a counter (for tests, `keygate usage`-style reporting and the dashboard); 0 if absent.
    fn used<'a>(&'a self, counter: &'a Counter) -> BudgetFuture<'a, u64>;

    /// Operations answered by the fallback or refused because the shared store failed.
    fn failures(&self) -> u64 {
        0
    }
}

/// A number as both stores read it: at most [`MAX_LUA_INT`], where the Redis scripts are still exact.
fn exact(n: u64) -> u64 {
    n.min(MAX_LUA_INT)
}

/// A settle delta as both stores read it: within ±[`MAX_LUA_INT`].
fn exact_delta(delta: i64) -> i64 {
    let bound = MAX_LUA_INT as i64;
    delta.clamp(-bound, bound)
}

impl<'a> Ask<'a> {
    /// An ask for `units` (`min_units..=max_units`), drawing `draws[i]` on `counters[i]`.
    pub fn new(counters: &'a [Counter], draws: &'a [Draw], units: RangeInclusive<u64>) -> Self {
        Self {
            counters,
            draws,
            min_units: *units.start(),
            max_units: *units.end(),
        }
    }

    /// `(min_units, max_units)` as both stores read them.
    fn range(&self) -> (u64, u64) {
        let min = exact(self.min_units);
        (min, exact(self.max_units).max(min))
    }

    fn check_shape(&self) {
        assert_eq!(
            self.counters.len(),
            self.draws.len(),
            "a budget ask needs one draw per counter"
        );
        debug_assert!(
            self.counters
                .iter()
                .enumerate()
                .all(|(i, c)| self.counters[..i].iter().all(|d| d.id != c.id)),
            "a budget ask names a counter twice"
        );
    }
}

/// The shape a settlement needs: one delta per counter.
fn check_deltas(counters: &[Counter], deltas: &[i64]) {
    assert_eq!(
        counters.len(),
        deltas.len(),
        "a budget settlement needs one delta per counter"
    );
}

impl Draw {
    /// What a grant of `units` charges, for `units` no larger than [`units`] allowed.
    fn charge(&self, units: u64) -> u64 {
        exact(self.base) + units * exact(self.per_unit)
    }
}

/// The units a reservation gets given each counter's current value `used(i)`: the largest `x` in the
/// ask's range such that `used + base + x * per_unit <= limit` for every counter; or the index of the
/// first counter without room for `min_units` (or not even for its base).
///
/// Every quantity is at most 2^50, so the Lua port computes the same in doubles: `limit - used - base`
/// and the charges are exact, and the quotient of two such integers is never rounded up to the next
/// integer (its distance to it, at least `1 / per_unit`, exceeds half a unit in its last place).
fn units(ask: &Ask<'_>, mut used: impl FnMut(usize) -> u64) -> Result<u64, usize> {
    let (min, mut x) = ask.range();
    for (i, (counter, draw)) in ask.counters.iter().zip(ask.draws).enumerate() {
        let free = exact(counter.limit)
            .checked_sub(used(i))
            .and_then(|room| room.checked_sub(exact(draw.base)))
            .ok_or(i)?;
        // A draw of 0 per unit puts no bound on the units.
        if let Some(room) = free.checked_div(exact(draw.per_unit)) {
            if room < min {
                return Err(i);
            }
            x = x.min(room);
        }
    }
    Ok(x)
}

/// Unix time in milliseconds (0 before 1970), the clock `Counter::expires_at_ms` is on.
fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(id: &str, limit: u64) -> Counter {
        Counter {
            id: id.to_owned(),
            limit,
            expires_at_ms: u64::MAX,
        }
    }

    const D: Draw = Draw {
        base: 10,
        per_unit: 2,
    };

    #[test]
    fn the_tightest_counter_sets_the_units() {
        let cs = [counter("a", 1_000), counter("b", 100)];
        let ds = [
            Draw {
                base: 0,
                per_unit: 1,
            },
            D,
        ];
        // b: (100 - 30 - 10) / 2 = 30; a: 1000 - 500 = 500.
        let used = [500, 30];
        assert_eq!(units(&Ask::new(&cs, &ds, 1..=1_000), |i| used[i]), Ok(30));
        // max binds before any counter does.
        assert_eq!(units(&Ask::new(&cs, &ds, 1..=7), |i| used[i]), Ok(7));
        // The quotient is rounded down: (100 - 31 - 10) / 2 = 29.5.
        let used = [500, 31];
        assert_eq!(units(&Ask::new(&cs, &ds, 0..=1_000), |i| used[i]), Ok(29));
    }

    #[test]
    fn the_first_counter_without_room_for_min_is_named() {
        let cs = [counter("a", 100), counter("b", 100), counter("c", 100)];
        let ds = [D, D, D];
        let used = [0, 80, 95];
        // b has room for 5 units, c for none (not even its base).
        assert_eq!(
            units(&Ask::new(&cs[..2], &ds[..2], 5..=9), |i| used[i]),
            Ok(5)
        );
        assert_eq!(
            units(&Ask::new(&cs[..2], &ds[..2], 6..=9), |i| used[i]),
            Err(1)
        );
        assert_eq!(units(&Ask::new(&cs, &ds, 5..=9), |i| used[i]), Err(2));
        assert_eq!(units(&Ask::new(&cs, &ds, 6..=9), |i| used[i]), Err(1));
        assert_eq!(units(&Ask::new(&cs[2..], &ds[2..], 0..=9), |_| 95), Err(0));
        // Exactly the base fits: 0 units, and min 0 accepts that.
        assert_eq!(units(&Ask::new(&cs[..1], &ds[..1], 0..=9), |_| 90), Ok(0));
        assert_eq!(units(&Ask::new(&cs[..1], &ds[..1], 1..=9), |_| 90), Err(0));
    }

    #[test]
    fn a_zero_per_unit_draw_bounds_only_by_its_base() {
        let cs = [counter("requests", 3)];
        let ds = [Draw {
            base: 1,
            per_unit: 0,
        }];
        assert_eq!(units(&Ask::new(&cs, &ds, 1..=50), |_| 2), Ok(50));
        assert_eq!(units(&Ask::new(&cs, &ds, 1..=50), |_| 3), Err(0));
        // No counters: nothing bounds the units.
        assert_eq!(units(&Ask::new(&[], &[], 2..=8), |_| unreachable!()), Ok(8));
    }

    #[test]
    fn max_below_min_reads_as_min_and_numbers_are_clamped() {
        let cs = [counter("a", 100)];
        let reversed = Ask {
            counters: &cs,
            draws: &[D],
            min_units: 4,
            max_units: 1,
        };
        assert_eq!(units(&reversed, |_| 0), Ok(4));
        let huge = [counter("a", u64::MAX)];
        let ds = [Draw {
            base: 3,
            per_unit: MAX_LUA_INT / 2 + 1,
        }];
        // The limit reads as 2^50: (2^50 - 3) / (2^49 + 1) = 1.
        assert_eq!(units(&Ask::new(&huge, &ds, 0..=u64::MAX), |_| 0), Ok(1));
        assert_eq!(ds[0].charge(1), MAX_LUA_INT / 2 + 4);
        let reversed = Ask {
            min_units: u64::MAX,
            max_units: 0,
            ..reversed
        };
        assert_eq!(reversed.range(), (MAX_LUA_INT, MAX_LUA_INT));
        assert_eq!(exact_delta(i64::MIN), -(MAX_LUA_INT as i64));
        assert_eq!(exact_delta(-5), -5);
    }

    #[test]
    #[should_panic(expected = "one draw per counter")]
    fn an_ask_without_a_draw_per_counter_panics() {
        Ask::new(&[counter("a", 1)], &[], 0..=0).check_shape();
    }
}
