//! The sliding-log algorithm shared by both stores (the Redis Lua script is a line-by-line port).
//!
//! A bucket is a queue of entries `(expires_ms, count)` in expiry order plus their running total. A request
//! at time `t` is remembered until `t + window` (exclusive). Requests in the same time slot of `granularity`
//! milliseconds share one entry that expires with the slot's latest possible request, so a bucket never holds
//! more than about [`MAX_ENTRIES`] entries and a request is never forgotten early (no over-admission).

use std::collections::VecDeque;
use std::time::Duration;

use crate::{Decision, Limit};

/// Upper bound on entries per bucket (up to one more while a slot boundary is crossed).
pub const MAX_ENTRIES: u64 = 1000;

/// Slot width in milliseconds for `limit`: 1 ms (exact) when `capacity <= MAX_ENTRIES`, since the bucket then
/// never holds more than `capacity` entries anyway; otherwise `ceil(window / MAX_ENTRIES)`.
pub fn granularity_ms(limit: Limit) -> u64 {
    if limit.capacity <= MAX_ENTRIES {
        1
    } else {
        window_ms(limit).div_ceil(MAX_ENTRIES).max(1)
    }
}

/// The window in whole milliseconds, saturating.
pub fn window_ms(limit: Limit) -> u64 {
    u64::try_from(limit.window.as_millis()).unwrap_or(u64::MAX)
}

/// The expiry of a request admitted at `now_ms`: the end of its slot plus the window.
fn expiry_ms(now_ms: u64, limit: Limit) -> u64 {
    let g = granularity_ms(limit);
    (now_ms / g)
        .saturating_add(1)
        .saturating_mul(g)
        .saturating_sub(1)
        .saturating_add(window_ms(limit))
}

/// Converts a wait in milliseconds into `Retry-After`: whole seconds, rounded up, at least 1.
pub fn retry_after(wait_ms: u64) -> Duration {
    Duration::from_secs(wait_ms.div_ceil(1000).max(1))
}

/// A decision for a request refused without consulting any store (fail-closed, zero capacity).
pub fn refused(wait: Duration) -> Decision {
    Decision {
        limited: true,
        remaining: 0,
        retry_after: retry_after(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)),
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    expires_ms: u64,
    count: u64,
}

/// One bucket's sliding log.
#[derive(Debug, Default)]
pub struct Log {
    entries: VecDeque<Entry>,
    total: u64,
}

impl Log {
    /// An empty log that allocates on first admission only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops entries that left the window at `now_ms`.
    fn expire(&mut self, now_ms: u64) {
        while let Some(front) = self.entries.front() {
            if front.expires_ms > now_ms {
                break;
            }
            self.total = self.total.saturating_sub(front.count);
            self.entries.pop_front();
        }
        if self.entries.is_empty() {
            self.total = 0;
        }
    }

    /// True when no request is remembered at `now_ms`: the bucket can be dropped.
    pub fn is_idle(&self, now_ms: u64) -> bool {
        self.entries.back().is_none_or(|e| e.expires_ms <= now_ms)
    }

    /// Counts one request at `now_ms` unless the window already holds `limit.capacity` requests.
    pub fn check(&mut self, now_ms: u64, limit: Limit) -> Decision {
        self.expire(now_ms);
        if self.total >= limit.capacity {
            return Decision {
                limited: true,
                remaining: 0,
                retry_after: retry_after(self.wait_ms(now_ms, limit)),
            };
        }
        // A clock step backwards must not reorder the queue: join the newest entry instead (conservative).
        let expires_ms = expiry_ms(now_ms, limit);
        match self.entries.back_mut() {
            Some(last) if last.expires_ms >= expires_ms => last.count += 1,
            _ => self.entries.push_back(Entry {
                expires_ms,
                count: 1,
            }),
        }
        self.total += 1;
        Decision {
            limited: false,
            remaining: limit.capacity - self.total,
            retry_after: Duration::ZERO,
        }
    }

