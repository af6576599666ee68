//! [`Database`]: one connection to the store's database, SQLite or PostgreSQL.

use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::feed::{self, Feed, Source};
use crate::location::{Backend, Location};
use crate::marker;
use crate::migrate::{self, Component, Migrated, STORE};
use crate::postgres::Connector;
use crate::tx::Tx;

/// Every component's generation, as the feed and the SQLite marker carry them.
pub(crate) type Generations = Vec<(String, u64)>;

/// Key of the PostgreSQL advisory lock migrations hold, so instances starting together migrate one at a
/// time (`keygate` in ASCII).
const MIGRATION_LOCK: i64 = 0x006b_6579_6761_7465;

/// A connection to the database at a [`Location`], shared by the threads of one process (calls take
/// turns). Every write runs in a transaction that bumps its component's generation; [`Database::subscribe`]
/// follows those generations, from every process and instance.
///
/// The calls block: use them from a thread of their own or `tokio::task::spawn_blocking`, never on an
/// async worker. Inside a transaction closure use only its [`Tx`] (calling the `Database` again would wait
/// for itself).
pub struct Database {
    location: Location,
    conn: Conn,
    feed: Arc<Feed>,
}

enum Conn {
    Sqlite {
        path: PathBuf,
        conn: Mutex<Connection>,
    },
    Postgres {
        connector: Arc<Connector>,
        /// `None` after the connection closed: opened again on the next call.
        client: Mutex<Option<Client>>,
    },
}

#[derive(Clone, Copy)]
enum Kind {
    /// Serialised with every other write (SQLite `BEGIN IMMEDIATE`).
    Write,
    /// One consistent snapshot (PostgreSQL `REPEATABLE READ READ ONLY`).
    Read,
    /// A write that also holds the migration lock.
    Migrate,
}

impl Database {
    /// Opens the database `value` names (see [`Location::parse`]): `postgres://...`, `sqlite:PATH` or a
    /// data directory. A new SQLite file is created (mode 0600); the store's own tables are created or
    /// upgraded. Components are migrated by [`Database::migrate`].
    pub fn open(value: &str) -> Result<Self> {
        Self::open_at(Location::parse(value)?)
    }

    /// [`Database::open`] for a parsed location.
    pub fn open_at(location: Location) -> Result<Self> {
        let conn = match &location {
            Location::Sqlite(path) => Conn::Sqlite {
                path: path.clone(),
                conn: Mutex::new(crate::sqlite::open(path)?),
            },
            Location::Postgres(url) => {
                let connector = Connector::new(url)?;
                let client = connector.connect()?;
                Conn::Postgres {
                    connector: Arc::new(connector),
                    client: Mutex::new(Some(client)),
                }
            }
        };
        let db = Self {
            location,
            conn,
            feed: Arc::default(),
        };
        db.migrate(&STORE)?;
        Ok(db)
    }

    /// Where the database is (shown without password).
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The engine.
    pub fn backend(&self) -> Backend {
        self.location.backend()
    }

    /// Brings `component`'s tables up to date, applying its missing steps in order in one transaction
    /// that holds the migration lock (instances starting together take turns). [`Error::SchemaTooNew`]
    /// when the database is newer than `component.steps`.
    pub fn migrate(&self, component: &Component) -> Result<Migrated> {
        self.transact(Kind::Migrate, |tx| migrate::apply(tx, component))
    }

    /// Checks that `component`'s tables are exactly at this binary's version, changing nothing:
    /// [`Error::SchemaTooOld`] when steps are missing (for deployments that migrate in a release step
    /// and start instances with migrations off), [`Error::SchemaTooNew`] when the database is ahead.
    pub fn require(&self, component: &Component) -> Result<()> {
        self.transact(Kind::Read, |tx| migrate::require(tx, component))
    }

