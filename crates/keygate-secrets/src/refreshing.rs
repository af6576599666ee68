//! [`Refreshing`]: a value rebuilt from the store whenever the store's generation changes. Reads are a
//! lock-free `arc-swap` load; a background thread polls the generation, so a write made by any process on
//! the same data directory reaches every reader within one poll interval plus a reload.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};

use crate::error::{Result, StoreError};
use crate::periodic::Periodic;
use crate::store::Store;

/// A value [`Refreshing`] can keep current: a whole view of some tables, read at one generation.
pub trait Reload: Sized + Send + Sync + 'static {
    /// What the value holds, in log lines and the watcher thread's name (`keygate-NAME-watch`).
    const NAME: &'static str;
    /// Reads the whole value, in one transaction ([`Store::read`]) so it matches its generation.
    fn load(store: &Store) -> Result<Self>;
    /// The store generation the value was read at.
    fn generation(&self) -> u64;
    /// How many entries it holds, for log lines.
    fn entries(&self) -> usize;
}

/// State shared between the handle and its watcher thread.
struct Shared<T> {
    current: ArcSwap<T>,
    /// How many checks the watcher has begun and finished, for [`Refreshing::refresh`].
    checks: Mutex<Checks>,
    checked: Condvar,
}

#[derive(Default)]
struct Checks {
    begun: u64,
    finished: u64,
}

/// How long [`Refreshing::refresh`] waits for the watcher at most.
const REFRESH_WAIT: Duration = Duration::from_secs(2);

/// A self-refreshing `T`. Dropping it stops the watcher thread.
pub struct Refreshing<T: Reload> {
    shared: Arc<Shared<T>>,
    watcher: Periodic,
}

impl<T: Reload> Refreshing<T> {
    /// Loads the first value from `store` (so a wrong key or broken database fails here, at startup), then
    /// starts a thread that checks the generation every `poll_interval` and reloads when it changed. A failed
    /// reload keeps the previous value and is logged once per streak of failures.
    pub fn start(store: Store, poll_interval: Duration) -> Result<Self> {
        let shared = Arc::new(Shared {
            current: ArcSwap::from_pointee(T::load(&store)?),
            checks: Mutex::new(Checks::default()),
            checked: Condvar::new(),
        });
        let watched = Arc::clone(&shared);
        let dir = store.data_dir().to_path_buf();
        let mut failing = false;
        let watcher = Periodic::spawn(
            &format!("keygate-{}-watch", T::NAME),
            poll_interval,
            move |stopping| {
                if !stopping {
                    watched.check(&store, &mut failing);
                }
            },
        )
        .map_err(|e| StoreError::io("cannot start the watcher thread for", dir, e))?;
        Ok(Self { shared, watcher })
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
        let checks = lock(&self.shared.checks);
        let target = checks.begun + 1;
        self.watcher.wake();
        let _ = self
            .shared
            .checked
            .wait_timeout_while(checks, REFRESH_WAIT, |checks| checks.finished < target);
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
    /// One check, counted for [`Refreshing::refresh`].
    fn check(&self, store: &Store, failing: &mut bool) {
        lock(&self.checks).begun += 1;
        self.reload_if_changed(store, failing);
        let mut checks = lock(&self.checks);
        checks.finished = checks.begun;
        self.checked.notify_all();
    }

    /// Reloads when the store's generation differs from the current value's.
    fn reload_if_changed(&self, store: &Store, failing: &mut bool) {
        let seen = self.current.load().generation();
        let refreshed = store.generation().and_then(|generation| {
            if generation == seen {
                Ok(None)
            } else {
                T::load(store).map(Some)
            }
        });
        match refreshed {
            Ok(Some(value)) => {
                tracing::info!(
                    generation = value.generation(),
                    entries = value.entries(),
                    "{} reloaded",
                    T::NAME
                );
                self.current.store(Arc::new(value));
                *failing = false;
            }
            Ok(None) => *failing = false,
            Err(err) if !*failing => {
                tracing::error!(error = %err, "{0} reload failed; keeping the previous {0}", T::NAME);
                *failing = true;
            }
            Err(_) => {}
        }
    }
}