    /// Milliseconds until enough entries expire for the total to drop below capacity.
    fn wait_ms(&self, now_ms: u64, limit: Limit) -> u64 {
        let need = self.total - limit.capacity + 1;
        let mut freed = 0;
        for entry in &self.entries {
            freed += entry.count;
            if freed >= need {
                return entry.expires_ms - now_ms;
            }
        }
        // Zero capacity: nothing will ever pass; tell the client to come back after a window.
        window_ms(limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn limit(capacity: u64, window: Duration) -> Limit {
        Limit { capacity, window }
    }

    #[test]
    fn admits_exactly_capacity_then_limits() {
        let mut log = Log::new();
        let l = limit(100, MIN);
        for i in 0..100 {
            let d = log.check(1_000 + i, l);
            assert!(!d.limited, "request {i} limited");
            assert_eq!(d.remaining, 99 - i);
        }
        let d = log.check(1_100, l);
        assert!(d.limited);
        assert_eq!(d.remaining, 0);
    }

    #[test]
    fn retry_after_points_at_the_oldest_request_leaving_the_window() {
        let mut log = Log::new();
        let l = limit(2, MIN);
        log.check(10_000, l);
        log.check(30_000, l);
        // Oldest leaves at 70_000: from 50_000 that is 20 s.
        assert_eq!(log.check(50_000, l).retry_after, Duration::from_secs(20));
        // 19.5 s left rounds up to 20; 1 ms left rounds up to 1 s.
        assert_eq!(log.check(50_500, l).retry_after, Duration::from_secs(20));
        assert_eq!(log.check(69_999, l).retry_after, Duration::from_secs(1));
        // At 70_000 the oldest has left: exactly one request passes.
        assert!(!log.check(70_000, l).limited);
        let d = log.check(70_001, l);
        assert!(d.limited);
        // Now the 30_000 request is the oldest: it leaves at 90_000.
        assert_eq!(d.retry_after, Duration::from_secs(20));
    }

    #[test]
    fn window_slides_request_by_request() {
        let mut log = Log::new();
        let l = limit(3, Duration::from_secs(10));
        for t in [0, 2_000, 4_000] {
            assert!(!log.check(t, l).limited);
        }
        assert!(log.check(9_999, l).limited);
        assert!(!log.check(10_000, l).limited); // the request at 0 left
        assert!(log.check(11_999, l).limited);
        assert!(!log.check(12_000, l).limited); // the request at 2_000 left
        assert!(log.check(12_001, l).limited);
    }

    #[test]
    fn limited_requests_consume_nothing() {
        let mut log = Log::new();
        let l = limit(2, Duration::from_secs(10));
        log.check(0, l);
        log.check(1, l);
        for t in 2..1_000 {
            assert!(log.check(t, l).limited);
        }
        assert_eq!(log.total, 2);
        // Only the two admitted requests count: both slots free exactly when they expire.
        assert!(!log.check(10_000, l).limited);
        assert!(!log.check(10_001, l).limited);
        assert!(log.check(10_002, l).limited);
    }

    #[test]
    fn never_more_than_capacity_in_any_trailing_window() {
        // A deterministic pseudo-random arrival pattern, checked against a brute-force log.
        let l = limit(5, Duration::from_secs(1));
        let mut log = Log::new();
        let mut admitted: Vec<u64> = Vec::new();
        let mut t = 0u64;
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            t += x % 250;
            let in_window = admitted.iter().filter(|&&a| t - a < 1_000).count() as u64;
            let d = log.check(t, l);
            // Capacity 5 <= MAX_ENTRIES: slots are 1 ms wide, so the log is exact.
            assert_eq!(d.limited, in_window >= 5, "at t={t}");
            if !d.limited {
                admitted.push(t);
            }
        }
    }

    #[test]
    fn large_capacity_is_coarse_but_never_over_admits() {
        let l = limit(5_000, MIN);
        assert_eq!(granularity_ms(l), 60);
        let mut log = Log::new();
        for i in 0..5_000u64 {
            assert!(!log.check(i * 5, l).limited); // 200 req/s for 25 s
        }
        assert!(log.entries.len() as u64 <= MAX_ENTRIES + 1);
        assert!(log.check(59_999, l).limited);
        // The first slot [0, 60) holds 12 requests; it expires at 60_059, not 60_000: late, never early.
        assert!(log.check(60_058, l).limited);
        for _ in 0..12 {
            assert!(!log.check(60_059, l).limited);
        }
        assert!(log.check(60_059, l).limited);
    }

    #[test]
    fn zero_capacity_always_limits_and_degenerate_windows_do_not_panic() {
        let mut log = Log::new();
        let d = log.check(5, limit(0, MIN));
        assert!(d.limited);
        assert_eq!(d.retry_after, MIN);
        let mut log = Log::new();
        for t in 0..10 {
            assert!(!log.check(t, limit(1, Duration::ZERO)).limited);
        }
        let mut log = Log::new();
        let huge = limit(u64::MAX, Duration::MAX);
        assert!(!log.check(u64::MAX - 1, huge).limited);
        assert!(!log.check(u64::MAX, huge).limited);
    }

    #[test]
    fn clock_stepping_back_keeps_requests_counted() {
        let mut log = Log::new();
        let l = limit(2, Duration::from_secs(10));
        log.check(5_000, l);
        log.check(4_000, l); // joins the 5_000 entry
        assert!(log.check(14_999, l).limited);
        assert!(!log.check(15_000, l).limited);
    }

    #[test]
    fn lowered_capacity_waits_until_enough_requests_expire() {
        let mut log = Log::new();
        let window = Duration::from_secs(100);
        for t in [0, 10_000, 20_000, 30_000] {
            log.check(t, limit(4, window));
        }
        // Capacity lowered to 2 (a policy reload): three of the four must leave, the third at 120_000.
        let d = log.check(50_000, limit(2, window));
        assert!(d.limited);
        assert_eq!(d.retry_after, Duration::from_secs(70));
        assert!(log.check(119_999, limit(2, window)).limited);
        assert!(!log.check(120_000, limit(2, window)).limited);
        assert!(log.check(120_000, limit(2, window)).limited);
    }

    #[test]
    fn idle_when_every_entry_expired() {
        let mut log = Log::new();
        assert!(log.is_idle(0));
        log.check(0, limit(1, Duration::from_secs(1)));
        assert!(!log.is_idle(999));
        assert!(log.is_idle(1_000));
    }
}