    /// Records `component`'s steps up to `version` as applied without running them, unless the database
    /// already records the component: for tables created before this layer kept the record (an existing
    /// data directory's `PRAGMA user_version`). Returns whether anything was recorded. Holds the migration
    /// lock, so call it before [`Database::migrate`].
    pub fn adopt(&self, component: &Component, version: i64) -> Result<bool> {
        self.transact(Kind::Migrate, |tx| migrate::adopt(tx, component, version))
    }

    /// The version of `component` recorded in the database (0 when never migrated).
    pub fn schema_version(&self, component: &str) -> Result<i64> {
        self.transact(Kind::Read, |tx| migrate::recorded_version(tx, component))
    }

    /// Runs `f` in a write transaction that first bumps `component`'s generation (on PostgreSQL this also
    /// takes the row lock that serialises the component's writes, and queues the notification sent at
    /// commit). Commits when `f` returns `Ok`, rolls everything back when it fails.
    pub fn write<T, E: From<Error>>(
        &self,
        component: &str,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        migrate::check_name(component)?;
        let (out, generation, all) =
            self.transact(Kind::Write, |tx| -> Result<(T, u64, Generations), E> {
                let generation = bump(tx, component)?;
                let out = f(tx)?;
                let all = match tx.backend() {
                    Backend::Sqlite => all_generations(tx)?,
                    Backend::Postgres => Vec::new(),
                };
                Ok((out, generation, all))
            })?;
        self.feed.publish(component, generation);
        if let Conn::Sqlite { path, .. } = &self.conn {
            marker::announce(path, &all);
        }
        Ok(out)
    }

    /// Runs `f` in a write transaction without bumping a generation: for bookkeeping no cache reads (such
    /// as last-use times), which would otherwise make every cache reload.
    pub fn write_unannounced<T, E: From<Error>>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.transact(Kind::Write, f)
    }

    /// Runs `f` in one read-only snapshot, passing `component`'s generation in that snapshot, so a cache
    /// built from it is exactly the state of that generation.
    pub fn read<T, E: From<Error>>(
        &self,
        component: &str,
        f: impl FnOnce(&mut Tx<'_>, u64) -> Result<T, E>,
    ) -> Result<T, E> {
        self.transact(Kind::Read, |tx| {
            let generation = generation(tx, component)?;
            f(tx, generation)
        })
    }

    /// The generation of `component` the last announced write recorded, without a database access: on
    /// SQLite the change marker next to the file (written after every commit, so a write by another
    /// process is known before the feed has read it); `None` on PostgreSQL, whose feed is told at commit.
    pub fn announced(&self, component: &str) -> Option<u64> {
        match &self.conn {
            Conn::Sqlite { path, .. } => marker::announced(path, component),
            Conn::Postgres { .. } => None,
        }
    }

    /// `component`'s generation now (0 before its first write): what a cache compares with its own after
    /// a lookup missed, when the feed may not have caught up yet.
    pub fn generation(&self, component: &str) -> Result<u64> {
        self.transact(Kind::Read, |tx| generation(tx, component))
    }

    /// A watch of `component`'s generation, updated after every committed write from any process or
    /// instance: at once for writes through this `Database`, within about 250 ms otherwise (PostgreSQL
    /// `LISTEN`/`NOTIFY`, else polling). The first call starts the feed's thread and connection.
    pub fn subscribe(&self, component: &str) -> Result<watch::Receiver<u64>> {
        migrate::check_name(component)?;
        let receiver = self.feed.receiver(component, self.generation(component)?);
        self.start_feed()?;
        Ok(receiver)
    }

    /// Unparks `thread` after every change of `component`'s generation, as [`Database::subscribe`]
    /// would report it: for a consumer on a std thread that parks between checks.
    pub fn wake_on_change(&self, component: &str, thread: std::thread::Thread) -> Result<()> {
        migrate::check_name(component)?;
        self.feed.wake_on_change(component, thread);
        self.start_feed()
    }

    /// Starts the feed's thread and connection, once.
    fn start_feed(&self) -> Result<()> {
        let started = match &self.conn {
            Conn::Sqlite { path, .. } => {
                let path = path.clone();
                self.feed.start(move || SqliteSource::open(&path))
            }
            Conn::Postgres { connector, .. } => {
                let connector = Arc::clone(connector);
                self.feed.start(move || PgSource::connect(&connector))
            }
        };
        started.map_err(Error::FeedThread)
    }

    fn transact<T, E: From<Error>>(
        &self,
        kind: Kind,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        match &self.conn {
            Conn::Sqlite { conn, .. } => {
                let conn = lock(conn);
                let behavior = match kind {
                    Kind::Read => TransactionBehavior::Deferred,
                    Kind::Write | Kind::Migrate => TransactionBehavior::Immediate,
                };
                let tx =
                    rusqlite::Transaction::new_unchecked(&conn, behavior).map_err(Error::from)?;
                let out = f(&mut Tx::sqlite(&tx))?;
                tx.commit().map_err(Error::from)?;
                Ok(out)
            }
            Conn::Postgres { connector, client } => {
                let mut slot = lock(client);
                let mut tx = begin_pg(&mut slot, connector, kind)?;
                if matches!(kind, Kind::Migrate) {
                    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
                }
                let out = f(&mut tx.tx())?;
                tx.commit()?;
                Ok(out)
            }
        }
    }
}

