//! What the dashboard's policy page shows: the policy text that is serving, and the results of
//! the last reloads (kept in memory, the newest [`HISTORY`]), the last failed one apart.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use keygate_usage::rfc3339;
use serde_json::{json, Value};

use crate::gateway::Gateway;

/// Reload results kept.
pub const HISTORY: usize = 20;

/// The serving policy's text and the reload history.
pub struct ReloadLog {
    inner: Mutex<Inner>,
}

struct Inner {
    /// The text of the policy that serves (the last one that compiled).
    text: String,
    loaded_at: SystemTime,
    /// Newest first.
    history: VecDeque<Entry>,
    last_error: Option<Entry>,
}

#[derive(Clone)]
struct Entry {
    time: SystemTime,
    ok: bool,
    message: String,
}

impl Entry {
    fn json(&self) -> Value {
        json!({ "time": rfc3339(self.time), "ok": self.ok, "message": self.message })
    }
}

impl ReloadLog {
    /// The log of a gateway that started with `text`.
    pub fn new(text: String, warnings: usize) -> Self {
        let now = SystemTime::now();
        let mut history = VecDeque::with_capacity(HISTORY);
        history.push_front(Entry {
            time: now,
            ok: true,
            message: with_warnings("loaded at start", warnings),
        });
        Self {
            inner: Mutex::new(Inner {
                text,
                loaded_at: now,
                history,
                last_error: None,
            }),
        }
    }

    /// A reload swapped in the policy `text`.
    pub fn loaded(&self, text: String, warnings: usize) {
        let now = SystemTime::now();
        let mut inner = self.lock();
        inner.text = text;
        inner.loaded_at = now;
        inner.push(Entry {
            time: now,
            ok: true,
            message: with_warnings("reloaded", warnings),
        });
    }

    /// A reload was refused (the previous policy keeps serving).
    pub fn failed(&self, message: String) {
        let entry = Entry {
            time: SystemTime::now(),
            ok: false,
            message,
        };
        let mut inner = self.lock();
        inner.last_error = Some(entry.clone());
        inner.push(entry);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    fn push(&mut self, entry: Entry) {
        if self.history.len() == HISTORY {
            self.history.pop_back();
        }
        self.history.push_front(entry);
    }
}

fn with_warnings(what: &str, warnings: usize) -> String {
    match warnings {
        0 => what.to_owned(),
        1 => format!("{what} (1 warning)"),
        n => format!("{what} ({n} warnings)"),
    }
}

impl Gateway {
    /// `GET /ui/api/policy`: the file, the serving text, the reloads newest first and the last
    /// failed one.
    pub fn policy_status(&self) -> Value {
        let inner = self.reloads.lock();
        json!({
            "path": self.config.policy.display().to_string(),
            "text": inner.text,
            "loaded_at": rfc3339(inner.loaded_at),
            "reloads": inner.history.iter().map(Entry::json).collect::<Vec<_>>(),
            "last_error": inner.last_error.as_ref().map(Entry::json),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_results_and_the_last_error() {
        let log = ReloadLog::new("a".into(), 0);
        log.failed("policy.yml:1:1: bad".into());
        for _ in 0..HISTORY {
            log.loaded("b".into(), 2);
        }
        let inner = log.lock();
        assert_eq!(inner.history.len(), HISTORY);
        assert_eq!(inner.text, "b");
        assert!(inner.history.iter().all(|e| e.ok));
        assert_eq!(inner.history[0].message, "reloaded (2 warnings)");
        assert_eq!(
            inner.last_error.as_ref().unwrap().message,
            "policy.yml:1:1: bad"
        );
    }
}
