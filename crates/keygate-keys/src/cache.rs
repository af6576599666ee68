//! [`KeyCache`]: the gateway's access key check, in memory, kept current from the store's generation
//! counter, with last use written back in coalesced batches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::DateTime;
use keygate_secrets::{Periodic, Refreshing, StoreError};

use crate::error::Result;
use crate::keyset::{AuthenticatedKey, KeySet};
use crate::memo;
use crate::store::KeyStore;
use crate::token::{TokenHasher, TOKEN_LEN, TOKEN_PREFIX};

/// Why a token was refused. Says nothing about the token itself, so it is safe to log and to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No access key has this token (never issued, or deleted).
    Unknown,
    /// The key's expiry has passed.
    Expired,
    /// The key is disabled.
    Disabled,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unknown => "unknown access key",
            Self::Expired => "access key expired",
            Self::Disabled => "access key disabled",
        })
    }
}

/// Every access key of a data directory, in memory. A create, update, disable or delete made by any process
/// on the directory is seen within one poll interval plus a reload (under 2 s with the default interval).
/// Dropping it stops both background threads after a last write of pending last-use times.
pub struct KeyCache {
    /// Declared first so it stops, and flushes, before the watcher.
    flusher: Periodic,
    keys: Arc<Refreshing<KeySet>>,
    hasher: TokenHasher,
    /// Tells this cache's remembered digests from another's (`memo`).
    id: u64,
}

/// Ids of key caches, unique in the process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("KeyCache").field(&*self.keys).finish()
    }
}

