//! [`CachedSecrets`]: the gateway's [`SecretSource`]. Lookups read an in-memory [`Snapshot`] through
//! `arc-swap` (no lock); a background thread polls the store's generation and swaps in a fresh snapshot when
//! anything changed, so `keygate api secrets ...` reaches a running gateway within one poll interval plus a
//! reload.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
}

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
        });
        let watcher_shared = Arc::clone(&shared);
        let watcher = thread::Builder::new()
            .name("keygate-secrets-watch".to_owned())
            .spawn(move || watch(&store, &watcher_shared, poll_interval))
            .map_err(|e| StoreError::io("cannot start the secret watcher thread for", "keygate.db", e))?;
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
        let seen = shared.current.load().generation();
        let refreshed = store.generation().and_then(|generation| match generation == seen {
            true => Ok(None),
            false => store.load_snapshot().map(Some),
        });
        match refreshed {
            Ok(Some(snapshot)) => {
                tracing::info!(generation = snapshot.generation(), secrets = snapshot.len(), "secrets reloaded");
                shared.current.store(Arc::new(snapshot));
                failing = false;
            }
            Ok(None) => failing = false,
            Err(err) if !failing => {
                tracing::error!(error = %err, "secret reload failed; keeping the previous secrets");
                failing = true;
            }
            Err(_) => {}
        }
    }
}
