//! Slow-provider demotion. A provider whose last attempt got no HTTP answer (it failed to connect,
//! dropped the connection or ran out its `per_request_timeout`) is tried **after** the healthy
//! ones for a cooldown; once the cooldown has passed, one request at a time (the probe) tries it
//! in its configured place again. An answer, whatever its status, clears the demotion; a probe
//! that gets none restarts the cooldown, doubled for each failed probe in a row (at most 8×).
//!
//! HTTP errors do not count: failover already moves past them and a provider that answers
//! quickly costs little. The mock provider is never tracked.
//!
//! One [`HealthTracker`] holds a state word per provider (its id and base URL) for the whole
//! process, so policy reloads keep it. Reading it on the request path costs one atomic load
//! while every provider is healthy; otherwise a short sharded critical section finds each
//! provider's word, and every transition is a compare-and-swap on that word.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use keygate_ai::{Candidate, Provider};

use crate::trace::AttemptEnd;

/// Low 40 bits of a state word: until when (ms since the tracker's epoch) the provider is
/// demoted. 2^40 ms is about 34 years.
const UNTIL_MASK: u64 = (1 << 40) - 1;
/// Bits 40-47: failures in a row (the initial one, then each failed probe), for the backoff.
const STRIKES_SHIFT: u32 = 40;
const STRIKES_MASK: u64 = 0xff << STRIKES_SHIFT;
/// Bit 63: a probe is in flight. While it is set only the probe's request changes the word.
const PROBING: u64 = 1 << 63;
/// The cooldown doubles per failed probe up to `cooldown << MAX_BACKOFF_SHIFT`.
const MAX_BACKOFF_SHIFT: u64 = 3;
const SHARDS: usize = 8;

/// How a runtime uses the tracker: which one, and the cooldown after a failure.
#[derive(Debug, Clone, Copy)]
pub struct Health {
    pub tracker: &'static HealthTracker,
    /// How long a provider that got no answer is tried after the healthy ones (before backoff).
    pub cooldown: Duration,
}

/// Where a provider stands for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    Healthy,
    /// Tried after the healthy providers.
    Demoted,
    /// Demoted, its cooldown over, and this request holds the probe: tried in its place.
    Probe,
}

/// What an attempt says about its provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// An HTTP answer, whatever its status.
    Answered,
    /// No answer: transport failure, or the whole `per_request_timeout` went by.
    Failed,
}

impl Signal {
    /// The health signal of an attempt that ended with `end`; `full_budget` says whether it had
    /// the whole `per_request_timeout` (a timeout cut short by `total_timeout` proves nothing).
    pub(crate) fn of(end: &AttemptEnd, full_budget: bool) -> Option<Signal> {
        match end {
            AttemptEnd::Success | AttemptEnd::Status(_) => Some(Signal::Answered),
            AttemptEnd::Transport(_) => Some(Signal::Failed),
            AttemptEnd::Timeout if full_budget => Some(Signal::Failed),
            AttemptEnd::Timeout | AttemptEnd::NoKey => None,
        }
    }
}

/// A state change worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    None,
    /// Healthy → demoted for this long.
    Demoted(Duration),
    /// The probe failed: demoted again for this long.
    ProbeFailed(Duration),
    /// Demoted → healthy.
    Recovered,
}

/// One provider's state word: 0 when healthy.
#[derive(Debug, Default)]
pub(crate) struct Slot(AtomicU64);

/// A provider's slot with its key: (provider id, base URL).
type Keyed = (Box<str>, Box<str>, Arc<Slot>);

#[derive(Debug)]
enum Clock {
    Monotonic(Instant),
    #[cfg(test)]
    Manual(AtomicU64),
}

/// The health of every provider seen, by (provider id, base URL).
#[derive(Debug)]
pub struct HealthTracker {
    clock: Clock,
    shards: [Mutex<Vec<Keyed>>; SHARDS],
    /// Slots whose word is not 0: while none is, requests skip the tracker.
    unhealthy: AtomicUsize,
}

