//! [`CachedSecrets`]: the gateway's [`SecretSource`], a [`Refreshing`] [`Snapshot`] of every secret. A
//! change by `keygate api secrets ...` (on any instance) is loaded as soon as the store's change feed
//! reports it, and a lookup that misses re-reads the store before failing, so the request right after
//! `keygate api secrets create` finds the new secret.

use std::sync::Arc;
use std::time::Duration;

use keygate_cel::{SecretError, SecretSource};
use secrecy::SecretString;

use crate::error::Result;
use crate::refreshing::{Refreshing, Reload};
use crate::schema::SECRETS;
use crate::snapshot::Snapshot;
use crate::store::Store;

/// A cached, self-refreshing view of every secret. Dropping it stops the watcher thread.
pub struct CachedSecrets(Refreshing<Snapshot>);

impl std::fmt::Debug for CachedSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CachedSecrets").field(&self.0).finish()
    }
}

impl CachedSecrets {
    /// Poll interval used by the gateway.
    pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);

    /// Loads the first snapshot from an unlocked `store` (so a wrong key or broken database fails here, at
    /// startup), then follows changes (see [`Refreshing::start`] for `poll_interval`).
    pub fn start(store: Store, poll_interval: Duration) -> Result<Self> {
        Refreshing::start(store, poll_interval).map(Self)
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.0.current_full()
    }
}

impl Reload for Snapshot {
    const COMPONENT: &'static str = SECRETS.name;

    fn load(store: &Store) -> Result<Self> {
        store.load_snapshot()
    }

    fn generation(&self) -> u64 {
        self.generation()
    }

    fn entries(&self) -> usize {
        self.len()
    }
}

impl SecretSource for CachedSecrets {
    /// A hit is a lock-free lookup. A missing vault or secret first gets a re-read of the store
    /// ([`Refreshing::reread_after_miss`]: coalesced, rate-limited, at most 500 ms of waiting).
    fn get(&self, vault: &str, name: &str) -> Result<Arc<SecretString>, SecretError> {
        let found = self.0.current().get(vault, name);
        match found {
            Err(SecretError::VaultNotFound(_) | SecretError::SecretNotFound { .. })
                if self.0.reread_after_miss() =>
            {
                self.0.current().get(vault, name)
            }
            found => found,
        }
    }

    /// Waits until a check that began after this call has finished.
    fn refresh(&self) {
        self.0.refresh();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use secrecy::ExposeSecret;

    use std::thread;

    use super::*;
    use crate::error::StoreError;
    use crate::test_support::{inline_key, TempDir};

    /// Polls `cache` until `done` holds, failing after 2 s (the bound promised for a running gateway).
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
    fn a_secret_created_while_running_is_found_by_the_very_next_lookup() {
        let dir = TempDir::new("miss");
        let writer = Store::open_unlocked(dir.path(), &inline_key(9)).unwrap();
        let vault = writer.create_vault("gateway-auth", "").unwrap();
        let reader = Store::open_unlocked(dir.path(), &inline_key(9)).unwrap();
        // No poll during the test: only the file watch and misses bring changes in.
        let cache = CachedSecrets::start(reader, Duration::from_secs(3600)).unwrap();
        for round in 0..5 {
            let name = format!("token-{round}");
            // The miss uses up this interval's re-read; the write after it is still found at once.
            assert!(matches!(
                cache.get("gateway-auth", &name),
                Err(SecretError::SecretNotFound { .. })
            ));
            writer
                .create_secret(&vault.id, &name, &SecretString::from("v"), "")
                .unwrap();
            assert_eq!(
                cache.get("gateway-auth", &name).unwrap().expose_secret(),
                "v",
                "round {round}"
            );
        }
        writer.create_vault("later", "").unwrap();
        assert!(matches!(
            cache.get("later", "x"),
            Err(SecretError::SecretNotFound { .. })
        ));
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
        assert_eq!(
            cache.snapshot().generation(),
            writer.generation("secrets").unwrap()
        );
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
