//! [`Refreshing`]: a value rebuilt from the store whenever its component's generation changes. Reads are a
//! lock-free `arc-swap` load. A background thread reloads when the store's change feed reports a newer
//! generation (a write by any process or instance: at once on PostgreSQL, within the feed's poll on
//! SQLite), and retries a failed reload every poll interval. A lookup that misses can ask for a re-read
//! before it fails ([`Refreshing::reread_after_miss`]), which asks the database itself.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Guard};
use tokio::sync::watch;

use crate::error::{Result, StoreError};
use crate::periodic::Periodic;
use crate::store::Store;

/// A value [`Refreshing`] can keep current: a whole view of some tables, read at one generation.
pub trait Reload: Sized + Send + Sync + 'static {
    /// The store component the value is read from: its generation says when to reload. Also names the
    /// value in log lines and the watcher thread (`keygate-COMPONENT-watch`).
    const COMPONENT: &'static str;
    /// Reads the whole value, in one transaction ([`Store::read`]) so it matches its generation.
    fn load(store: &Store) -> Result<Self>;
    /// The component generation the value was read at.
    fn generation(&self) -> u64;
    /// How many entries it holds, for log lines.
    fn entries(&self) -> usize;
}

/// State shared between the handle and its watcher thread.
struct Shared<T> {
    current: ArcSwap<T>,
    /// The checks the watcher has begun and finished, for [`Refreshing::refresh`] and misses.
    checks: Mutex<Checks>,
    checked: Condvar,
    /// The newest generation the change feed reported (no database access to read).
    announced: watch::Receiver<u64>,
}

#[derive(Default)]
struct Checks {
    begun: u64,
    finished: u64,
    /// Whether the next check must ask the database rather than trust the feed (a refresh or a miss).
    ask_database: bool,
    /// The check the last re-read for a miss waits for; later misses join it while it is pending.
    requested: u64,
    /// The newest announced generation a miss has asked a re-read for (once each, so a reload that keeps
    /// failing does not turn every miss into a database read).
    reread_for: u64,
    /// When a miss last asked for a re-read on its own account.
    last_miss_reread: Option<Instant>,
}

/// How long [`Refreshing::refresh`] waits for the watcher at most.
const REFRESH_WAIT: Duration = Duration::from_secs(2);
/// Lookups that miss ask for at most one re-read per this interval (besides one for each newly announced
/// write), so a policy reading an absent entry on every request cannot hammer the database.
pub const MISS_REREAD_INTERVAL: Duration = Duration::from_millis(250);
/// How long a missed lookup waits for its re-read at most.
const MISS_WAIT: Duration = Duration::from_millis(500);

/// A self-refreshing `T`. Dropping it stops the watcher thread.
pub struct Refreshing<T: Reload> {
    shared: Arc<Shared<T>>,
    /// Declared before `store`: the thread using it stops first.
    watcher: Periodic,
    store: Arc<Store>,
}

impl<T: Reload> Refreshing<T> {
    /// The generation the feed or the database's change marker reported (no database access), when newer
    /// than the current value's. The marker knows a write by another process before the feed has read it.
    fn newer_announced(&self) -> Option<u64> {
        let current = self.current().generation();
        let fed = *self.shared.announced.borrow();
        let marked = self.store.database().announced(T::COMPONENT).unwrap_or(0);
        Some(fed.max(marked)).filter(|&generation| generation > current)
    }

    /// Loads the first value from `store` (so a wrong key or broken database fails here, at startup), then
    /// starts a thread that reloads whenever the store's change feed reports a newer generation of
    /// `T::COMPONENT`. Every `poll_interval` the thread also compares the feed with the value, so a failed
    /// reload is retried; it keeps the previous value meanwhile and is logged once per streak of failures.
    pub fn start(store: Store, poll_interval: Duration) -> Result<Self> {
        let announced = store.database().subscribe(T::COMPONENT)?;
        let shared = Arc::new(Shared {
            current: ArcSwap::from_pointee(T::load(&store)?),
            checks: Mutex::new(Checks::default()),
            checked: Condvar::new(),
            announced,
        });
        let store = Arc::new(store);
        let watched = Arc::clone(&shared);
        let reader = Arc::clone(&store);
        let mut failing = false;
        let watcher = Periodic::spawn(
            &format!("keygate-{}-watch", T::COMPONENT),
            poll_interval,
            move |stopping| {
                if !stopping {
                    watched.check(&reader, &mut failing);
                }
            },
        )
        .map_err(|e| StoreError::io("cannot start the watcher thread for", store.data_dir(), e))?;
        if let Some(thread) = watcher.thread() {
            store.database().wake_on_change(T::COMPONENT, thread)?;
        }
        Ok(Self {
            shared,
            watcher,
            store,
        })
    }

    /// The current value, without taking a reference count (for a short lookup).
    pub fn current(&self) -> Guard<Arc<T>> {
        self.shared.current.load()
    }

    /// The current value, to keep.
    pub fn current_full(&self) -> Arc<T> {
        self.shared.current.load_full()
    }

    /// Wakes the watcher and waits (at most 2 s) until a check that began after this call has finished, so a
    /// write made before the call is visible after it.
    pub fn refresh(&self) {
        let mut checks = lock(&self.shared.checks);
        let target = checks.begun + 1;
        checks.ask_database = true;
        self.watcher.wake();
        let _ = self
            .shared
            .checked
            .wait_timeout_while(checks, REFRESH_WAIT, |checks| checks.finished < target);
    }

