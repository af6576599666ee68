//! The ledger's writer thread: commits queued events in batches, one transaction each, deletes
//! rows past the retention period in bounded chunks, and warns (at most every few seconds) when
//! events were dropped. Everything here runs off the request path.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime};

use keygate_store::{Database, ToParam};
use tracing::{info, warn};

use crate::event::{UsageEvent, UsageSource};
use crate::ledger::Counters;
use crate::rollup::{self, Facts, Rollups};
use crate::rows::MultiRow;
use crate::schema;
use crate::time::{duration_micros, to_micros};

/// The most events one transaction commits.
pub(crate) const MAX_BATCH: usize = 1_000;
/// After a batch smaller than [`MAX_BATCH`] the writer waits this long (unless a full batch or a
/// flush is waiting): under load it costs one wake-up and one commit per interval instead of one
/// per request, and an event is committed at most this long after it was recorded.
const BATCH_INTERVAL: Duration = Duration::from_millis(200);
/// How often rows past the retention period are deleted.
const SWEEP_INTERVAL: Duration = Duration::from_secs(3600);
/// Rows one delete statement removes: a long sweep never holds the write lock for long, and
/// batches of events are committed between its chunks.
const SWEEP_CHUNK: i64 = 5_000;
/// The shortest time between two warnings about dropped events.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

static INSERT: LazyLock<MultiRow> = LazyLock::new(|| {
    MultiRow::new(
        "INSERT INTO usage (time, request_id, access_key, provider, model, status, \
         input_tokens, output_tokens, cached_tokens, reasoning_tokens, usage_source, cost_micros, \
         latency_us, ttft_us, attempts, error, tried) "
            .into(),
        String::new(),
        17,
    )
});

// Events are the traffic; `Flush` and `Stop` are rare. Boxing events to even out the variants
// would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Message {
    Event(UsageEvent),
    /// Commit everything queued before this, then acknowledge.
    Flush(SyncSender<()>),
    /// Commit everything queued before this, then end the thread.
    Stop,
}

/// The writer thread's state.
pub(crate) struct Writer {
    /// The writer's own connection: a batch never waits for a report on the readers' one.
    db: Database,
    receiver: Receiver<Message>,
    counters: Arc<Counters>,
    sweep: Option<Sweep>,
    /// The batch being built; its allocation is reused.
    batch: Vec<UsageEvent>,
    acks: Vec<SyncSender<()>>,
    warnings: DropWarnings,
}

/// Deleting rows past the retention period.
struct Sweep {
    retention: Duration,
    /// When the next sweep starts.
    next: Instant,
    /// The cutoff (µs since the epoch) of the sweep in progress.
    cutoff: Option<i64>,
    /// Rows the sweep in progress deleted so far.
    deleted: u64,
}

/// What was last said about dropped events.
#[derive(Default)]
struct DropWarnings {
    reported: u64,
    last: Option<Instant>,
    /// Why the last batch the database refused was refused.
    last_error: Option<String>,
}

impl Writer {
    pub(crate) fn new(
        db: Database,
        receiver: Receiver<Message>,
        counters: Arc<Counters>,
        retention: Option<Duration>,
    ) -> Self {
        Self {
            db,
            receiver,
            counters,
            sweep: retention.map(|retention| Sweep {
                retention,
                next: Instant::now(),
                cutoff: None,
                deleted: 0,
            }),
            batch: Vec::new(),
            acks: Vec::new(),
            warnings: DropWarnings::default(),
        }
    }

