//! The in-process store: buckets in N independently locked shards, bounded in number.
//!
//! A bucket is found by a SipHash of `(name, key)` under a random per-process key; the raw key is never
//! stored. Each shard keeps its buckets in a map plus a CLOCK queue (second-chance LRU approximation): every
//! new bucket advances the shard's hand over up to [`SWEEP_STEPS`] buckets, dropping idle ones (nothing left
//! in their window) and clearing the "recently used" mark of the others. When a shard is full, the hand
//! evicts the first bucket that is idle or was not used since the hand last passed it. Checks of existing
//! buckets touch nothing else, so threads working on different buckets share few cache lines.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard};

use crate::clock::{Clock, MonotonicClock};
use crate::window::Log;
use crate::{CheckFuture, Decision, Limit, RateLimiter};

/// Buckets the hand examines each time a bucket is created.
const SWEEP_STEPS: usize = 2;

/// Sizing of a [`MemoryLimiter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryConfig {
    /// Number of independently locked shards (at least 1, at most `max_buckets`).
    pub shards: usize,
    /// Most buckets kept at once, over all limiters sharing this store (split evenly over the shards;
    /// a full shard evicts even when others have room).
    pub max_buckets: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            shards: 1024,
            max_buckets: 1_000_000,
        }
    }
}

/// Identity hasher for map keys that already are keyed hashes.
#[derive(Default)]
pub(crate) struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in so the hasher stays correct.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Bucket {
    log: Log,
    /// Used since the CLOCK hand last passed it.
    referenced: bool,
}

/// A shard on its own cache lines, so threads working on different shards do not slow each other down.
#[derive(Default)]
#[repr(align(128))]
struct PaddedShard(Mutex<Shard>);

#[derive(Default)]
struct Shard {
    buckets: HashMap<u64, Bucket, BuildHasherDefault<PreHashed>>,
    /// Every key of `buckets` exactly once; the front is the CLOCK hand.
    hand: VecDeque<u64>,
}

impl Shard {
    fn check(&mut self, id: u64, now_ms: u64, limit: Limit, max: usize) -> Decision {
        match self.buckets.get_mut(&id) {
            Some(bucket) => {
                bucket.referenced = true;
                bucket.log.check(now_ms, limit)
            }
            None => {
                if self.buckets.len() >= max {
                    self.evict_one(now_ms);
                }
                let mut log = Log::new();
                let decision = log.check(now_ms, limit);
                self.buckets.insert(
                    id,
                    Bucket {
                        log,
                        referenced: true,
                    },
                );
                self.hand.push_back(id);
                self.sweep(now_ms);
                decision
            }
        }
    }

    /// Advances the hand a few steps: drops idle buckets, clears the mark of the others.
    fn sweep(&mut self, now_ms: u64) {
        for _ in 0..SWEEP_STEPS.min(self.hand.len()) {
            self.step(now_ms, false);
        }
    }

    /// Advances the hand until one bucket is evicted.
    fn evict_one(&mut self, now_ms: u64) {
        // Two full turns at most: the first clears every mark.
        for _ in 0..=2 * self.hand.len() {
            if self.step(now_ms, true) {
                return;
            }
        }
    }

    /// Examines the bucket under the hand; returns true when it was removed.
    fn step(&mut self, now_ms: u64, evicting: bool) -> bool {
        let Some(id) = self.hand.pop_front() else {
            return false;
        };
        let remove = match self.buckets.get_mut(&id) {
            // Not reachable while `hand` and `buckets` agree; dropping the stray id keeps them agreeing.
            None => return false,
            Some(b) if b.log.is_idle(now_ms) => true,
            Some(b) if evicting && !b.referenced => true,
            Some(b) => {
                b.referenced = false;
                false
            }
        };
        if remove {
            self.buckets.remove(&id);
        } else {
            self.hand.push_back(id);
        }
        remove
    }
}

/// An in-process [`RateLimiter`]: exact per instance, not shared between gateway processes.
pub struct MemoryLimiter<C: Clock = MonotonicClock> {
    shards: Box<[PaddedShard]>,
    per_shard: usize,
    hasher: RandomState,
    clock: C,
}

impl MemoryLimiter<MonotonicClock> {
    /// A store sized by `config`, on the monotonic clock.
    pub fn new(config: MemoryConfig) -> Self {
        Self::with_clock(config, MonotonicClock::new())
    }
}

impl Default for MemoryLimiter<MonotonicClock> {
    fn default() -> Self {
        Self::new(MemoryConfig::default())
    }
}

impl<C: Clock> MemoryLimiter<C> {
    /// A store sized by `config`, reading time from `clock`.
    pub fn with_clock(config: MemoryConfig, clock: C) -> Self {
        // Never more shards than buckets, so `shards * per_shard <= max_buckets` holds.
        let shards = config.shards.clamp(1, config.max_buckets.max(1));
        Self {
            shards: (0..shards).map(|_| PaddedShard::default()).collect(),
            per_shard: (config.max_buckets / shards).max(1),
            hasher: RandomState::new(),
            clock,
        }
    }

