//! [`Ledger`]: the gateway's handle on the ledger. Recording costs a few atomic operations and a
//! channel send; a writer thread does every bit of I/O.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use keygate_store::{Database, Location};

use crate::error::Error;
use crate::event::UsageEvent;
use crate::query::Reader;
use crate::schema;
use crate::writer::{Message, Writer, MAX_BATCH};

/// How a [`Ledger`] queues and keeps events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerConfig {
    /// Events recorded but not yet committed, at most; beyond it events are dropped and counted
    /// ([`Ledger::dropped`]), so a slow disk costs events, never memory.
    pub queue_capacity: usize,
    /// Rows older than this are deleted (at start, then hourly); `None` keeps them forever.
    pub retention: Option<Duration>,
    /// Whether opening applies missing migration steps; when false, a database not exactly at this
    /// binary's version is refused (`keygate serve --no-migrate`).
    pub apply_migrations: bool,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 100_000,
            retention: Some(Duration::from_secs(90 * 86_400)),
            apply_migrations: true,
        }
    }
}

/// Counters the recording side and the writer share.
#[derive(Default)]
pub(crate) struct Counters {
    /// Events accepted and not yet committed (or given up on).
    pub(crate) queued: AtomicUsize,
    /// Events that never reached the database: refused by a full queue, or in a batch the database
    /// refused.
    pub(crate) dropped: AtomicU64,
}

/// The usage ledger of one gateway: [`Ledger::record`] queues an event, one writer thread commits
/// them to the database in batches. Dropping it commits what is queued and stops the thread.
///
/// It holds two connections: the writer thread's, and the [`Reader`]'s that the reports share, so
/// a batch never waits for a report and a report never for a batch (SQLite in WAL mode and
/// PostgreSQL both let a read run beside a write).
pub struct Ledger {
    location: Location,
    reader: Arc<Reader>,
    capacity: usize,
    counters: Arc<Counters>,
    sender: mpsc::Sender<Message>,
    writer: Thread,
    join: Option<JoinHandle<()>>,
}

impl Ledger {
    /// Opens (creating, adopting and migrating as needed, unless `config.apply_migrations` is off) the
    /// ledger at `location` and starts its writer. See [`crate::location`] for where a gateway keeps it.
    pub fn open(location: &Location, config: LedgerConfig) -> Result<Ledger, Error> {
        let db = if config.apply_migrations {
            schema::open_for_writing(location)?.0
        } else {
            schema::open_current(location)?
        };
        let reader = Arc::new(Reader::with_database(Database::open_at(location.clone())?)?);
        let counters = Arc::new(Counters::default());
        let (sender, receiver) = mpsc::channel();
        let writer = Writer::new(db, receiver, counters.clone(), config.retention);
        let join = std::thread::Builder::new()
            .name("kg-usage-ledger".into())
            .spawn(move || writer.run())
            .map_err(Error::Thread)?;
        Ok(Ledger {
            location: location.clone(),
            reader,
            capacity: config.queue_capacity,
            counters,
            sender,
            writer: join.thread().clone(),
            join: Some(join),
        })
    }

    /// Where the ledger is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The reports' handle on the ledger (one connection, shared: reports take turns on it).
    pub fn reader(&self) -> Arc<Reader> {
        Arc::clone(&self.reader)
    }

    /// Queues `event` for the writer. Never blocks and does no I/O: when the queue is full the
    /// event is dropped and counted.
    pub fn record(&self, event: UsageEvent) {
        let accepted =
            self.counters
                .queued
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |queued| {
                    (queued < self.capacity).then_some(queued + 1)
                });
        let Ok(before) = accepted else {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if self.sender.send(Message::Event(event)).is_err() {
            // The writer thread is gone (it panicked): nothing will commit this event.
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // The writer pauses between small batches; a full batch should not wait for the pause
        // to end.
        if before + 1 == MAX_BATCH {
            self.writer.unpark();
        }
    }

    /// Blocks until every event recorded before this call is committed (or counted as dropped).
    /// For shutdown and tests; never call it on the request path.
    pub fn flush(&self) {
        let (ack, done) = mpsc::sync_channel(1);
        if self.sender.send(Message::Flush(ack)).is_ok() {
            self.writer.unpark();
            // An error means the writer thread is gone: nothing is left to wait for.
            let _ = done.recv();
        }
    }

    /// Events dropped since the ledger opened: refused by a full queue, or lost with a batch the
    /// database refused (exported as `keygate_usage_ledger_dropped_total`).
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        // The writer commits everything queued before the stop, then ends.
        if self.sender.send(Message::Stop).is_ok() {
            self.writer.unpark();
        }
        if let Some(join) = self.join.take() {
            let _ = join.join();
        }
    }
}