impl KeyCache {
    /// How often the gateway checks the store for changes.
    pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);
    /// How often the gateway writes last-use times: a hot key costs one write per interval, not one per
    /// request.
    pub const DEFAULT_LAST_USED_INTERVAL: Duration = Duration::from_secs(10);

    /// Loads every key from an unlocked store (a wrong master key or broken database fails here, at
    /// startup), then checks for changes every `poll_interval` and writes last-use times every
    /// `last_used_interval` through a second connection to the same directory.
    pub fn start(
        keys: KeyStore,
        poll_interval: Duration,
        last_used_interval: Duration,
    ) -> Result<Self> {
        let hasher = TokenHasher::for_store(keys.store())?;
        let writer = KeyStore::open(keys.store().reopen()?)?;
        let dir = keys.store().data_dir().to_path_buf();
        let cache = Arc::new(Refreshing::<KeySet>::start(
            keys.into_store(),
            poll_interval,
        )?);
        let watched = Arc::clone(&cache);
        let mut previous: Option<Arc<KeySet>> = None;
        let flusher = Periodic::spawn("keygate-keys-last-used", last_used_interval, move |_| {
            let current = watched.current_full();
            flush(&writer, previous.as_deref(), &current);
            previous = Some(current);
        })
        .map_err(|source| StoreError::Io {
            context: "cannot start the last-use writer thread for",
            path: dir,
            source,
        })?;
        Ok(Self {
            flusher,
            keys: cache,
            hasher,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Checks a presented token (the bytes after `Bearer `, or an `x-api-key` value) now.
    pub fn authenticate(&self, token: &[u8]) -> Result<Arc<AuthenticatedKey>, Rejection> {
        self.authenticate_at(token, unix_now())
    }

    /// Checks a presented token at `now` (Unix seconds): hashes it under the derived key (or recalls
    /// the hash of a token that matched before on this thread, see `memo`), looks the hash up
    /// (constant-time equality), then checks disabled, then expiry. Allocates only to remember a
    /// token the first time it matches.
    pub fn authenticate_at(
        &self,
        token: &[u8],
        now: i64,
    ) -> Result<Arc<AuthenticatedKey>, Rejection> {
        // Every token has the same length and prefix; anything else cannot match and is not worth hashing.
        if token.len() != TOKEN_LEN || !token.starts_with(TOKEN_PREFIX.as_bytes()) {
            return Err(Rejection::Unknown);
        }
        let recalled = memo::recall(self.id, token);
        let digest = recalled.unwrap_or_else(|| self.hasher.digest(token));
        let keys = self.keys.current();
        let key = keys.get(&digest).ok_or(Rejection::Unknown)?;
        if recalled.is_none() {
            memo::remember(self.id, token, digest);
        }
        if key.is_disabled() {
            return Err(Rejection::Disabled);
        }
        if key.is_expired_at(now) {
            return Err(Rejection::Expired);
        }
        key.touch(now);
        Ok(Arc::clone(key))
    }

    /// Waits (at most 2 s) until a change committed before this call is visible.
    pub fn refresh(&self) {
        self.keys.refresh();
    }

    /// Writes pending last-use times now rather than at the end of the interval.
    pub fn flush_last_used(&self) {
        self.flusher.wake();
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// Writes the uses not yet written, of the current keys and of the set they replaced (a use noted just
/// before a reload would otherwise be lost), in one transaction. A failure is logged and retried next time.
fn flush(writer: &KeyStore, previous: Option<&KeySet>, current: &KeySet) {
    let sets = previous
        .filter(|previous| !std::ptr::eq(*previous, current))
        .into_iter()
        .chain([current]);
    let pending: Vec<(&AuthenticatedKey, i64)> = sets
        .flat_map(KeySet::keys)
        .filter_map(|key| key.unflushed_use().map(|used| (&**key, used)))
        .collect();
    if pending.is_empty() {
        return;
    }
    let uses: Vec<_> = pending
        .iter()
        .filter_map(|(key, used)| DateTime::from_timestamp(*used, 0).map(|time| (key.id(), time)))
        .collect();
    match writer.record_last_used(&uses) {
        Ok(()) => {
            for (key, used) in pending {
                key.mark_flushed(used);
            }
        }
        Err(err) => {
            tracing::error!(error = %err, "cannot record access key last use; retrying later")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use keygate_secrets::test_support::{inline_key, TempDir};
    use keygate_secrets::Store;
    use secrecy::{ExposeSecret, SecretString};
    use serde_json::{json, Map, Value};

    use super::*;
    use crate::keyset::AttachedProviderKey;
    use crate::limits::KeyLimits;
    use crate::model::ApiKeyUpdate;
    use crate::schema::KEYS;

    fn keys(dir: &TempDir, master: u8) -> KeyStore {
        KeyStore::open(Store::open_unlocked(dir.path(), &inline_key(master)).unwrap()).unwrap()
    }

    fn start(dir: &TempDir, master: u8) -> KeyCache {
        KeyCache::start(
            keys(dir, master),
            KeyCache::DEFAULT_POLL_INTERVAL,
            Duration::from_secs(3600),
        )
        .unwrap()
    }

    fn create(keys: &KeyStore, expires_in: Option<chrono::Duration>) -> (String, String) {
        let expiry = expires_in.map(|d| chrono::Utc::now() + d);
        let created = keys
            .create_api_key("", &Map::new(), expiry, &[], &[], &KeyLimits::default())
            .unwrap();
        (created.key.id, created.token.expose_secret().to_owned())
    }

    fn set_disabled(keys: &KeyStore, id: &str, disabled: bool) {
        let update = ApiKeyUpdate {
            disabled: Some(disabled),
            ..Default::default()
        };
        keys.update_api_key(id, &update).unwrap();
    }

    /// Polls until `done` holds, failing after 2 s (the bound promised for a running gateway).
    fn within_two_seconds(done: impl Fn() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "change not seen within 2 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn authenticate_accepts_a_token_and_names_each_rejection() {
        let dir = TempDir::new("authenticate");
        let writer = keys(&dir, 1);
        let (id, token) = create(&writer, None);
        let metadata = json!({"team": "search"});
        let Value::Object(metadata) = metadata.clone() else {
            unreachable!()
        };
        writer
            .update_api_key(
                &id,
                &ApiKeyUpdate {
                    metadata: Some(&metadata),
                    ..Default::default()
                },
            )
            .unwrap();
        let value = SecretString::from("sk-attached-value");
        let older = writer
            .create_provider_key(&id, "openai", &value, "", &Map::new())
            .unwrap();
        let newer = writer
            .create_provider_key(&id, "openai", &value, "", &Map::new())
            .unwrap();
        writer
            .create_provider_key(&id, "anthropic", &value, "", &Map::new())
            .unwrap();
        let (expiring_id, expiring) = create(&writer, Some(chrono::Duration::hours(1)));
        let cache = start(&dir, 1);

        let key = cache.authenticate(token.as_bytes()).unwrap();
        assert_eq!(key.id(), id);
        assert_eq!(key.metadata(), &json!({"team": "search"}));
        assert_eq!(
            key.display_name(),
            &format!("{}...{}", &token[..7], &token[token.len() - 4..])
        );
        let openai: Vec<_> = key
            .provider_keys_for("openai")
            .map(AttachedProviderKey::id)
            .collect();
        assert_eq!(openai, [newer.id.as_str(), older.id.as_str()]);
        assert_eq!(key.provider_keys().len(), 3);
        assert_eq!(
            key.provider_keys()[0].value().unwrap().expose_secret(),
            "sk-attached-value"
        );
        let debug = format!("{key:?} {cache:?}");
        assert!(
            !debug.contains("sk-attached") && !debug.contains(&token[7..]),
            "{debug}"
        );

        let mut wrong = token.clone().into_bytes();
        wrong[10] ^= 1;
        assert_eq!(cache.authenticate(&wrong).unwrap_err(), Rejection::Unknown);
        assert_eq!(cache.authenticate(b"").unwrap_err(), Rejection::Unknown);
        assert_eq!(
            cache.authenticate(&token.as_bytes()[1..]).unwrap_err(),
            Rejection::Unknown
        );

        let now = unix_now();
        assert!(cache.authenticate_at(expiring.as_bytes(), now).is_ok());
        let expiry = chrono::DateTime::parse_from_rfc3339(
            writer
                .get_api_key(&expiring_id)
                .unwrap()
                .expires_at
                .as_deref()
                .unwrap(),
        )
        .unwrap()
        .timestamp();
        assert_eq!(
            cache
                .authenticate_at(expiring.as_bytes(), expiry)
                .unwrap_err(),
            Rejection::Expired
        );

        set_disabled(&writer, &id, true);
        cache.refresh();
        assert_eq!(
            cache.authenticate(token.as_bytes()).unwrap_err(),
            Rejection::Disabled
        );
        set_disabled(&writer, &id, false);
        cache.refresh();
        assert!(cache.authenticate(token.as_bytes()).is_ok());
        assert_eq!(Rejection::Disabled.to_string(), "access key disabled");
    }

    #[test]
    fn the_authenticated_key_carries_its_compiled_scopes() {
        let dir = TempDir::new("scopes");
        let keys = keys(&dir, 1);
        let own = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let created = keys
            .create_api_key(
                "",
                &Map::new(),
                None,
                &own(&["openai"]),
                &own(&["gpt-4o*"]),
                &KeyLimits::default(),
            )
            .unwrap();
        let cache = KeyCache::start(
            keys,
            KeyCache::DEFAULT_POLL_INTERVAL,
            Duration::from_secs(3600),
        )
        .unwrap();
        let key = cache
            .authenticate(created.token.expose_secret().as_bytes())
            .unwrap();
        assert!(key.allows_provider("openai") && !key.allows_provider("anthropic"));
        assert!(key.allows_model("openai", "gpt-4o-mini") && !key.allows_model("openai", "o1"));
        assert_eq!(
            (key.allowed_providers(), key.allowed_models()),
            (&own(&["openai"])[..], &own(&["gpt-4o*"])[..])
        );
    }

    #[test]
    fn changes_through_another_handle_are_seen_within_two_seconds() {
        let dir = TempDir::new("revocation");
        let writer = keys(&dir, 1);
        let (id, token) = create(&writer, None);
        let cache = start(&dir, 1);
        assert!(cache.authenticate(token.as_bytes()).is_ok());

        let (_, added) = create(&writer, None);
        within_two_seconds(|| cache.authenticate(added.as_bytes()).is_ok());
        set_disabled(&writer, &id, true);
        within_two_seconds(|| {
            cache.authenticate(token.as_bytes()).err() == Some(Rejection::Disabled)
        });
        writer.delete_api_key(&id).unwrap();
        within_two_seconds(|| {
            cache.authenticate(token.as_bytes()).err() == Some(Rejection::Unknown)
        });
        assert!(cache.authenticate(added.as_bytes()).is_ok());
    }

    #[test]
    fn a_token_does_not_match_under_another_master_key() {
        let dir = TempDir::new("other-master");
        let (_, token) = create(&keys(&dir, 1), None);
        // The same rows, read by a cache whose token hashing key comes from another master key.
        let copy = TempDir::new("other-master-copy");
        std::fs::create_dir_all(copy.path()).unwrap();
        let db = keygate_secrets::DB_FILE;
        keys(&dir, 1);
        rusqlite::Connection::open(dir.path().join(db))
            .unwrap()
            .execute("VACUUM INTO ?1", [copy.path().join(db).to_str().unwrap()])
            .unwrap();
        let conn = rusqlite::Connection::open(copy.path().join(db)).unwrap();
        conn.execute(
            "UPDATE meta SET key_check = NULL, key_check_nonce = NULL",
            [],
        )
        .unwrap();
        drop(conn);
        assert!(start(&dir, 1).authenticate(token.as_bytes()).is_ok());
        assert_eq!(
            start(&copy, 2).authenticate(token.as_bytes()).unwrap_err(),
            Rejection::Unknown
        );
    }

    #[test]
    fn last_use_is_written_in_batches_and_on_drop() {
        let dir = TempDir::new("cache-last-used");
        let writer = keys(&dir, 1);
        let (id, token) = create(&writer, None);
        let (idle, _) = create(&writer, None);
        let cache = start(&dir, 1);
        let generation = writer.store().generation(KEYS.name).unwrap();
        for _ in 0..1000 {
            cache.authenticate(token.as_bytes()).unwrap();
        }
        assert_eq!(writer.get_api_key(&id).unwrap().last_used, None);
        cache.flush_last_used();
        within_two_seconds(|| writer.get_api_key(&id).unwrap().last_used.is_some());
        // A use just before a reload is still written, by the final flush on drop.
        std::thread::sleep(Duration::from_millis(1100));
        cache.authenticate(token.as_bytes()).unwrap();
        let first = writer.get_api_key(&id).unwrap().last_used.unwrap();
        create(&writer, None);
        cache.refresh();
        drop(cache);
        let last = writer.get_api_key(&id).unwrap().last_used.unwrap();
        assert!(last > first, "{last} after {first}");
        assert_eq!(writer.get_api_key(&idle).unwrap().last_used, None);
        assert_eq!(
            writer.store().generation(KEYS.name).unwrap(),
            generation + 1
        );
    }
}
