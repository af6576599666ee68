//! The change feed: every component's generation as a `tokio::sync::watch`, kept current by one background
//! thread per [`crate::Database`] with its own connection.
//!
//! PostgreSQL: every announced write sends `NOTIFY keygate_changes, 'COMPONENT:GENERATION'` in its
//! transaction, delivered at commit to every listening instance. The thread `LISTEN`s on a dedicated
//! connection, reconnects (with backoff) when it drops, and re-reads every generation after connecting and
//! every [`RESYNC`], so nothing missed while disconnected stays missed.
//! SQLite: the thread reads the generations when the change marker next to the file is written
//! (`crate::marker`, a file watch) and every [`POLL`] (one indexed read of a tiny table).
//! Writes through the same `Database` are published at once, without waiting for either.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::error::Result;

/// The `LISTEN`/`NOTIFY` channel.
pub(crate) const CHANNEL: &str = "keygate_changes";
/// How often the SQLite feed reads the generations, and how long the PostgreSQL feed waits for a
/// notification before looking at its stop flag.
pub(crate) const POLL: Duration = Duration::from_millis(250);
/// How often the PostgreSQL feed re-reads every generation besides notifications.
const RESYNC: Duration = Duration::from_secs(30);
/// The longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The generations published so far, one watch per subscribed component.
#[derive(Default)]
pub(crate) struct Feed {
    senders: Mutex<HashMap<String, Subscribers>>,
    stop: AtomicBool,
    started: AtomicBool,
}

/// Who follows one component: async receivers through the watch, std threads by being unparked.
struct Subscribers {
    sender: watch::Sender<u64>,
    threads: Vec<thread::Thread>,
}

impl Subscribers {
    fn new(current: u64) -> Self {
        Self {
            sender: watch::Sender::new(current),
            threads: Vec::new(),
        }
    }

    /// Raises the generation (generations only grow: an older one is ignored) and wakes the threads when
    /// it moved.
    fn raise(&self, generation: u64) {
        let moved = self.sender.send_if_modified(|seen| {
            let newer = generation > *seen;
            if newer {
                *seen = generation;
            }
            newer
        });
        if moved {
            self.threads.iter().for_each(thread::Thread::unpark);
        }
    }
}

/// The connection the feed thread reads through.
pub(crate) trait Source: Send + 'static {
    /// Every component's generation.
    fn generations(&mut self) -> Result<Vec<(String, u64)>>;
    /// Waits up to `timeout` for changes, publishing each; `Err` when the connection failed.
    fn wait(&mut self, feed: &Feed, timeout: Duration) -> Result<()>;
}

impl Feed {
    /// A receiver for `component`, starting at `current` if nothing newer was published.
    pub(crate) fn receiver(&self, component: &str, current: u64) -> watch::Receiver<u64> {
        let mut senders = lock(&self.senders);
        let subscribers = senders
            .entry(component.to_owned())
            .or_insert_with(|| Subscribers::new(current));
        subscribers.raise(current);
        subscribers.sender.subscribe()
    }

    /// Unparks `thread` whenever `component`'s generation moves from now on.
    pub(crate) fn wake_on_change(&self, component: &str, thread: thread::Thread) {
        let mut senders = lock(&self.senders);
        let subscribers = senders
            .entry(component.to_owned())
            .or_insert_with(|| Subscribers::new(0));
        subscribers.threads.push(thread);
    }

    /// Records that `component` reached `generation` (generations only grow: an older one is ignored).
    pub(crate) fn publish(&self, component: &str, generation: u64) {
        if let Some(subscribers) = lock(&self.senders).get(component) {
            subscribers.raise(generation);
        }
    }

    fn publish_all(&self, generations: Vec<(String, u64)>) {
        for (component, generation) in generations {
            self.publish(&component, generation);
        }
    }

    /// `NAME:GENERATION` from a notification.
    pub(crate) fn publish_payload(&self, payload: &str) {
        match payload
            .rsplit_once(':')
            .and_then(|(name, g)| Some((name, g.parse().ok()?)))
        {
            Some((component, generation)) => self.publish(component, generation),
            None => tracing::debug!(payload, "ignoring a malformed change notification"),
        }
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Stops the thread (within [`POLL`]).
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Starts the feed thread once; `connect` opens its source (again after a failure).
    pub(crate) fn start<S: Source>(
        self: &Arc<Self>,
        connect: impl Fn() -> Result<S> + Send + 'static,
    ) -> std::io::Result<()> {
        if self.started.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let feed = Arc::clone(self);
        let spawned = thread::Builder::new()
            .name("keygate-store-feed".into())
            .spawn(move || feed.run(connect));
        if spawned.is_err() {
            self.started.store(false, Ordering::Release);
        }
        spawned.map(drop)
    }

    fn run<S: Source>(&self, connect: impl Fn() -> Result<S>) {
        let mut backoff = POLL;
        let mut failing = false;
        while !self.stopping() {
            match self.follow(&connect, &mut backoff, &mut failing) {
                Ok(()) => return,
                Err(err) => {
                    if !failing {
                        tracing::warn!(error = %err, "database change feed lost; reconnecting");
                        failing = true;
                    }
                    self.sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Connects and publishes changes until stopped (`Ok`) or the connection fails (`Err`).
    fn follow<S: Source>(
        &self,
        connect: &impl Fn() -> Result<S>,
        backoff: &mut Duration,
        failing: &mut bool,
    ) -> Result<()> {
        let mut source = connect()?;
        self.publish_all(source.generations()?);
        if *failing {
            tracing::info!("database change feed reconnected");
        }
        *failing = false;
        *backoff = POLL;
        let mut synced = Instant::now();
        while !self.stopping() {
            source.wait(self, POLL)?;
            if synced.elapsed() >= RESYNC {
                self.publish_all(source.generations()?);
                synced = Instant::now();
            }
        }
        Ok(())
    }

    /// Sleeps `total`, waking early to stop.
    fn sleep(&self, total: Duration) {
        let until = Instant::now() + total;
        while !self.stopping() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            thread::sleep(left.min(POLL));
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_only_grow_and_payloads_name_their_component() {
        let feed = Feed::default();
        let rx = feed.receiver("keys", 3);
        assert_eq!(*rx.borrow(), 3);
        feed.publish_payload("keys:5");
        assert_eq!(*rx.borrow(), 5);
        feed.publish("keys", 4);
        feed.publish_payload("keys:nope");
        feed.publish_payload("other:9");
        assert_eq!(*rx.borrow(), 5);
        let again = feed.receiver("keys", 1);
        assert_eq!(
            *again.borrow(),
            5,
            "a later subscriber starts at the newest"
        );
    }
}