/// Begins a transaction of `kind` on the connection in `slot`, connecting first when it is gone. A begin
/// that fails because the connection turns out closed (the server restarted) connects and begins again:
/// nothing ran yet.
fn begin_pg<'c>(
    slot: &'c mut Option<Client>,
    connector: &Connector,
    kind: Kind,
) -> Result<PgTransaction<'c>> {
    let begin = match kind {
        Kind::Write | Kind::Migrate => "BEGIN",
        Kind::Read => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    };
    let client = connected(slot, connector)?;
    if let Err(err) = client.batch_execute(begin) {
        if !client.is_closed() {
            return Err(err.into());
        }
        *slot = None;
        connected(slot, connector)?.batch_execute(begin)?;
    }
    Ok(PgTransaction {
        client: slot.as_mut().ok_or(Error::Closed)?,
        open: true,
    })
}

/// The connection in `slot`, opened again when it is gone.
fn connected<'c>(slot: &'c mut Option<Client>, connector: &Connector) -> Result<&'c mut Client> {
    if slot.as_ref().is_none_or(Client::is_closed) {
        *slot = None;
        *slot = Some(connector.connect()?);
    }
    slot.as_mut().ok_or(Error::Closed)
}

/// An open transaction on a PostgreSQL connection, rolled back when dropped uncommitted (the closure
/// failed or panicked). Plain `BEGIN`/`COMMIT` rather than the client's own transaction type, so a
/// stale connection can be replaced before it starts.
struct PgTransaction<'c> {
    client: &'c mut Client,
    open: bool,
}

impl PgTransaction<'_> {
    fn tx(&mut self) -> Tx<'_> {
        Tx::postgres(&mut *self.client)
    }

    fn execute(&mut self, sql: &str, params: &[&dyn crate::ToParam]) -> Result<u64> {
        self.tx().execute(sql, params)
    }

    fn commit(mut self) -> Result<()> {
        // A failed COMMIT ends the transaction too (rolled back by the server).
        self.open = false;
        Ok(self.client.batch_execute("COMMIT")?)
    }
}

impl Drop for PgTransaction<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.client.batch_execute("ROLLBACK");
        }
    }
}

