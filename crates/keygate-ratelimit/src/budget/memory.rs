//! The in-process budget store: counters in [`SHARDS`] locked maps, expired ones purged as the maps grow.
//!
//! A counter is found by a SipHash of its id under a random per-process key, computed once per operation.
//! An operation locks the shards of all its counters (in shard order, so two operations never wait on
//! each other in a cycle), decides with [`units`], charges, and unlocks: nothing is held across an
//! `.await`, and every future it returns is ready at once.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault};
use std::sync::{Mutex, MutexGuard};

use super::{
    check_deltas, exact_delta, units, unix_now_ms, Ask, BudgetFailure, BudgetFuture, BudgetStore,
    Counter, Grant,
};
use crate::memory::PreHashed;

/// Independently locked maps; a shard is picked by a hash of the counter id.
const SHARDS: usize = 16;
/// A shard drops its expired counters whenever it has grown to twice what its last purge left, and at
/// least to this many: the work of a purge is paid for by the insertions since the last one, and memory
/// stays within twice the live counters (plus this floor per shard).
const MIN_PURGE: usize = 64;
/// Counters per operation whose hashes are kept on the stack.
const INLINE_COUNTERS: usize = 8;

struct Entry {
    used: u64,
    expires_at_ms: u64,
}

#[derive(Default)]
struct Shard {
    /// By keyed hash of the id. Two ids colliding on 64 bits would share a value (more limiting,
    /// never less), at odds of about 3 in 10^8 with a million counters.
    counters: HashMap<u64, Entry, BuildHasherDefault<PreHashed>>,
    /// Size at which the next insertion purges expired counters first.
    purge_at: usize,
}

impl Shard {
    fn used(&self, key: u64, now_ms: u64) -> u64 {
        self.counters
            .get(&key)
            .filter(|e| e.expires_at_ms > now_ms)
            .map_or(0, |e| e.used)
    }

    /// Sets a counter's value and expiry, as the Redis scripts do: a counter at 0 or past its expiry
    /// is not kept (both read as 0).
    fn set(&mut self, key: u64, counter: &Counter, used: u64, now_ms: u64) {
        if used == 0 || counter.expires_at_ms <= now_ms {
            self.counters.remove(&key);
            return;
        }
        let entry = Entry {
            used,
            expires_at_ms: counter.expires_at_ms,
        };
        if let Some(e) = self.counters.get_mut(&key) {
            *e = entry;
            return;
        }
        if self.counters.len() >= self.purge_at {
            self.counters.retain(|_, e| e.expires_at_ms > now_ms);
            self.purge_at = (2 * self.counters.len()).max(MIN_PURGE);
        }
        self.counters.insert(key, entry);
    }
}

/// An in-process [`BudgetStore`]: exact per process, not shared between gateway instances. Its grants
/// are never `local` (there is no shared store it stands in for), and it never fails.
pub struct MemoryBudgets {
    shards: [Mutex<Shard>; SHARDS],
    hasher: RandomState,
}

impl Default for MemoryBudgets {
    fn default() -> Self {
        Self {
            shards: Default::default(),
            hasher: RandomState::new(),
        }
    }
}

/// The shards one operation holds, locked in index order.
struct Locked<'a> {
    guards: [Option<MutexGuard<'a, Shard>>; SHARDS],
}

impl Locked<'_> {
    fn shard(&mut self, key: u64) -> &mut Shard {
        self.guards[shard_of(key)]
            .as_deref_mut()
            .expect("every counter's shard is locked")
    }
}

/// The shard of a counter, from the middle bits of its key: the map uses the low bits for its slot and
/// the top 7 for its tag.
fn shard_of(key: u64) -> usize {
    (key >> 32) as usize % SHARDS
}

impl MemoryBudgets {
    /// [`BudgetStore::reserve`] without the future (the failure mode never applies).
    ///
    /// # Panics
    /// When `ask.draws` is not as long as `ask.counters`.
    pub fn reserve_now(&self, ask: Ask<'_>) -> Grant {
        self.reserve_at(ask, unix_now_ms())
    }

    /// [`BudgetStore::settle`] without the future.
    ///
    /// # Panics
    /// When `deltas` is not as long as `counters`.
    pub fn settle_now(&self, counters: &[Counter], deltas: &[i64]) {
        self.settle_at(counters, deltas, unix_now_ms());
    }

