//! Hot reload: the policy file's directory is watched (editors replace files by rename) and
//! SIGHUP also reloads; compilation runs on a blocking thread, never on the request path.

use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::warn;

use crate::gateway::Gateway;

/// Changes closer together than this are handled as one reload.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Starts watching; keep the returned watcher alive for as long as reloads should happen.
pub fn watch(gateway: Arc<Gateway>) -> Option<notify::RecommendedWatcher> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let policy = gateway.config.policy.clone();
    let file_name = policy.file_name().map(|n| n.to_owned());
    let dir = policy
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."))
        .to_owned();
    let file_tx = tx.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            // Only changes count: reading the file (as a reload does) raises access events,
            // which would otherwise trigger the next reload, forever.
            let changed = matches!(
                event.kind,
                EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
            );
            if changed
                && event
                    .paths
                    .iter()
                    .any(|p| p.file_name() == file_name.as_deref())
            {
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
            let gateway = gateway.clone();
            let _ = tokio::task::spawn_blocking(move || gateway.reload()).await;
        }
    });
    watcher
}