    /// Counts one request against `key` of limiter `name` (the synchronous form of [`RateLimiter::check`]).
    pub fn check_now(&self, name: &str, key: &[u8], limit: Limit) -> Decision {
        let id = self.hasher.hash_one((name, key));
        // Shard by the middle bits: the map uses the low bits for its slot and the top 7 for its tag.
        let shard = ((id >> 32) as usize) % self.shards.len();
        let now_ms = self.clock.now_ms();
        self.lock(shard).check(id, now_ms, limit, self.per_shard)
    }

    /// Number of buckets currently held.
    pub fn len(&self) -> usize {
        (0..self.shards.len())
            .map(|i| self.lock(i).buckets.len())
            .sum()
    }

    /// True when no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        // A panic while holding the lock cannot leave a shard inconsistent in a way that matters here.
        self.shards[shard]
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<C: Clock> RateLimiter for MemoryLimiter<C> {
    fn check<'a>(&'a self, name: &'a str, key: &'a [u8], limit: Limit) -> CheckFuture<'a> {
        Box::pin(std::future::ready(self.check_now(name, key, limit)))
    }
}

impl<C: Clock> std::fmt::Debug for MemoryLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryLimiter")
            .field("shards", &self.shards.len())
            .field("per_shard", &self.per_shard)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;

    const L: Limit = Limit {
        capacity: 3,
        window: Duration::from_secs(60),
    };

    fn limiter(shards: usize, max_buckets: usize) -> (MemoryLimiter<ManualClock>, ManualClock) {
        let clock = ManualClock::new(1_000);
        let config = MemoryConfig {
            shards,
            max_buckets,
        };
        (MemoryLimiter::with_clock(config, clock.clone()), clock)
    }

    #[test]
    fn buckets_are_separate_per_key_and_per_name() {
        let (m, _) = limiter(4, 100);
        for _ in 0..3 {
            assert!(!m.check_now("a", b"k1", L).limited);
        }
        assert!(m.check_now("a", b"k1", L).limited);
        assert!(!m.check_now("a", b"k2", L).limited);
        assert!(!m.check_now("b", b"k1", L).limited);
        // (name, key) pairs are encoded unambiguously: "ab"+"c" is not "a"+"bc".
        for _ in 0..3 {
            m.check_now("ab", b"c", L);
        }
        assert!(!m.check_now("a", b"bc", L).limited);
    }

    #[test]
    fn through_the_trait() {
        let (m, clock) = limiter(1, 10);
        let limiter: &dyn RateLimiter = &m;
        let run = |f: CheckFuture<'_>| {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            let mut f = f;
            match f.as_mut().poll(&mut cx) {
                std::task::Poll::Ready(d) => d,
                std::task::Poll::Pending => panic!("memory check must be ready at once"),
            }
        };
        for _ in 0..3 {
            assert!(!run(limiter.check("n", b"k", L)).limited);
        }
        let d = run(limiter.check("n", b"k", L));
        assert!(d.limited);
        assert_eq!(d.retry_after, Duration::from_secs(60));
        clock.advance(60_000);
        assert!(!run(limiter.check("n", b"k", L)).limited);
    }

    #[test]
    fn a_flood_of_distinct_keys_stays_within_the_bound() {
        let (m, _) = limiter(8, 1_000);
        for i in 0..50_000u32 {
            m.check_now("flood", &i.to_le_bytes(), L);
            assert!(m.len() <= 1_000);
        }
        assert!(m.len() >= 900, "shards should fill up, got {}", m.len());
        for shard in m.shards.iter() {
            let s = shard.0.lock().unwrap();
            assert_eq!(s.buckets.len(), s.hand.len());
        }
    }

    #[test]
    fn eviction_spares_buckets_in_use() {
        let (m, _) = limiter(1, 100);
        // A busy client at capacity, touched between every flood request.
        for _ in 0..3 {
            m.check_now("n", b"busy", L);
        }
        for i in 0..10_000u32 {
            m.check_now("n", &i.to_le_bytes(), L);
            assert!(
                m.check_now("n", b"busy", L).limited,
                "busy bucket evicted at {i}"
            );
        }
    }

    #[test]
    fn idle_buckets_expire_without_pressure() {
        let (m, clock) = limiter(1, 1_000);
        for i in 0..100u32 {
            m.check_now("n", &i.to_le_bytes(), L);
        }
        assert_eq!(m.len(), 100);
        clock.advance(60_000);
        // Checks of existing buckets leave the others alone.
        m.check_now("n", &0u32.to_le_bytes(), L);
        assert_eq!(m.len(), 100);
        // Each new bucket advances the hand two steps: 50 new buckets sweep the 99 idle ones.
        for i in 1_000..1_050u32 {
            m.check_now("n", &i.to_le_bytes(), L);
        }
        assert_eq!(m.len(), 51);
    }

    #[test]
    fn shards_are_used_evenly() {
        let (m, _) = limiter(16, 1_000_000);
        for i in 0..16_000u32 {
            m.check_now("n", &i.to_le_bytes(), L);
        }
        for shard in m.shards.iter() {
            let n = shard.0.lock().unwrap().buckets.len();
            assert!((700..1_300).contains(&n), "unbalanced shard: {n}");
        }
    }

    #[test]
    fn debug_shows_no_keys() {
        let (m, _) = limiter(2, 10);
        m.check_now("n", b"secret-token", L);
        let s = format!("{m:?}");
        assert!(!s.contains("secret"));
    }
}
