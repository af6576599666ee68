//! The breaker's state: a rolling window of time-keyed buckets and the closed / open /
//! half-open machine, all atomics (no lock on the request path). Time is passed in as
//! milliseconds since any fixed origin, so tests drive it without sleeping.
//!
//! Counts are approximate where a bucket is recycled for a new period while other requests
//! record into it: a few concurrent outcomes may be lost, which a failure ratio tolerates.

use std::sync::atomic::{AtomicU64, Ordering};

/// Buckets in the window (ngrok's fixed `num_buckets`).
pub const NUM_BUCKETS: usize = 10;

/// Requests and errors are packed in one word so a bucket reads consistently.
const ONE_REQUEST: u64 = 1 << 32;
const ERRORS_MASK: u64 = ONE_REQUEST - 1;
/// The epoch of a bucket never used.
const UNUSED: u64 = u64::MAX;

/// The thresholds and durations, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub error_threshold: f64,
    pub volume_threshold: u64,
    pub window_ms: u64,
    pub tripped_ms: u64,
}

/// Whether a request may go on, and in which role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: counted in the window.
    Normal,
    /// Half-open: the one request that tests the upstream; `started` identifies it.
    Probe { started: u64 },
    /// Open (or half-open with a probe under way): refuse, retry after this many ms.
    Refused { retry_after_ms: u64 },
}

/// A state change worth logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Closed to open: the window went over the thresholds.
    Tripped { requests: u64, errors: u64 },
    /// A probe failed: open again.
    Retripped,
    /// A probe succeeded: closed, with an empty window.
    Closed,
}

struct Bucket {
    /// The period (`now / bucket_ms`) the counts belong to.
    epoch: AtomicU64,
    /// Requests in the high 32 bits, errors in the low 32.
    counts: AtomicU64,
}

/// One breaker: one per `circuit-breaker` action of a loaded policy.
pub struct Breaker {
    settings: Settings,
    bucket_ms: u64,
    buckets: [Bucket; NUM_BUCKETS],
    /// 0 while closed; otherwise when the open period ends (then half-open).
    open_until: AtomicU64,
    /// 0 when no probe is under way; otherwise when the probe was let through.
    probe_started: AtomicU64,
}

impl Breaker {
    pub fn new(settings: Settings) -> Self {
        Self {
            bucket_ms: (settings.window_ms / NUM_BUCKETS as u64).max(1),
            settings,
            buckets: std::array::from_fn(|_| Bucket {
                epoch: AtomicU64::new(UNUSED),
                counts: AtomicU64::new(0),
            }),
            open_until: AtomicU64::new(0),
            probe_started: AtomicU64::new(0),
        }
    }