    /// [`BudgetStore::used`] without the future.
    pub fn used_now(&self, counter: &Counter) -> u64 {
        self.used_at(counter, unix_now_ms())
    }

    fn reserve_at(&self, ask: Ask<'_>, now_ms: u64) -> Grant {
        ask.check_shape();
        self.with_locked(ask.counters, |locked, keys| {
            match units(&ask, |i| locked.shard(keys[i]).used(keys[i], now_ms)) {
                Ok(x) => {
                    for ((counter, draw), &key) in ask.counters.iter().zip(ask.draws).zip(keys) {
                        let charge = draw.charge(x);
                        if charge > 0 {
                            let shard = locked.shard(key);
                            let used = shard.used(key, now_ms).saturating_add(charge);
                            shard.set(key, counter, used, now_ms);
                        }
                    }
                    Grant::Granted {
                        units: x,
                        local: false,
                    }
                }
                Err(counter) => Grant::Exhausted { counter },
            }
        })
    }

    fn settle_at(&self, counters: &[Counter], deltas: &[i64], now_ms: u64) {
        check_deltas(counters, deltas);
        self.with_locked(counters, |locked, keys| {
            for ((counter, &delta), &key) in counters.iter().zip(deltas).zip(keys) {
                if delta != 0 {
                    let shard = locked.shard(key);
                    let used = shard
                        .used(key, now_ms)
                        .saturating_add_signed(exact_delta(delta));
                    shard.set(key, counter, used, now_ms);
                }
            }
        })
    }

    fn used_at(&self, counter: &Counter, now_ms: u64) -> u64 {
        let key = self.hasher.hash_one(&counter.id);
        self.lock(shard_of(key)).used(key, now_ms)
    }

    /// Runs `f` with the shards of `counters` locked and the key of each counter.
    fn with_locked<R>(
        &self,
        counters: &[Counter],
        f: impl FnOnce(&mut Locked<'_>, &[u64]) -> R,
    ) -> R {
        let mut inline = [0; INLINE_COUNTERS];
        let mut spilled = Vec::new();
        let keys = if counters.len() <= INLINE_COUNTERS {
            &mut inline[..counters.len()]
        } else {
            spilled.resize(counters.len(), 0);
            &mut spilled[..]
        };
        let mut wanted = [false; SHARDS];
        for (key, counter) in keys.iter_mut().zip(counters) {
            *key = self.hasher.hash_one(&counter.id);
            wanted[shard_of(*key)] = true;
        }
        let mut locked = Locked {
            guards: Default::default(),
        };
        for (shard, guard) in locked.guards.iter_mut().enumerate() {
            if wanted[shard] {
                *guard = Some(self.lock(shard));
            }
        }
        f(&mut locked, keys)
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        // Each counter is written in one assignment, so a panicking holder cannot leave one half-written.
        self.shards[shard]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl BudgetStore for MemoryBudgets {
    fn reserve<'a>(&'a self, ask: Ask<'a>, _on_failure: BudgetFailure) -> BudgetFuture<'a, Grant> {
        Box::pin(std::future::ready(self.reserve_now(ask)))
    }

    fn settle<'a>(
        &'a self,
        counters: &'a [Counter],
        deltas: &'a [i64],
        _local: bool,
    ) -> BudgetFuture<'a, ()> {
        self.settle_now(counters, deltas);
        Box::pin(std::future::ready(()))
    }

    fn used<'a>(&'a self, counter: &'a Counter) -> BudgetFuture<'a, u64> {
        Box::pin(std::future::ready(self.used_now(counter)))
    }
}

impl std::fmt::Debug for MemoryBudgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBudgets")
            .field("shards", &SHARDS)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Draw;

    const NOW: u64 = 1_000_000;

    fn counter(id: &str, limit: u64) -> Counter {
        Counter {
            id: id.to_owned(),
            limit,
            expires_at_ms: NOW + 3_600_000,
        }
    }

    fn used(store: &MemoryBudgets, counters: &[Counter]) -> Vec<u64> {
        counters.iter().map(|c| store.used_at(c, NOW)).collect()
    }

    fn granted(units: u64) -> Grant {
        Grant::Granted {
            units,
            local: false,
        }
    }

    const TOKENS: Draw = Draw {
        base: 100,
        per_unit: 1,
    };
    const SPEND: Draw = Draw {
        base: 300,
        per_unit: 15,
    };

