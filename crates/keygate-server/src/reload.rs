//! Hot reload: the policy file's directory is watched (editors replace files by rename) and
//! SIGHUP also reloads; compilation runs on a blocking thread, never on the request path.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::warn;

/// Changes closer together than this are handled as one reload.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Starts watching `policy`, calling `reload` (on a blocking thread) when it changes or on
/// SIGHUP; keep the returned watcher alive for as long as reloads should happen.
pub fn watch(
    policy: &Path,
    reload: impl Fn() + Send + Sync + 'static,
) -> Option<notify::RecommendedWatcher> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let policy = policy.to_owned();
    let file_name = policy.file_name().map(|n| n.to_owned());
    let dir = policy
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let file_tx = tx.clone();
    let target = Mutex::new(std::fs::canonicalize(&policy).ok());
    let reload = Arc::new(reload);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            // Only changes count: reading the file (as a reload does) raises access events,
            // which would otherwise trigger the next reload, forever.
            let changed = matches!(
                event.kind,
                EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
            );
            if !changed {
                return;
            }
            let named = event
                .paths
                .iter()
                .any(|p| p.file_name() == file_name.as_deref());
            if retargeted(&policy, &target) || named {
                let _ = file_tx.send(());
            }
        }
    })
    .and_then(|mut watcher| {
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map(|()| watcher)
    });
    let watcher = match watcher {
        Ok(watcher) => Some(watcher),
        Err(err) => {
            warn!(error = %err, dir = %dir.display(), "cannot watch the policy directory; reload with SIGHUP");
            None
        }
    };
    if let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                let _ = tx.send(());
            }
        });
    }
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            let reload = reload.clone();
            let _ = tokio::task::spawn_blocking(move || reload()).await;
        }
    });
    watcher
}

/// Whether `policy` resolves to another file than at the last call. A Kubernetes ConfigMap
/// volume updates `policy.yml -> ..data/policy.yml` by swapping the `..data` symlink to a new
/// directory, so none of the directory's events names the policy file.
fn retargeted(policy: &Path, last: &Mutex<Option<PathBuf>>) -> bool {
    let now = std::fs::canonicalize(policy).ok();
    let mut last = last.lock().unwrap_or_else(PoisonError::into_inner);
    if *last == now {
        return false;
    }
    *last = now;
    true
}
