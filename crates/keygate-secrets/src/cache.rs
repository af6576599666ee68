//! [`CachedSecrets`]: the gateway's [`SecretSource`]. Lookups read an in-memory [`Snapshot`] through
//! `arc-swap` (no lock); a background thread polls the store's generation and swaps in a fresh snapshot when
//! anything changed, so `keygate api secrets ...` reaches a running gateway within one poll interval plus a
//! reload.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use arc_swap::ArcSwap;
use keygate_cel::{SecretError, SecretSource};
use secrecy::SecretString;

use crate::error::{Result, StoreError};
use crate::snapshot::Snapshot;
use crate::store::Store;

/// State shared between the cache handle and its watcher thread.
struct Shared {
    current: ArcSwap<Snapshot>,
    stop: AtomicBool,
    /// How many checks the watcher has begun and finished, for [`SecretSource::refresh`].
    checks: Mutex<Checks>,
    checked: Condvar,
}

#[derive(Default)]
struct Checks {
    begun: u64,
    finished: u64,
}

/// How long [`SecretSource::refresh`] waits for the watcher at most.
const REFRESH_WAIT: Duration = Duration::from_secs(2);

/// A cached, self-refreshing view of every secret. Dropping it stops the watcher thread.
pub struct CachedSecrets {
    shared: Arc<Shared>,
    watcher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for CachedSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedSecrets")
            .field("snapshot", &*self.shared.current.load())
            .finish()
    }
}

impl CachedSecrets {
    /// Poll interval used by the gateway.
    pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);

    /// Loads the first snapshot from an unlocked `store` (so a wrong key or broken database fails here, at
    /// startup), then starts a thread that checks for changes every `poll_interval`.
    pub fn start(store: Store, poll_interval: Duration) -> Result<Self> {
        let first = store.load_snapshot()?;
        let shared = Arc::new(Shared {
            current: ArcSwap::from_pointee(first),
            stop: AtomicBool::new(false),
            checks: Mutex::new(Checks::default()),
            checked: Condvar::new(),
        });
        let watcher_shared = Arc::clone(&shared);
        let dir = store.data_dir().to_path_buf();
        let watcher = thread::Builder::new()
            .name("keygate-secrets-watch".to_owned())
            .spawn(move || watch(&store, &watcher_shared, poll_interval))
            .map_err(|e| StoreError::io("cannot start the secret watcher thread for", dir, e))?;
        Ok(Self {
            shared,
            watcher: Some(watcher),
        })
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.current.load_full()
    }
}

impl SecretSource for CachedSecrets {
    fn get(&self, vault: &str, name: &str) -> Result<Arc<SecretString>, SecretError> {
        self.shared.current.load().get(vault, name)
    }

    /// Wakes the watcher and waits until a check that began after this call has finished.
    fn refresh(&self) {
        let Some(watcher) = &self.watcher else { return };
        let checks = self
            .shared
            .checks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let target = checks.begun + 1;
        watcher.thread().unpark();
        let _ = self
            .shared
            .checked
            .wait_timeout_while(checks, REFRESH_WAIT, |checks| checks.finished < target);
    }
}

impl Drop for CachedSecrets {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(watcher) = self.watcher.take() {
            watcher.thread().unpark();
            // The thread only ends by seeing `stop`; a panic inside it has nothing left to clean up.
            let _ = watcher.join();
        }
    }
}

/// Watcher loop: reload whenever the generation differs from the snapshot's. Failures keep the previous
/// snapshot and are logged once per failure streak.
fn watch(store: &Store, shared: &Shared, poll_interval: Duration) {
    let mut failing = false;
    loop {
        thread::park_timeout(poll_interval);
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        shared
            .checks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .begun += 1;
        check(store, shared, &mut failing);
        let mut checks = shared
            .checks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        checks.finished = checks.begun;
        shared.checked.notify_all();
    }
}