    #[test]
    fn grants_the_largest_units_every_counter_has_room_for_and_charges_each() {
        let store = MemoryBudgets::default();
        let cs = [counter("k:tokens", 10_000), counter("k:spend", 30_000)];
        let ds = [TOKENS, SPEND];
        // spend binds: (30000 - 300) / 15 = 1980 units.
        assert_eq!(
            store.reserve_at(Ask::new(&cs, &ds, 1..=4_096), NOW),
            granted(1_980)
        );
        assert_eq!(used(&store, &cs), [2_080, 30_000]);
        // spend is full (no room even for its base); tokens alone has room for 7820 units.
        assert_eq!(
            store.reserve_at(Ask::new(&cs, &ds, 0..=10), NOW),
            Grant::Exhausted { counter: 1 }
        );
        assert_eq!(
            store.reserve_at(Ask::new(&cs[..1], &ds[..1], 0..=10), NOW),
            granted(10)
        );
        assert_eq!(used(&store, &cs), [2_190, 30_000]);
    }

    #[test]
    fn a_refusal_charges_nothing_and_names_the_first_full_counter() {
        let store = MemoryBudgets::default();
        let cs = [
            counter("a", 1_000),
            counter("b", 1_000),
            counter("c", 1_000),
        ];
        let ds = [TOKENS; 3];
        assert_eq!(
            store.reserve_at(Ask::new(&cs[1..], &ds[1..], 800..=800), NOW),
            granted(800)
        );
        assert_eq!(used(&store, &cs), [0, 900, 900]);
        assert_eq!(
            store.reserve_at(Ask::new(&cs, &ds, 1..=50), NOW),
            Grant::Exhausted { counter: 1 }
        );
        assert_eq!(used(&store, &cs), [0, 900, 900]);
        // Exactly the base still fits with min 0.
        assert_eq!(
            store.reserve_at(Ask::new(&cs, &ds, 0..=50), NOW),
            granted(0)
        );
        assert_eq!(used(&store, &cs), [100, 1_000, 1_000]);
    }

    #[test]
    fn settle_adds_and_refunds_never_below_zero() {
        let store = MemoryBudgets::default();
        let cs = [counter("a", 1_000), counter("b", 1_000)];
        assert_eq!(
            store.reserve_at(Ask::new(&cs, &[TOKENS; 2], 0..=400), NOW),
            granted(400)
        );
        store.settle_at(&cs, &[-450, 700], NOW);
        assert_eq!(used(&store, &cs), [50, 1_200]);
        // Over its limit after a settlement: nothing more fits, not even min 0.
        assert_eq!(
            store.reserve_at(Ask::new(&cs, &[TOKENS; 2], 0..=400), NOW),
            Grant::Exhausted { counter: 1 }
        );
        store.settle_at(&cs, &[-51, i64::MIN], NOW);
        assert_eq!(used(&store, &cs), [0, 0]);
        // A counter at 0 is not kept.
        assert!(store
            .shards
            .iter()
            .all(|s| s.lock().unwrap().counters.is_empty()));
        // Settling a counter nobody reserved from counts too.
        store.settle_at(&cs[..1], &[5], NOW);
        assert_eq!(used(&store, &cs), [5, 0]);
    }

    #[test]
    fn expired_counters_are_forgotten() {
        let store = MemoryBudgets::default();
        let mut hour = counter("k:tokens:3600:1", 500);
        hour.expires_at_ms = NOW + 10;
        assert_eq!(
            store.reserve_at(Ask::new(&[hour.clone()], &[TOKENS], 400..=400), NOW),
            granted(400)
        );
        assert_eq!(
            store.reserve_at(Ask::new(&[hour.clone()], &[TOKENS], 1..=1), NOW + 9),
            Grant::Exhausted { counter: 0 }
        );
        // At its expiry the window holds nothing.
        assert_eq!(
            store.reserve_at(Ask::new(&[hour.clone()], &[TOKENS], 400..=400), NOW + 10),
            Grant::Granted {
                units: 400,
                local: false
            }
        );
        // ...which was charged to a window already over, so it was not kept either.
        assert!(store
            .shards
            .iter()
            .all(|s| s.lock().unwrap().counters.is_empty()));
        // Through the public API, with expiries in the past.
        let mut past = counter("k:spend:86400:0", 10);
        past.expires_at_ms = 1;
        store.settle_now(&[past.clone()], &[1_000]);
        assert_eq!(store.used_now(&past), 0);
        assert_eq!(
            store.reserve_now(Ask::new(&[past.clone()], &[TOKENS], 0..=0)),
            Grant::Exhausted { counter: 0 }
        );
    }