impl Default for HealthTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthTracker {
    /// An empty tracker on the monotonic clock.
    pub fn new() -> Self {
        Self::with_clock(Clock::Monotonic(Instant::now()))
    }

    /// An empty tracker whose clock only moves with [`HealthTracker::advance`].
    #[cfg(test)]
    pub(crate) fn manual() -> Self {
        Self::with_clock(Clock::Manual(AtomicU64::new(1)))
    }

    #[cfg(test)]
    pub(crate) fn advance(&self, by: Duration) {
        if let Clock::Manual(ms) = &self.clock {
            ms.fetch_add(millis(by), Ordering::Relaxed);
        }
    }

    fn with_clock(clock: Clock) -> Self {
        Self {
            clock,
            shards: Default::default(),
            unhealthy: AtomicUsize::new(0),
        }
    }

    /// Milliseconds since the tracker's epoch.
    pub fn now(&self) -> u64 {
        match &self.clock {
            Clock::Monotonic(epoch) => millis(epoch.elapsed()),
            #[cfg(test)]
            Clock::Manual(ms) => ms.load(Ordering::Relaxed),
        }
    }

    /// Providers currently demoted (or being probed).
    pub fn unhealthy(&self) -> usize {
        self.unhealthy.load(Ordering::Relaxed)
    }