    /// Called when a lookup missed, before failing it: waits (at most 500 ms) for a re-read when the store
    /// may hold something newer, and returns whether it did, so the caller looks again. Concurrent misses
    /// share one re-read (the one the first of them asked for). A re-read is asked for once for each
    /// generation the feed reported that is newer than the value's (a reload not done yet), or else at most
    /// once per [`MISS_REREAD_INTERVAL`] (a write on another instance the feed has not reported yet);
    /// otherwise the miss fails at once.
    pub fn reread_after_miss(&self) -> bool {
        let announced = self.newer_announced();
        let mut checks = lock(&self.shared.checks);
        let target = if checks.requested > checks.finished {
            checks.requested
        } else if checks.miss_warrants_reread(Instant::now(), announced) {
            // A check already running may have read the generation before the write this miss is
            // after: ask for the next one.
            checks.requested = checks.begun + 1;
            checks.ask_database = true;
            self.watcher.wake();
            checks.requested
        } else {
            return false;
        };
        let (_checks, wait) = self
            .shared
            .checked
            .wait_timeout_while(checks, MISS_WAIT, |checks| checks.finished < target)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        !wait.timed_out()
    }
}

impl Checks {
    /// Whether a lookup that missed at `now` warrants a re-read: the first time a newer generation is
    /// `announced`, else once per [`MISS_REREAD_INTERVAL`].
    fn miss_warrants_reread(&mut self, now: Instant, announced: Option<u64>) -> bool {
        if let Some(generation) = announced.filter(|&g| g > self.reread_for) {
            self.reread_for = generation;
            return true;
        }
        let due = self
            .last_miss_reread
            .is_none_or(|at| now.saturating_duration_since(at) >= MISS_REREAD_INTERVAL);
        if due {
            self.last_miss_reread = Some(now);
        }
        due
    }
}

impl<T: Reload + std::fmt::Debug> std::fmt::Debug for Refreshing<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.shared.current.load().fmt(f)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<T: Reload> Shared<T> {
    /// One check, counted for [`Refreshing::refresh`] and misses.
    fn check(&self, store: &Store, failing: &mut bool) {
        let ask_database = {
            let mut checks = lock(&self.checks);
            checks.begun += 1;
            std::mem::take(&mut checks.ask_database)
        };
        self.reload_if_changed(store, ask_database, failing);
        let mut checks = lock(&self.checks);
        checks.finished = checks.begun;
        self.checked.notify_all();
    }

    /// Reloads when the feed reports a newer generation than the current value's, or, when
    /// `ask_database`, when the database's generation differs from it.
    fn reload_if_changed(&self, store: &Store, ask_database: bool, failing: &mut bool) {
        let seen = self.current.load().generation();
        let changed = if ask_database {
            store
                .generation(T::COMPONENT)
                .map(|generation| generation != seen)
        } else {
            Ok(*self.announced.borrow() > seen)
        };
        let refreshed = changed.and_then(|changed| changed.then(|| T::load(store)).transpose());
        match refreshed {
            Ok(Some(value)) => {
                tracing::info!(
                    generation = value.generation(),
                    entries = value.entries(),
                    "{} reloaded",
                    T::COMPONENT
                );
                self.current.store(Arc::new(value));
                *failing = false;
            }
            Ok(None) => *failing = false,
            Err(err) if !*failing => {
                tracing::error!(error = %err, "{0} reload failed; keeping the previous {0}", T::COMPONENT);
                *failing = true;
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use super::*;
    use crate::snapshot::Snapshot;
    use crate::test_support::{inline_key, TempDir};

    #[test]
    fn misses_reread_when_a_newer_generation_was_announced_else_once_per_interval() {
        let mut checks = Checks::default();
        let t0 = Instant::now();
        assert!(checks.miss_warrants_reread(t0, None), "the first miss");
        let soon = t0 + MISS_REREAD_INTERVAL - Duration::from_millis(1);
        assert!(!checks.miss_warrants_reread(soon, None));
        // A write the cache has not loaded yet is worth a re-read at any time, once, without using
        // up the allowance.
        assert!(checks.miss_warrants_reread(soon, Some(7)));
        assert!(
            !checks.miss_warrants_reread(soon, Some(7)),
            "still not loaded (a failing reload): rate-limited like any miss"
        );
        assert!(checks.miss_warrants_reread(soon, Some(8)));
        assert!(!checks.miss_warrants_reread(soon, None));
        assert!(checks.miss_warrants_reread(t0 + MISS_REREAD_INTERVAL, Some(8)));
        assert!(!checks.miss_warrants_reread(t0 + MISS_REREAD_INTERVAL, None));
    }

    #[test]
    fn concurrent_misses_share_rereads() {
        let dir = TempDir::new("miss-coalesce");
        let store = Store::open_unlocked(dir.path(), &inline_key(4)).unwrap();
        // No poll during the test: every check comes from a miss.
        let cache =
            Arc::new(Refreshing::<Snapshot>::start(store, Duration::from_secs(3600)).unwrap());
        let start = Instant::now();
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let cache = Arc::clone(&cache);
                thread::spawn(move || (0..50).filter(|_| cache.reread_after_miss()).count())
            })
            .collect();
        let reread: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        let elapsed = start.elapsed();
        let begun = lock(&cache.shared.checks).begun;
        // One re-read per interval begun (the first at once), however many misses.
        let allowed = 1 + (elapsed.as_millis() / MISS_REREAD_INTERVAL.as_millis()) as u64;
        assert!(
            begun >= 1 && begun <= allowed,
            "{begun} checks in {elapsed:?}"
        );
        assert!(
            reread >= 1,
            "the misses that waited were told to look again"
        );
    }
}