    /// Runs until [`Message::Stop`] (or until the ledger is gone).
    pub(crate) fn run(mut self) {
        loop {
            // First, so a sweep's first chunk runs before the first batch: at start, a flush
            // finds a small ledger already swept.
            self.sweep_step();
            // Idle, the writer blocks: the first event after a quiet spell is committed at once.
            let received = match &self.sweep {
                Some(sweep) => self.receiver.recv_timeout(sweep.wait(Instant::now())),
                None => self
                    .receiver
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
            };
            match received {
                Ok(first) => {
                    let stop = self.take_batch(first);
                    let full = self.batch.len() == MAX_BATCH;
                    self.commit();
                    if stop {
                        break;
                    }
                    let sweeping = self.sweep.as_ref().is_some_and(|s| s.cutoff.is_some());
                    if !full && !sweeping {
                        // Woken early by a full batch, a flush or a stop.
                        std::thread::park_timeout(BATCH_INTERVAL);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.warn_about_drops(false);
        }
        self.warn_about_drops(true);
    }

    /// Moves `first` and whatever else is queued, up to a full batch, into the batch; `true` on
    /// [`Message::Stop`].
    fn take_batch(&mut self, first: Message) -> bool {
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Event(event) => self.batch.push(event),
                Message::Flush(ack) => self.acks.push(ack),
                Message::Stop => return true,
            }
            next = if self.batch.len() < MAX_BATCH {
                self.receiver.try_recv().ok()
            } else {
                None
            };
        }
        false
    }

    /// Commits the batch in one transaction (a refused batch is counted as dropped), then
    /// acknowledges the flushes that were queued behind it.
    fn commit(&mut self) {
        if !self.batch.is_empty() {
            if let Err(err) = insert(&self.db, &self.batch) {
                self.counters
                    .dropped
                    .fetch_add(self.batch.len() as u64, Ordering::Relaxed);
                self.warnings.last_error = Some(err.to_string());
            }
            self.counters
                .queued
                .fetch_sub(self.batch.len(), Ordering::Relaxed);
            self.batch.clear();
        }
        for ack in self.acks.drain(..) {
            let _ = ack.send(());
        }
    }

    /// Deletes one chunk of expired rows when a sweep is due or in progress.
    fn sweep_step(&mut self) {
        let Some(sweep) = &mut self.sweep else { return };
        let cutoff = match sweep.cutoff {
            Some(cutoff) => cutoff,
            None if Instant::now() >= sweep.next => {
                let cutoff = SystemTime::now()
                    .checked_sub(sweep.retention)
                    .map_or(i64::MIN, to_micros);
                *sweep.cutoff.insert(cutoff)
            }
            None => return,
        };
        let deleted = schema::write(&self.db, |tx| {
            tx.execute(
                "DELETE FROM usage WHERE id IN (SELECT id FROM usage WHERE time < $1 LIMIT $2)",
                &[&cutoff, &SWEEP_CHUNK],
            )
        });
        match deleted {
            Ok(deleted) if deleted == SWEEP_CHUNK as u64 => {
                sweep.deleted += deleted;
                return;
            }
            Ok(deleted) => {
                if let Err(err) = schema::write(&self.db, |tx| rollup::sweep(tx, cutoff)) {
                    warn!(error = %err, "usage ledger: cannot delete rollups past the retention period");
                }
                let total = sweep.deleted + deleted;
                if total > 0 {
                    info!(
                        rows = total,
                        retention_seconds = sweep.retention.as_secs(),
                        "usage ledger: deleted rows past the retention period"
                    );
                }
            }
            Err(err) => {
                warn!(error = %err, "usage ledger: cannot delete rows past the retention period")
            }
        }
        sweep.cutoff = None;
        sweep.deleted = 0;
        sweep.next = Instant::now() + SWEEP_INTERVAL;
    }

    /// Says how many events were dropped since the last warning, at most once per
    /// [`WARN_INTERVAL`] (and once more when the writer ends).
    fn warn_about_drops(&mut self, at_exit: bool) {
        let total = self.counters.dropped.load(Ordering::Relaxed);
        let warnings = &mut self.warnings;
        let recently = warnings
            .last
            .is_some_and(|last| last.elapsed() < WARN_INTERVAL);
        if total == warnings.reported || (recently && !at_exit) {
            return;
        }
        let dropped = total - warnings.reported;
        match warnings.last_error.take() {
            Some(error) => warn!(
                dropped,
                total,
                error,
                "usage events dropped: the usage ledger could not commit them"
            ),
            None => warn!(
                dropped,
                total,
                "usage events dropped: the usage ledger queue was full (the disk is slower than the traffic)"
            ),
        }
        warnings.reported = total;
        warnings.last = Some(Instant::now());
    }
}

impl Sweep {
    /// How long the writer may wait for events before this sweep needs it.
    fn wait(&self, now: Instant) -> Duration {
        match self.cutoff {
            Some(_) => Duration::ZERO,
            None => self.next.saturating_duration_since(now),
        }
    }
}

/// Inserts `events` in one transaction, and adds them to the rollups.
fn insert(db: &Database, events: &[UsageEvent]) -> keygate_store::Result<()> {
    let rows: Vec<Columns<'_>> = events.iter().map(Columns::of).collect();
    schema::write(db, |tx| {
        INSERT.run(tx, &rows, Columns::params)?;
        let mut rollups = Rollups::default();
        for row in &rows {
            rollups.add(&row.facts());
        }
        rollups.write(tx)
    })
}

/// One event as the columns of its row.
struct Columns<'a> {
    time: i64,
    request_id: &'a str,
    access_key: Option<&'a str>,
    provider: &'a str,
    model: &'a str,
    status: i64,
    input_tokens: i64,
    output_tokens: i64,
    cached_tokens: i64,
    reasoning_tokens: i64,
    usage_source: &'static str,
    cost_micros: Option<i64>,
    latency_us: i64,
    ttft_us: Option<i64>,
    attempts: i64,
    error: Option<&'a str>,
    /// JSON; NULL without attempts.
    tried: Option<String>,
}