/// Bumps `component`'s generation and, on PostgreSQL, queues its notification; returns the new value.
fn bump(tx: &mut Tx<'_>, component: &str) -> Result<u64> {
    let generation: u64 = tx
        .query_one(
            "INSERT INTO store_generations (component, generation) VALUES ($1, 1) \
             ON CONFLICT (component) DO UPDATE SET generation = store_generations.generation + 1 \
             RETURNING generation",
            &[&component],
        )?
        .get(0)?;
    if tx.backend() == Backend::Postgres {
        let payload = format!("{component}:{generation}");
        tx.execute("SELECT pg_notify($1, $2)", &[&feed::CHANNEL, &payload])?;
    }
    Ok(generation)
}

fn generation(tx: &mut Tx<'_>, component: &str) -> Result<u64> {
    match tx.query_opt(
        "SELECT generation FROM store_generations WHERE component = $1",
        &[&component],
    )? {
        Some(row) => row.get(0),
        None => Ok(0),
    }
}

/// Every component's generation, for the feed.
fn all_generations(tx: &mut Tx<'_>) -> Result<Generations> {
    tx.query("SELECT component, generation FROM store_generations", &[])?
        .iter()
        .map(|row| Ok((row.get(0)?, row.get(1)?)))
        .collect()
}

/// The SQLite feed: its own connection, read when the change marker is written and every
/// [`feed::POLL`] (writes that announce nothing: older keygate versions, a marker that cannot be
/// watched).
struct SqliteSource {
    conn: Connection,
    marked: mpsc::Receiver<()>,
    /// Stops watching when dropped.
    _watch: Option<notify::RecommendedWatcher>,
}

impl SqliteSource {
    fn open(path: &std::path::Path) -> Result<Self> {
        let (tx, marked) = mpsc::channel();
        let watch = marker::watch(path, move || {
            let _ = tx.send(());
        });
        if let Err(err) = &watch {
            tracing::warn!(error = %err, "cannot watch the database's change marker; changes are found by polling");
        }
        Ok(Self {
            conn: crate::sqlite::open(path)?,
            marked,
            _watch: watch.ok(),
        })
    }
}

impl Source for SqliteSource {
    fn generations(&mut self) -> Result<Vec<(String, u64)>> {
        all_generations(&mut Tx::sqlite(&self.conn))
    }

    fn wait(&mut self, feed: &Feed, timeout: Duration) -> Result<()> {
        if self.marked.recv_timeout(timeout).is_ok() {
            // One read covers every event that arrived meanwhile.
            while self.marked.try_recv().is_ok() {}
        }
        for (component, generation) in self.generations()? {
            feed.publish(&component, generation);
        }
        Ok(())
    }
}

/// The PostgreSQL feed: a dedicated connection that `LISTEN`s.
struct PgSource(Client);

impl PgSource {
    fn connect(connector: &Connector) -> Result<Self> {
        let mut client = connector.connect()?;
        client.batch_execute(&format!("LISTEN {}", feed::CHANNEL))?;
        Ok(Self(client))
    }
}

impl Source for PgSource {
    fn generations(&mut self) -> Result<Vec<(String, u64)>> {
        all_generations(&mut Tx::postgres(&mut self.0))
    }

    fn wait(&mut self, feed: &Feed, timeout: Duration) -> Result<()> {
        {
            let mut notifications = self.0.notifications();
            let mut pending = notifications.timeout_iter(timeout);
            while let Some(notification) = pending.next()? {
                feed.publish_payload(notification.payload());
                if feed.stopping() {
                    break;
                }
            }
        }
        // A connection that ended cleanly reports no error: it just stops waiting.
        if self.0.is_closed() {
            return Err(Error::Closed);
        }
        Ok(())
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        self.feed.stop();
        // The synchronous client owns a small runtime, which tokio refuses to drop on an async worker:
        // close it on a thread of its own there.
        if let Conn::Postgres { client, .. } = &mut self.conn {
            let client = client.get_mut().unwrap_or_else(|p| p.into_inner()).take();
            if client.is_some() && tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::Builder::new()
                    .name("keygate-store-close".into())
                    .spawn(move || drop(client));
            }
        }
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