/// One check: reload when the store's generation differs from the snapshot's.
fn check(store: &Store, shared: &Shared, failing: &mut bool) {
    let seen = shared.current.load().generation();
    let refreshed = store.generation().and_then(|generation| {
        if generation == seen {
            Ok(None)
        } else {
            store.load_snapshot().map(Some)
        }
    });
    match refreshed {
        Ok(Some(snapshot)) => {
            tracing::info!(
                generation = snapshot.generation(),
                secrets = snapshot.len(),
                "secrets reloaded"
            );
            shared.current.store(Arc::new(snapshot));
            *failing = false;
        }
        Ok(None) => *failing = false,
        Err(err) if !*failing => {
            tracing::error!(error = %err, "secret reload failed; keeping the previous secrets");
            *failing = true;
        }
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use secrecy::ExposeSecret;

    use super::*;
    use crate::test_support::{inline_key, TempDir};

    /// Polls `cache` until `done` holds, failing after 2 s (the bound within which a running gateway sees a change).
    fn within_two_seconds(
        cache: &CachedSecrets,
        done: impl Fn(&CachedSecrets) -> bool,
    ) -> Duration {
        let start = Instant::now();
        while !done(cache) {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "change not seen within 2 s"
            );
            thread::sleep(Duration::from_millis(10));
        }
        start.elapsed()
    }

    #[test]
    fn refresh_sees_a_write_made_just_before() {
        let dir = TempDir::new("refresh");
        let writer = Store::open_unlocked(dir.path(), &inline_key(9)).unwrap();
        let vault = writer.create_vault("gateway-auth", "").unwrap();
        let reader = Store::open_unlocked(dir.path(), &inline_key(9)).unwrap();
        // A poll interval far longer than the test: only `refresh` can bring the change in.
        let cache = CachedSecrets::start(reader, Duration::from_secs(3600)).unwrap();
        for round in 0..5 {
            let name = format!("token-{round}");
            writer
                .create_secret(&vault.id, &name, &SecretString::from("v"), "")
                .unwrap();
            cache.refresh();
            assert!(cache.get("gateway-auth", &name).is_ok(), "round {round}");
        }
    }

    #[test]
    fn changes_through_another_handle_are_seen_within_two_seconds() {
        let dir = TempDir::new("cache");
        let writer = Store::open_unlocked(dir.path(), &inline_key(9)).unwrap();
        let vault = writer.create_vault("gateway-auth", "").unwrap();
        let secret = writer
            .create_secret(&vault.id, "access-token", &SecretString::from("old"), "")
            .unwrap();
        let reader = Store::open_unlocked(dir.path(), &inline_key(9)).unwrap();
        let cache = CachedSecrets::start(reader, CachedSecrets::DEFAULT_POLL_INTERVAL).unwrap();
        assert_eq!(
            cache
                .get("gateway-auth", "access-token")
                .unwrap()
                .expose_secret(),
            "old"
        );

        writer
            .update_secret(&secret.id, Some(&SecretString::from("new")), None)
            .unwrap();
        within_two_seconds(&cache, |c| {
            c.get("gateway-auth", "access-token")
                .is_ok_and(|v| v.expose_secret() == "new")
        });

        writer
            .create_secret(&vault.id, "client-b", &SecretString::from("b"), "")
            .unwrap();
        within_two_seconds(&cache, |c| c.get("gateway-auth", "client-b").is_ok());

        writer.delete_secret(&secret.id).unwrap();
        within_two_seconds(&cache, |c| {
            matches!(
                c.get("gateway-auth", "access-token"),
                Err(SecretError::SecretNotFound { .. })
            )
        });

        writer
            .update_vault(&vault.id, Some("renamed"), None)
            .unwrap();
        within_two_seconds(&cache, |c| c.get("renamed", "client-b").is_ok());
        assert!(matches!(
            cache.get("gateway-auth", "client-b"),
            Err(SecretError::VaultNotFound(_))
        ));
        assert_eq!(cache.snapshot().generation(), writer.generation().unwrap());
        assert!(!format!("{cache:?}").contains("\"b\""));
    }

    #[test]
    fn start_needs_an_unlocked_store_and_drop_stops_the_watcher() {
        let dir = TempDir::new("cache-locked");
        let locked = Store::open(dir.path()).unwrap();
        assert!(matches!(
            CachedSecrets::start(locked, Duration::from_millis(50)),
            Err(StoreError::Locked)
        ));
        let store = Store::open_unlocked(dir.path(), &inline_key(3)).unwrap();
        let cache = CachedSecrets::start(store, Duration::from_secs(3600)).unwrap();
        let start = Instant::now();
        drop(cache);
        // The watcher is unparked on drop rather than waiting out its hour-long interval.
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