    /// The state of `provider` at `base_url`, created healthy on first use.
    pub(crate) fn slot(&self, provider: &str, base_url: &str) -> Arc<Slot> {
        let mut hasher = DefaultHasher::new();
        (provider, base_url).hash(&mut hasher);
        let shard = &self.shards[(hasher.finish() % SHARDS as u64) as usize];
        let mut entries = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, _, slot)) = entries
            .iter()
            .find(|(p, u, _)| **p == *provider && **u == *base_url)
        {
            return slot.clone();
        }
        let slot = Arc::new(Slot::default());
        entries.push((provider.into(), base_url.into(), slot.clone()));
        slot
    }

    /// Where the provider of `slot` stands at `now`; claims the probe when its cooldown is over
    /// and no probe is in flight (the caller then owes [`HealthTracker::answered`],
    /// [`HealthTracker::failed`] or [`HealthTracker::release`] with `probe: true`).
    pub(crate) fn standing(&self, slot: &Slot, now: u64) -> Standing {
        let mut word = slot.0.load(Ordering::Acquire);
        loop {
            if word == 0 {
                return Standing::Healthy;
            }
            if word & PROBING != 0 || now < word & UNTIL_MASK {
                return Standing::Demoted;
            }
            match slot.0.compare_exchange_weak(
                word,
                word | PROBING,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Standing::Probe,
                Err(actual) => word = actual,
            }
        }
    }

    /// An attempt got no answer at `now`. Healthy: demoted for `cooldown`. The probe: demoted
    /// again, the cooldown doubled per failed probe in a row. Another request while demoted: the
    /// current cooldown restarts from `now` (no further backoff step); while a probe is in
    /// flight: ignored (the probe decides).
    pub(crate) fn failed(&self, slot: &Slot, now: u64, cooldown: Duration, probe: bool) -> Change {
        let cooldown = millis(cooldown).max(1);
        let mut word = slot.0.load(Ordering::Acquire);
        loop {
            let strikes = (word & STRIKES_MASK) >> STRIKES_SHIFT;
            let (new, change) = if word == 0 {
                (
                    state(now.saturating_add(cooldown), 1),
                    Change::Demoted(duration(cooldown)),
                )
            } else if probe {
                let strikes = (strikes + 1).min(0xff);
                let wait = backoff(cooldown, strikes);
                (
                    state(now.saturating_add(wait), strikes),
                    Change::ProbeFailed(duration(wait)),
                )
            } else if word & PROBING != 0 {
                return Change::None;
            } else {
                let until = (word & UNTIL_MASK).max(now.saturating_add(backoff(cooldown, strikes)));
                (state(until, strikes), Change::None)
            };
            match slot
                .0
                .compare_exchange_weak(word, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    if word == 0 {
                        self.unhealthy.fetch_add(1, Ordering::Relaxed);
                    }
                    return change;
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// An attempt got an answer: the demotion ends, unless a probe is in flight and this is not
    /// it (the probe decides).
    pub(crate) fn answered(&self, slot: &Slot, probe: bool) -> Change {
        let mut word = slot.0.load(Ordering::Acquire);
        loop {
            if word == 0 || (word & PROBING != 0 && !probe) {
                return Change::None;
            }
            match slot
                .0
                .compare_exchange_weak(word, 0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    self.unhealthy.fetch_sub(1, Ordering::Relaxed);
                    return Change::Recovered;
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// The probe ended without an outcome (its request never reached the provider, or was
    /// dropped): the next request may probe.
    pub(crate) fn release(&self, slot: &Slot) {
        slot.0.fetch_and(!PROBING, Ordering::AcqRel);
    }
}

/// A demoted state word: until `until` (ms), `strikes` failures in a row, no probe.
fn state(until: u64, strikes: u64) -> u64 {
    until.min(UNTIL_MASK) | (strikes.clamp(1, 0xff) << STRIKES_SHIFT)
}

fn backoff(cooldown_ms: u64, strikes: u64) -> u64 {
    cooldown_ms.saturating_mul(1 << strikes.saturating_sub(1).min(MAX_BACKOFF_SHIFT))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn duration(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// A provider as one call sees it.
struct Tracked<'c> {
    provider: &'c Provider,
    slot: Arc<Slot>,
    standing: Standing,
}

/// One call's use of the tracker: the order its candidates are tried in, and the probes it
/// holds (released on drop if no attempt decided them).
pub(crate) struct CallHealth<'c> {
    health: Health,
    /// Candidate indices in the order they are tried; empty: the given order.
    order: Vec<usize>,
    tracked: Vec<Tracked<'c>>,
}

impl<'c> CallHealth<'c> {
    /// Orders `candidates`: healthy ones (and those this call probes) in their order, then the
    /// demoted ones in their order. Costs one atomic load while every provider is healthy.
    pub(crate) fn begin(health: Health, candidates: &'c [Candidate]) -> Self {
        let mut call = CallHealth {
            health,
            order: Vec::new(),
            tracked: Vec::new(),
        };
        let tracker = health.tracker;
        if tracker.unhealthy() == 0 {
            return call;
        }
        let now = tracker.now();
        let mut demoted = Vec::new();
        for (index, candidate) in candidates.iter().enumerate() {
            let provider = &*candidate.provider;
            if provider.is_mock() {
                continue;
            }
            let standing = match call.find(provider) {
                Some(tracked) => tracked.standing,
                None => {
                    let slot = tracker.slot(&provider.id, &provider.base_url);
                    let standing = tracker.standing(&slot, now);
                    call.tracked.push(Tracked {
                        provider,
                        slot,
                        standing,
                    });
                    standing
                }
            };
            if standing == Standing::Demoted {
                demoted.push(index);
            }
        }
        if !demoted.is_empty() {
            let mut order: Vec<usize> = (0..candidates.len())
                .filter(|i| !demoted.contains(i))
                .collect();
            order.extend(demoted);
            call.order = order;
        }
        call
    }

    /// The index of the candidate tried at `position`.
    pub(crate) fn index(&self, position: usize) -> usize {
        self.order.get(position).copied().unwrap_or(position)
    }

    fn find(&mut self, provider: &Provider) -> Option<&mut Tracked<'c>> {
        self.tracked
            .iter_mut()
            .find(|t| t.provider.id == provider.id && t.provider.base_url == provider.base_url)
    }

    /// Records what an attempt on `candidate` says about its provider.
    pub(crate) fn record(&mut self, candidate: &Candidate, end: &AttemptEnd, full_budget: bool) {
        let provider = &*candidate.provider;
        let Some(signal) = Signal::of(end, full_budget) else {
            return;
        };
        let Health { tracker, cooldown } = self.health;
        // Nothing to clear: the common case costs one atomic load.
        if provider.is_mock() || (signal == Signal::Answered && tracker.unhealthy() == 0) {
            return;
        }
        let (slot, probe) = match self.find(provider) {
            Some(tracked) => {
                let probe = tracked.standing == Standing::Probe;
                if probe {
                    tracked.standing = Standing::Healthy;
                }
                (tracked.slot.clone(), probe)
            }
            None => (tracker.slot(&provider.id, &provider.base_url), false),
        };
        let change = match signal {
            Signal::Answered => tracker.answered(&slot, probe),
            Signal::Failed => tracker.failed(&slot, tracker.now(), cooldown, probe),
        };
        log(provider, end, change);
    }
}

impl Drop for CallHealth<'_> {
    fn drop(&mut self) {
        for tracked in &self.tracked {
            if tracked.standing == Standing::Probe {
                self.health.tracker.release(&tracked.slot);
            }
        }
    }
}

fn log(provider: &Provider, end: &AttemptEnd, change: Change) {
    // The base URL without its query: a configured query parameter may hold a secret.
    let base_url = provider.base_url.split('?').next().unwrap_or_default();
    let reason = match end {
        AttemptEnd::Transport(err) => err.as_str(),
        AttemptEnd::Timeout => "per-request timeout",
        _ => "",
    };
    match change {
        Change::None => {}
        Change::Demoted(cooldown) => tracing::warn!(
            provider = %provider.id,
            base_url,
            reason,
            cooldown_ms = millis(cooldown),
            "ai-gateway: provider '{}' did not answer; tried after the healthy providers for {} ms",
            provider.id,
            millis(cooldown)
        ),
        Change::ProbeFailed(cooldown) => tracing::warn!(
            provider = %provider.id,
            base_url,
            reason,
            cooldown_ms = millis(cooldown),
            "ai-gateway: provider '{}' still does not answer; tried after the healthy providers for {} ms",
            provider.id,
            millis(cooldown)
        ),
        Change::Recovered => tracing::info!(
            provider = %provider.id,
            base_url,
            "ai-gateway: provider '{}' answers again; back in its configured place",
            provider.id
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Duration = Duration::from_secs(30);

    fn tracker() -> &'static HealthTracker {
        Box::leak(Box::new(HealthTracker::manual()))
    }

    fn timeout() -> AttemptEnd {
        AttemptEnd::Timeout
    }

    #[test]
    fn only_missing_answers_are_failures() {
        assert_eq!(Signal::of(&timeout(), true), Some(Signal::Failed));
        assert_eq!(
            Signal::of(&AttemptEnd::Transport("connection refused".into()), true),
            Some(Signal::Failed)
        );
        // A timeout cut short by total_timeout says nothing about the provider.
        assert_eq!(Signal::of(&timeout(), false), None);
        assert_eq!(Signal::of(&AttemptEnd::NoKey, true), None);
        for code in [500, 503, 429, 404, 400] {
            assert_eq!(
                Signal::of(&AttemptEnd::Status(code), true),
                Some(Signal::Answered),
                "{code}"
            );
        }
        assert_eq!(
            Signal::of(&AttemptEnd::Success, true),
            Some(Signal::Answered)
        );
    }

    #[test]
    fn a_failure_demotes_for_the_cooldown_then_one_probe_goes_through() {
        let t = tracker();
        let slot = t.slot("vllm", "http://10.0.0.1:8000/v1");
        assert_eq!(t.standing(&slot, t.now()), Standing::Healthy);
        assert_eq!(t.answered(&slot, false), Change::None, "nothing to clear");
        assert_eq!(t.unhealthy(), 0);

        assert_eq!(
            t.failed(&slot, t.now(), COOLDOWN, false),
            Change::Demoted(COOLDOWN)
        );
        assert_eq!(t.unhealthy(), 1);
        assert!(Arc::ptr_eq(
            &slot,
            &t.slot("vllm", "http://10.0.0.1:8000/v1")
        ));
        assert_eq!(
            t.standing(&t.slot("vllm", "http://10.0.0.2:8000/v1"), t.now()),
            Standing::Healthy,
            "keyed by base URL too"
        );
        assert_eq!(t.standing(&slot, t.now()), Standing::Demoted);
        t.advance(COOLDOWN - Duration::from_millis(1));
        assert_eq!(t.standing(&slot, t.now()), Standing::Demoted);
        t.advance(Duration::from_millis(1));
        assert_eq!(t.standing(&slot, t.now()), Standing::Probe);
        // Only one probe at a time: every other request keeps it demoted.
        for _ in 0..3 {
            assert_eq!(t.standing(&slot, t.now()), Standing::Demoted);
        }
        t.advance(Duration::from_secs(3600));
        assert_eq!(t.standing(&slot, t.now()), Standing::Demoted);
        // The probe answers (a 5xx is an answer too): healthy again.
        assert_eq!(t.answered(&slot, true), Change::Recovered);
        assert_eq!(t.standing(&slot, t.now()), Standing::Healthy);
        assert_eq!(t.unhealthy(), 0);
    }

    #[test]
    fn a_failed_probe_restarts_the_cooldown_with_backoff() {
        let t = tracker();
        let slot = t.slot("ollama", "http://127.0.0.1:11434");
        t.failed(&slot, t.now(), COOLDOWN, false);
        for factor in [2, 4, 8, 8] {
            t.advance(COOLDOWN * 8);
            assert_eq!(t.standing(&slot, t.now()), Standing::Probe);
            assert_eq!(
                t.failed(&slot, t.now(), COOLDOWN, true),
                Change::ProbeFailed(COOLDOWN * factor)
            );
            t.advance(COOLDOWN * factor - Duration::from_millis(1));
            assert_eq!(t.standing(&slot, t.now()), Standing::Demoted);
            t.advance(Duration::from_millis(1));
            assert_eq!(t.standing(&slot, t.now()), Standing::Probe);
            t.release(&slot);
        }
        assert_eq!(t.unhealthy(), 1);
        assert_eq!(t.standing(&slot, t.now()), Standing::Probe);
        assert_eq!(t.answered(&slot, true), Change::Recovered);
        // A later failure starts again from the base cooldown.
        assert_eq!(
            t.failed(&slot, t.now(), COOLDOWN, false),
            Change::Demoted(COOLDOWN)
        );
    }

    #[test]
    fn only_the_probe_decides_while_it_is_in_flight() {
        let t = tracker();
        let slot = t.slot("vllm", "http://vllm:8000/v1");
        t.failed(&slot, t.now(), COOLDOWN, false);
        t.advance(COOLDOWN);
        assert_eq!(t.standing(&slot, t.now()), Standing::Probe);
        // Requests that reached it anyway (every provider was demoted) change nothing now.
        assert_eq!(t.answered(&slot, false), Change::None);
        assert_eq!(t.failed(&slot, t.now(), COOLDOWN, false), Change::None);
        assert_eq!(t.standing(&slot, t.now()), Standing::Demoted);
        // A probe whose request never reached the provider lets the next request probe.
        t.release(&slot);
        assert_eq!(t.standing(&slot, t.now()), Standing::Probe);
        assert_eq!(
            t.failed(&slot, t.now(), COOLDOWN, true),
            Change::ProbeFailed(COOLDOWN * 2)
        );
        // Without a probe in flight, any answer clears the demotion, and another failure only
        // restarts the cooldown.
        t.advance(COOLDOWN);
        assert_eq!(t.failed(&slot, t.now(), COOLDOWN, false), Change::None);
        t.advance(COOLDOWN * 2 - Duration::from_millis(1));
        assert_eq!(t.standing(&slot, t.now()), Standing::Demoted);
        assert_eq!(t.answered(&slot, false), Change::Recovered);
        assert_eq!(t.unhealthy(), 0);
    }

    #[test]
    fn probes_race_on_one_word() {
        let t = tracker();
        let slot = t.slot("vllm", "http://vllm:8000/v1");
        t.failed(&slot, t.now(), COOLDOWN, false);
        t.advance(COOLDOWN);
        let probes: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| (t.standing(&slot, t.now()) == Standing::Probe) as usize))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(probes, 1);
    }
}