impl<'a> Columns<'a> {
    fn of(event: &'a UsageEvent) -> Self {
        Columns {
            time: to_micros(event.time),
            request_id: &event.request_id,
            access_key: event.access_key.as_deref(),
            provider: &event.provider,
            model: &event.model,
            status: event.status.into(),
            input_tokens: int(event.input_tokens),
            output_tokens: int(event.output_tokens),
            cached_tokens: int(event.cached_tokens),
            reasoning_tokens: int(event.reasoning_tokens),
            usage_source: event.usage_source.as_str(),
            cost_micros: event.cost_micros.map(int),
            latency_us: duration_micros(event.latency),
            ttft_us: event.time_to_first_token.map(duration_micros),
            attempts: event.attempts.into(),
            error: event.error.as_deref(),
            tried: if event.tried.is_empty() {
                None
            } else {
                serde_json::to_string(&event.tried).ok()
            },
        }
    }

    /// The parameters of [`INSERT`], in its column order.
    fn params<'r>(&'r self, args: &mut Vec<&'r dyn ToParam>) {
        args.extend([
            &self.time as &dyn ToParam,
            &self.request_id,
            &self.access_key,
            &self.provider,
            &self.model,
            &self.status,
            &self.input_tokens,
            &self.output_tokens,
            &self.cached_tokens,
            &self.reasoning_tokens,
            &self.usage_source,
            &self.cost_micros,
            &self.latency_us,
            &self.ttft_us,
            &self.attempts,
            &self.error,
            &self.tried,
        ]);
    }

    fn facts(&self) -> Facts<'_> {
        Facts {
            time_us: self.time,
            access_key: self.access_key,
            provider: self.provider,
            model: self.model,
            status: self.status,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cached_tokens: self.cached_tokens,
            reasoning_tokens: self.reasoning_tokens,
            estimated: self.usage_source == UsageSource::Estimated.as_str(),
            cost_micros: self.cost_micros,
            latency_us: self.latency_us,
            ttft_us: self.ttft_us,
        }
    }
}

/// Stored integers are signed: counts beyond `i64::MAX` (never seen in practice) saturate.
pub(crate) fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
