//! The SQLite change marker: a small file next to the database (`keygate.db-generations`) naming every
//! component's generation, rewritten after each announced write.
//!
//! SQLite has no notifications across processes, and a committed write becomes readable only once SQLite
//! has published it in the shared-memory index, which raises no file event: an event on the `-wal` file
//! may arrive, and a check it triggers may run, before the commit can be read. The marker is written
//! after the commit, so its file event comes when the change is readable. The feed thread watches only
//! this file (not the directory, where the usage ledger writes on every request), and a cache whose
//! lookup missed reads it to learn, without touching SQLite, whether a write it has not loaded exists.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use notify::{EventKind, RecursiveMode, Watcher};

/// The marker of the database at `db`.
fn path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-generations");
    PathBuf::from(name)
}

/// Records the generations committed (`component generation` lines). Best effort: a failure only delays
/// other processes until the feed's next poll. Written in place with one `write` call, so the watch on
/// the file stays valid; a reader racing it may find it empty, which announces nothing.
pub(crate) fn announce(db: &Path, generations: &[(String, u64)]) {
    let path = path(db);
    let text: String = generations
        .iter()
        .map(|(component, generation)| format!("{component} {generation}\n"))
        .collect();
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut file| file.write_all(text.as_bytes()));
    if let Err(err) = written {
        tracing::debug!(error = %err, path = %path.display(), "cannot write the change marker");
    }
}

/// The generation of `component` the last announced write recorded, if the marker names it.
pub(crate) fn announced(db: &Path, component: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path(db)).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(component)?.strip_prefix(' '))
        .and_then(|generation| generation.parse().ok())
}

/// Calls `changed` whenever the marker is written, until the returned watcher is dropped.
pub(crate) fn watch(
    db: &Path,
    changed: impl Fn() + Send + 'static,
) -> notify::Result<notify::RecommendedWatcher> {
    let path = path(db);
    // The marker must exist to be watched; an empty one announces nothing.
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&path)
        .map_err(notify::Error::io)?;
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|event| {
            matches!(
                event.kind,
                EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
            )
        }) {
            changed();
        }
    })?;
    watcher.watch(&path, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announced_generations_are_read_back_by_component() {
        let dir = std::env::temp_dir().join(format!("keygate-marker-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("keygate.db");
        assert_eq!(announced(&db, "secrets"), None);
        announce(&db, &[("secrets".into(), 4), ("ip-policies".into(), 12)]);
        assert_eq!(announced(&db, "secrets"), Some(4));
        assert_eq!(announced(&db, "ip-policies"), Some(12));
        assert_eq!(announced(&db, "ip"), None, "a prefix is not a component");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