    /// Decides on a request arriving at `now`. In half-open, the first arrival becomes the
    /// probe; a probe still unanswered after `tripped_ms` is given up for a new one, so a hung
    /// request cannot hold the breaker open forever.
    pub fn admit(&self, now: u64) -> Admission {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Admission::Normal;
        }
        if now < until {
            return Admission::Refused {
                retry_after_ms: until - now,
            };
        }
        let started = now.max(1);
        let probe = self.probe_started.load(Ordering::Acquire);
        let free = probe == 0 || now.saturating_sub(probe) >= self.settings.tripped_ms;
        if free
            && self
                .probe_started
                .compare_exchange(probe, started, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Admission::Probe { started };
        }
        Admission::Refused {
            retry_after_ms: self.settings.tripped_ms,
        }
    }

    /// Records how an admitted request ended at `now`.
    pub fn record(&self, now: u64, admission: Admission, error: bool) -> Option<Transition> {
        match admission {
            Admission::Normal => self.record_normal(now, error),
            Admission::Probe { started } => self.finish_probe(now, started, error),
            Admission::Refused { .. } => None,
        }
    }

    /// Frees the probe slot of a probe that ended without a response (its connection was
    /// closed), so the next request probes instead.
    pub fn abandon(&self, admission: Admission) {
        if let Admission::Probe { started } = admission {
            let _ = self.probe_started.compare_exchange(
                started,
                0,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    fn record_normal(&self, now: u64, error: bool) -> Option<Transition> {
        let epoch = now / self.bucket_ms;
        let bucket = &self.buckets[(epoch % NUM_BUCKETS as u64) as usize];
        let seen = bucket.epoch.load(Ordering::Acquire);
        if seen != epoch
            && bucket
                .epoch
                .compare_exchange(seen, epoch, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            bucket.counts.store(0, Ordering::Release);
        }
        bucket
            .counts
            .fetch_add(ONE_REQUEST | u64::from(error), Ordering::AcqRel);
        if self.open_until.load(Ordering::Acquire) != 0 {
            return None;
        }
        let (requests, errors) = self.window(now);
        if !self.over_thresholds(requests, errors) {
            return None;
        }
        let until = now + self.settings.tripped_ms;
        self.open_until
            .compare_exchange(0, until, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Transition::Tripped { requests, errors })
    }

    fn finish_probe(&self, now: u64, started: u64, error: bool) -> Option<Transition> {
        if self.probe_started.load(Ordering::Acquire) != started {
            return None; // given up for a newer probe
        }
        if error {
            self.open_until
                .store(now + self.settings.tripped_ms, Ordering::Release);
            self.abandon(Admission::Probe { started });
            return Some(Transition::Retripped);
        }
        for bucket in &self.buckets {
            bucket.epoch.store(UNUSED, Ordering::Release);
            bucket.counts.store(0, Ordering::Release);
        }
        self.open_until.store(0, Ordering::Release);
        self.abandon(Admission::Probe { started });
        Some(Transition::Closed)
    }

    /// Requests and errors recorded in the window ending at `now` (its `NUM_BUCKETS` latest
    /// periods).
    fn window(&self, now: u64) -> (u64, u64) {
        let current = now / self.bucket_ms;
        let mut requests = 0;
        let mut errors = 0;
        for bucket in &self.buckets {
            let epoch = bucket.epoch.load(Ordering::Acquire);
            if epoch <= current && current - epoch < NUM_BUCKETS as u64 {
                let counts = bucket.counts.load(Ordering::Acquire);
                requests += counts >> 32;
                errors += counts & ERRORS_MASK;
            }
        }
        (requests, errors)
    }

    /// At least `volume_threshold` requests, at least one error, and an error ratio at or
    /// above `error_threshold`.
    fn over_thresholds(&self, requests: u64, errors: u64) -> bool {
        requests >= self.settings.volume_threshold
            && errors > 0
            && errors as f64 >= self.settings.error_threshold * requests as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000;

    fn breaker(error_threshold: f64, volume_threshold: u64) -> Breaker {
        Breaker::new(Settings {
            error_threshold,
            volume_threshold,
            window_ms: 10 * SECOND,
            tripped_ms: 5 * SECOND,
        })
    }

    /// Admits and records one request at `now`.
    fn request(b: &Breaker, now: u64, error: bool) -> (Admission, Option<Transition>) {
        let admission = b.admit(now);
        let transition = match admission {
            Admission::Refused { .. } => None,
            _ => b.record(now, admission, error),
        };
        (admission, transition)
    }

    #[test]
    fn trips_once_volume_and_ratio_are_reached() {
        let b = breaker(0.5, 10);
        for i in 0..5 {
            assert_eq!(request(&b, i, false), (Admission::Normal, None));
        }
        for i in 5..9 {
            assert_eq!(request(&b, i, true), (Admission::Normal, None), "{i}");
        }
        // The tenth request reaches the volume with 5 errors of 10.
        assert_eq!(
            request(&b, 9, true),
            (
                Admission::Normal,
                Some(Transition::Tripped {
                    requests: 10,
                    errors: 5
                })
            )
        );
        assert_eq!(
            b.admit(10),
            Admission::Refused {
                retry_after_ms: 5 * SECOND - 1
            }
        );
    }

    #[test]
    fn below_the_ratio_or_volume_it_stays_closed() {
        let b = breaker(0.5, 10);
        for i in 0..6 {
            request(&b, i, false);
        }
        for i in 6..10 {
            assert_eq!(request(&b, i, true).1, None, "4 of 10 is under 0.5");
        }
        let few = breaker(0.1, 100);
        for i in 0..99 {
            assert_eq!(request(&few, i, true).1, None, "99 requests < volume 100");
        }
        assert!(matches!(
            request(&few, 99, true).1,
            Some(Transition::Tripped { .. })
        ));
    }

    #[test]
    fn a_zero_threshold_still_needs_an_error() {
        let b = breaker(0.0, 2);
        for i in 0..20 {
            assert_eq!(request(&b, i, false).1, None);
        }
        assert!(matches!(
            request(&b, 20, true).1,
            Some(Transition::Tripped { .. })
        ));
    }

    #[test]
    fn outcomes_older_than_the_window_are_forgotten() {
        let b = breaker(0.5, 4);
        // Three errors in the first second ...
        for i in 0..3 {
            assert_eq!(request(&b, i * 100, true).1, None);
        }
        // ... have left the 10 s window by 10.5 s: one more error is 1 of 1, under the volume.
        assert_eq!(b.window(10_500), (0, 0));
        assert_eq!(request(&b, 10_500, true).1, None);
        assert_eq!(b.window(10_500), (1, 1));
        // Within the window they still count: 9.9 s after them, one more trips it.
        let b = breaker(0.5, 4);
        for i in 0..3 {
            request(&b, i * 100, true);
        }
        assert!(matches!(
            request(&b, 9_950, true).1,
            Some(Transition::Tripped {
                requests: 4,
                errors: 4
            })
        ));
    }

    #[test]
    fn a_recycled_bucket_starts_from_zero() {
        let b = breaker(0.9, 1_000);
        request(&b, 0, true); // period 0, bucket 0
        request(&b, 10 * SECOND, false); // period 10, bucket 0 again
        assert_eq!(b.window(10 * SECOND), (1, 0));
        // Periods 1..=9 unused, so the window from 10 s back holds only the new outcome.
        request(&b, 12 * SECOND, true);
        assert_eq!(b.window(12 * SECOND), (2, 1));
        assert_eq!(b.window(25 * SECOND), (0, 0));
    }

    fn tripped() -> Breaker {
        let b = breaker(0.5, 2);
        request(&b, 0, true);
        assert!(matches!(
            request(&b, 1, true).1,
            Some(Transition::Tripped { .. })
        ));
        b
    }

    #[test]
    fn half_open_lets_one_probe_through_and_success_closes() {
        let b = tripped();
        assert!(matches!(
            b.admit(5 * SECOND),
            Admission::Refused { retry_after_ms: 1 }
        ));
        let probe = b.admit(5 * SECOND + 1);
        assert_eq!(
            probe,
            Admission::Probe {
                started: 5 * SECOND + 1
            }
        );
        // While the probe is under way everyone else is refused.
        assert!(matches!(b.admit(5 * SECOND + 2), Admission::Refused { .. }));
        assert_eq!(
            b.record(5 * SECOND + 3, probe, false),
            Some(Transition::Closed)
        );
        assert_eq!(b.admit(5 * SECOND + 4), Admission::Normal);
        // The window starts empty: the two old errors do not re-trip it.
        assert_eq!(request(&b, 5 * SECOND + 5, true).1, None);
        assert_eq!(b.window(5 * SECOND + 5), (1, 1));
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let b = tripped();
        let probe = b.admit(6 * SECOND);
        assert!(matches!(probe, Admission::Probe { .. }));
        assert_eq!(
            b.record(6 * SECOND, probe, true),
            Some(Transition::Retripped)
        );
        assert_eq!(
            b.admit(6 * SECOND + 1),
            Admission::Refused {
                retry_after_ms: 5 * SECOND - 1
            }
        );
        assert!(matches!(b.admit(11 * SECOND), Admission::Probe { .. }));
    }

    #[test]
    fn an_abandoned_probe_frees_the_slot() {
        let b = tripped();
        let probe = b.admit(6 * SECOND);
        b.abandon(probe);
        let next = b.admit(6 * SECOND + 10);
        assert_eq!(
            next,
            Admission::Probe {
                started: 6 * SECOND + 10
            }
        );
    }

    #[test]
    fn a_hung_probe_is_replaced_after_the_tripped_duration() {
        let b = tripped();
        let hung = b.admit(6 * SECOND);
        assert!(matches!(b.admit(10 * SECOND), Admission::Refused { .. }));
        let fresh = b.admit(11 * SECOND);
        assert_eq!(
            fresh,
            Admission::Probe {
                started: 11 * SECOND
            }
        );
        // The hung one finishing late changes nothing; the fresh one decides.
        assert_eq!(b.record(11 * SECOND + 1, hung, false), None);
        assert!(matches!(
            b.admit(11 * SECOND + 2),
            Admission::Refused { .. }
        ));
        assert_eq!(
            b.record(11 * SECOND + 3, fresh, false),
            Some(Transition::Closed)
        );
    }

    #[test]
    fn requests_admitted_before_the_trip_do_not_trip_it_twice() {
        let b = tripped();
        assert_eq!(b.record(2, Admission::Normal, true), None);
    }
}