    #[test]
    fn expired_counters_are_purged_as_new_ones_arrive() {
        let store = MemoryBudgets::default();
        let one = Draw {
            base: 1,
            per_unit: 0,
        };
        let window = |w: u64, i: u32| Counter {
            id: format!("k{i}:tokens:1000:{w}"),
            limit: 10,
            expires_at_ms: (w + 1) * 1_000,
        };
        for i in 0..10_000 {
            store.reserve_at(Ask::new(&[window(1, i)], &[one], 0..=0), 1_500);
        }
        for i in 0..10_000 {
            store.reserve_at(Ask::new(&[window(2, i)], &[one], 0..=0), 2_500);
        }
        // Each shard holds about 625 counters of a window, and purges when it reaches 1024: every
        // counter of window 1 is gone by the end of window 2's insertions.
        let held: usize = store
            .shards
            .iter()
            .map(|s| s.lock().unwrap().counters.len())
            .sum();
        assert_eq!(held, 10_000);
        assert_eq!(store.used_now(&window(1, 7)), 0);
    }

    #[test]
    fn concurrent_reservations_never_charge_past_the_limit() {
        let store = MemoryBudgets::default();
        let cs = [counter("k:tokens", 1_000), counter("k:spend", 1_000_000)];
        let reversed = [cs[1].clone(), cs[0].clone()];
        let draw = Draw {
            base: 10,
            per_unit: 1,
        };
        let charged = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for t in 0..8 {
                let (store, charged) = (&store, &charged);
                // Half the threads name the counters in the other order: shards are still locked in
                // one order, so they cannot deadlock.
                let counters = if t % 2 == 0 { &cs } else { &reversed };
                s.spawn(move || {
                    for _ in 0..50 {
                        let a = Ask {
                            counters,
                            draws: &[draw; 2],
                            min_units: 1,
                            max_units: 20,
                        };
                        if let Grant::Granted { units, .. } = store.reserve_at(a, NOW) {
                            charged.fetch_add(10 + units, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        let charged = charged.into_inner();
        assert_eq!(used(&store, &cs), [charged, charged]);
        // Every reservation wants at least 11: the last ones left less than that.
        assert!((990..=1_000).contains(&charged), "{charged}");
    }

    #[test]
    fn an_ask_of_more_counters_than_are_kept_on_the_stack() {
        let store = MemoryBudgets::default();
        let cs: Vec<Counter> = (0..INLINE_COUNTERS as u64 + 4)
            .map(|i| counter(&format!("c{i}"), 1_000 + i))
            .collect();
        let ds = vec![TOKENS; cs.len()];
        // The first counter is the tightest: (1000 - 100) / 1.
        assert_eq!(
            store.reserve_at(Ask::new(&cs, &ds, 0..=5_000), NOW),
            granted(900)
        );
        let expected: Vec<u64> = vec![1_000; cs.len()];
        assert_eq!(used(&store, &cs), expected);
        let last = cs.len() - 1;
        let mut deltas = vec![0; cs.len()];
        deltas[last] = -1_000;
        store.settle_at(&cs, &deltas, NOW);
        assert_eq!(store.used_at(&cs[last], NOW), 0);
        assert_eq!(
            store.reserve_at(Ask::new(&cs, &ds, 1..=1), NOW),
            Grant::Exhausted { counter: 0 }
        );
    }

    #[test]
    fn the_trait_futures_are_ready_at_once() {
        let store = MemoryBudgets::default();
        let budgets: &dyn BudgetStore = &store;
        let cs = [counter("a", 100)];
        let poll = |mut f: BudgetFuture<'_, Grant>| {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            match f.as_mut().poll(&mut cx) {
                std::task::Poll::Ready(g) => g,
                std::task::Poll::Pending => panic!("memory reserve must be ready at once"),
            }
        };
        let a = Ask::new(&cs, &[TOKENS], 0..=1_000);
        assert_eq!(poll(budgets.reserve(a, BudgetFailure::Closed)), granted(0));
        assert_eq!(budgets.failures(), 0);
    }
}
