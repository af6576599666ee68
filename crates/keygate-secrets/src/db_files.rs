//! [`DbFiles`]: the generation marker next to the database, watched for changes.
//!
//! A committed write is visible to readers only once SQLite has published it in the shared-memory index,
//! which raises no file event: an event on `keygate.db-wal` may arrive, and a check it triggers may run,
//! before the commit can be read. So every announced write ([`crate::Store::write`]) also writes the
//! generation it committed to `keygate.db-generation` after the commit: its file event comes after the
//! change is readable (the caches watch only this file), and a missed lookup can compare it with the
//! generation it holds without touching SQLite.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use notify::{EventKind, RecursiveMode, Watcher};

use crate::schema::DB_FILE;

/// The generation marker's file name, after [`DB_FILE`].
const MARKER_SUFFIX: &str = "-generation";

/// The database files of one data directory.
#[derive(Debug)]
pub(crate) struct DbFiles {
    marker: PathBuf,
}

impl DbFiles {
    pub(crate) fn of(dir: &Path) -> Self {
        Self {
            marker: marker_path(dir),
        }
    }

    /// The generation the last announced write committed, when the marker is there and readable (a read
    /// racing a write may find it empty).
    pub(crate) fn announced(&self) -> Option<u64> {
        std::fs::read_to_string(&self.marker)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Calls `changed` whenever the marker is written (every announced write rewrites it), until the
    /// returned watcher is dropped. Only the marker is watched, not the directory: the usage ledger
    /// writes its own database in the same directory on every request, and each of its events would
    /// cost every watcher a wake-up (about 1k instructions per request for the three caches). Writes
    /// that announce nothing (older keygate versions, other tools) are found by the poll.
    pub(crate) fn watch(
        &self,
        changed: impl Fn() + Send + 'static,
    ) -> notify::Result<notify::RecommendedWatcher> {
        // The marker must exist to be watched; an empty one announces nothing.
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.marker)
            .map_err(notify::Error::io)?;
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if matches!(
                    event.kind,
                    EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
                ) {
                    changed();
                }
            })?;
        watcher.watch(&self.marker, RecursiveMode::NonRecursive)?;
        Ok(watcher)
    }
}

fn marker_path(dir: &Path) -> PathBuf {
    dir.join(format!("{DB_FILE}{MARKER_SUFFIX}"))
}

/// Records that `generation` is committed. Best effort: a failure only delays readers until their next poll.
pub(crate) fn announce(dir: &Path, generation: u64) {
    let path = marker_path(dir);
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut file| file.write_all(generation.to_string().as_bytes()));
    if let Err(err) = written {
        tracing::debug!(error = %err, path = %path.display(), "cannot write the generation marker");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::store::Store;
    use crate::test_support::TempDir;

    #[test]
    fn an_announced_write_updates_the_marker_and_is_reported_by_the_watch() {
        let dir = TempDir::new("db-files");
        let store = Store::open(dir.path()).unwrap();
        let files = DbFiles::of(dir.path());
        assert_eq!(files.announced(), None, "no announced write yet");
        let (tx, rx) = mpsc::channel();
        let _watch = files
            .watch(move || {
                let _ = tx.send(());
            })
            .unwrap();
        store.create_vault("watched", "").unwrap();
        assert_eq!(files.announced(), Some(store.generation().unwrap()));
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the write is reported");
        store.create_vault("again", "").unwrap();
        assert_eq!(files.announced(), Some(store.generation().unwrap()));
    }
}
