//! The same tests on SQLite and on a real PostgreSQL (a throwaway cluster per test; reported as
//! skipped in one line when PostgreSQL is not installed, see `keygate_test_support::parts`).

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use keygate_store::{Backend, Component, Database, Error, Migrated, Step};
use keygate_test_support::{on_both_backends, TempDir, TestDatabase};
use tokio::sync::watch;

/// The test's database ([`TestDatabase`]: a data directory or a throwaway PostgreSQL database).
type Fixture = TestDatabase;

trait Open {
    fn open(&self) -> Database;
}

impl Open for Fixture {
    fn open(&self) -> Database {
        Database::open(&self.url).expect("open the database")
    }
}

/// A `Database` is shared by the threads of a process.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Database>();
};

on_both_backends!(
    migrations_apply_once_and_in_order,
    a_newer_schema_is_refused,
    existing_tables_are_adopted_without_running_their_steps,
    concurrent_migrations_apply_each_step_once,
    a_write_is_seen_by_a_subscriber_on_another_connection_within_a_second,
    transactions_roll_back_on_error_and_panic,
    writes_to_a_component_are_serialised,
    reads_see_one_snapshot_with_its_generation,
    values_round_trip_and_placeholders_bind_by_number,
    a_prepared_statement_runs_once_per_row,
    require_checks_the_version_without_migrating,
);

const DEMO_STEPS: &[Step] = &[
    Step::same("CREATE TABLE demo (id BIGINT PRIMARY KEY, name TEXT NOT NULL UNIQUE);"),
    Step::per_backend(
        "ALTER TABLE demo ADD COLUMN data BLOB;",
        "ALTER TABLE demo ADD COLUMN data BYTEA;",
    ),
    // Needs the column of step 2: steps run in order.
    Step::per_backend(
        "INSERT INTO demo (id, name, data) VALUES (0, 'seed', X'00ff');",
        "INSERT INTO demo (id, name, data) VALUES (0, 'seed', '\\x00ff');",
    ),
];
const DEMO: Component = Component {
    name: "demo",
    steps: DEMO_STEPS,
};
/// The same component as an older binary knows it.
const DEMO_OLD: Component = Component {
    name: "demo",
    steps: &[DEMO_STEPS[0], DEMO_STEPS[1]],
};

fn insert(db: &Database, id: i64, name: &str) -> Result<(), Error> {
    db.write("demo", |tx| {
        tx.execute("INSERT INTO demo (id, name) VALUES ($1, $2)", &[&id, &name])?;
        Ok(())
    })
}

fn names(db: &Database) -> Vec<String> {
    db.read("demo", |tx, _| {
        tx.query("SELECT name FROM demo ORDER BY id", &[])?
            .iter()
            .map(|row| row.get(0))
            .collect()
    })
    .unwrap()
}

/// Waits at most `limit` until `rx` shows `target` or later; returns what it shows.
fn wait_for(rx: &mut watch::Receiver<u64>, target: u64, limit: Duration) -> u64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let _ = tokio::time::timeout(limit, rx.wait_for(|g| *g >= target)).await;
    });
    let seen = *rx.borrow();
    seen
}

fn migrations_apply_once_and_in_order(fx: &Fixture) {
    let db = fx.open();
    assert_eq!(db.schema_version("demo").unwrap(), 0);
    assert_eq!(db.migrate(&DEMO_OLD).unwrap(), Migrated { from: 0, to: 2 });
    assert_eq!(db.migrate(&DEMO).unwrap(), Migrated { from: 2, to: 3 });
    assert_eq!(db.migrate(&DEMO).unwrap(), Migrated { from: 3, to: 3 });
    // Another connection (a second instance starting) finds nothing to do.
    assert_eq!(
        fx.open().migrate(&DEMO).unwrap(),
        Migrated { from: 3, to: 3 }
    );
    assert_eq!(names(&db), ["seed"], "the seeding step ran once");
    let versions: Vec<i64> = db
        .read("demo", |tx, _| {
            tx.query(
                "SELECT version FROM store_migrations WHERE component = 'demo' ORDER BY applied_at, version",
                &[],
            )?
            .iter()
            .map(|row| row.get(0))
            .collect::<Result<_, _>>()
        })
        .unwrap();
    assert_eq!(versions, [1, 2, 3]);
    assert_eq!(db.schema_version("demo").unwrap(), 3);
}

fn a_newer_schema_is_refused(fx: &Fixture) {
    let db = fx.open();
    db.migrate(&DEMO).unwrap();
    let err = db.migrate(&DEMO_OLD).unwrap_err();
    assert!(
        matches!(&err, Error::SchemaTooNew { component, found: 3, supported: 2 } if component == "demo"),
        "{err:?}"
    );
    assert!(err.to_string().contains("upgrade keygate"), "{err}");
    // The store's own tables too: a database from a newer keygate is not opened at all.
    db.write_unannounced(|tx| {
        tx.execute(
            "INSERT INTO store_migrations (component, version, applied_at) VALUES ('store', 99, 'later')",
            &[],
        )
    })
    .unwrap();
    let err = Database::open(&fx.url).unwrap_err();
    assert!(
        matches!(&err, Error::SchemaTooNew { component, found: 99, .. } if component == "store"),
        "{err:?}"
    );
}

fn existing_tables_are_adopted_without_running_their_steps(fx: &Fixture) {
    let db = fx.open();
    // The tables of steps 1 and 2, as an older binary created them with its own bookkeeping.
    db.write_unannounced(|tx| {
        let data = match tx.backend() {
            Backend::Sqlite => "BLOB",
            Backend::Postgres => "BYTEA",
        };
        tx.execute(
            &format!(
                "CREATE TABLE demo (id BIGINT PRIMARY KEY, name TEXT NOT NULL UNIQUE, data {data})"
            ),
            &[],
        )
    })
    .unwrap();
    assert!(db.adopt(&DEMO, 2).unwrap(), "recorded");
    assert!(
        !db.adopt(&DEMO, 2).unwrap(),
        "adopting twice records nothing"
    );
    assert_eq!(db.schema_version("demo").unwrap(), 2);
    assert_eq!(db.migrate(&DEMO).unwrap(), Migrated { from: 2, to: 3 });
    assert_eq!(names(&db), ["seed"], "only the missing step ran");
    let err = db.adopt(&DEMO_OLD, 3).unwrap_err();
    assert!(
        matches!(
            err,
            Error::SchemaTooNew {
                found: 3,
                supported: 2,
                ..
            }
        ),
        "{err:?}"
    );
}

fn concurrent_migrations_apply_each_step_once(fx: &Fixture) {
    let openers: Vec<_> = (0..4)
        .map(|_| {
            let url = fx.url.clone();
            thread::spawn(move || Database::open(&url)?.migrate(&DEMO))
        })
        .collect();
    let mut from_zero = 0;
    for opener in openers {
        let migrated = opener.join().unwrap().expect("every instance starts");
        assert_eq!(migrated.to, 3);
        from_zero += usize::from(migrated.from == 0);
    }
    assert_eq!(from_zero, 1, "exactly one instance applied the steps");
    assert_eq!(names(&fx.open()), ["seed"]);
}

fn a_write_is_seen_by_a_subscriber_on_another_connection_within_a_second(fx: &Fixture) {
    let writer = fx.open();
    writer.migrate(&DEMO).unwrap();
    let reader = fx.open();
    let mut rx = reader.subscribe("demo").unwrap();
    let before = *rx.borrow();
    assert_eq!(before, writer.generation("demo").unwrap());
    let other = reader.subscribe("other").unwrap();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        insert(&writer, i as i64 + 1, name).unwrap();
        let target = before + i as u64 + 1;
        assert_eq!(
            writer.generation("demo").unwrap(),
            target,
            "one bump per write"
        );
        assert_eq!(
            wait_for(&mut rx, target, Duration::from_secs(1)),
            target,
            "the other connection saw write {name} within 1 s"
        );
    }
    assert_eq!(reader.generation("demo").unwrap(), before + 3);
    assert!(
        !other.has_changed().unwrap(),
        "other components do not move"
    );
    // A writer's own subscribers see its writes at once.
    let mut own = writer.subscribe("demo").unwrap();
    insert(&writer, 9, "own").unwrap();
    assert!(own.has_changed().unwrap());
    assert_eq!(*own.borrow_and_update(), before + 4);
}

/// A closure's own error type, as the stores have.
#[derive(Debug)]
enum Refused {
    Db,
    Mine,
}

impl From<Error> for Refused {
    fn from(_: Error) -> Self {
        Refused::Db
    }
}

fn transactions_roll_back_on_error_and_panic(fx: &Fixture) {
    let db = fx.open();
    db.migrate(&DEMO).unwrap();
    let generation = db.generation("demo").unwrap();
    // The closure's own error.
    let out = db.write("demo", |tx| -> Result<(), Refused> {
        tx.execute("INSERT INTO demo (id, name) VALUES (1, 'kept?')", &[])?;
        Err(Refused::Mine)
    });
    assert!(matches!(out, Err(Refused::Mine)));
    // A database error after a successful statement: a duplicate name.
    let err = db
        .write("demo", |tx| {
            tx.execute("INSERT INTO demo (id, name) VALUES (2, 'kept?')", &[])?;
            tx.execute("INSERT INTO demo (id, name) VALUES (3, 'seed')", &[])
        })
        .unwrap_err();
    assert!(err.is_unique_violation(), "{err:?}");
    let shown = err.to_string();
    assert!(
        shown.contains("UNIQUE") || shown.contains("unique"),
        "the message says why: {shown}"
    );
    assert!(!shown.contains("seed"), "and quotes no value: {shown}");
    // A panic inside the closure.
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = db.write("demo", |tx| -> Result<(), Error> {
            tx.execute("INSERT INTO demo (id, name) VALUES (4, 'kept?')", &[])?;
            panic!("the closure panics");
        });
    }));
    assert!(panicked.is_err());
    assert_eq!(names(&db), ["seed"], "nothing of the failed writes stayed");
    assert_eq!(
        db.generation("demo").unwrap(),
        generation,
        "the generation bumps rolled back with them"
    );
    // The connection is usable afterwards.
    insert(&db, 5, "after").unwrap();
    assert_eq!(names(&db), ["seed", "after"]);
    assert_eq!(db.generation("demo").unwrap(), generation + 1);
}

fn writes_to_a_component_are_serialised(fx: &Fixture) {
    fx.open().migrate(&DEMO).unwrap();
    // Read-modify-write from four instances at once: no increment may be lost.
    const WRITERS: usize = 4;
    const WRITES: i64 = 25;
    let start = Arc::new(std::sync::Barrier::new(WRITERS));
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let db = fx.open();
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                for _ in 0..WRITES {
                    db.write("demo", |tx| {
                        let n: i64 = tx
                            .query_one("SELECT id FROM demo WHERE name = 'seed'", &[])?
                            .get(0)?;
                        tx.execute("UPDATE demo SET id = $1 WHERE name = 'seed'", &[&(n + 1)])
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let db = fx.open();
    let n: i64 = db
        .read("demo", |tx, _| {
            tx.query_one("SELECT id FROM demo WHERE name = 'seed'", &[])?
                .get(0)
        })
        .unwrap();
    let total = WRITERS as i64 * WRITES;
    assert_eq!(n, total);
    assert_eq!(db.generation("demo").unwrap(), total as u64);
}

fn reads_see_one_snapshot_with_its_generation(fx: &Fixture) {
    let db = fx.open();
    db.migrate(&DEMO).unwrap();
    let writer = fx.open();
    let (count, generation, count_again) = db
        .read("demo", |tx, generation| {
            let count: i64 = tx.query_one("SELECT COUNT(*) FROM demo", &[])?.get(0)?;
            // A write committed by another instance in the middle of the read.
            insert(&writer, 1, "during").unwrap();
            let again: i64 = tx.query_one("SELECT COUNT(*) FROM demo", &[])?.get(0)?;
            Ok::<_, Error>((count, generation, again))
        })
        .unwrap();
    assert_eq!((count, count_again), (1, 1), "one snapshot");
    assert_eq!(generation, 0);
    assert_eq!(db.generation("demo").unwrap(), 1);
    assert_eq!(names(&db), ["seed", "during"]);
}

fn values_round_trip_and_placeholders_bind_by_number(fx: &Fixture) {
    let db = fx.open();
    let (blob, real) = match db.backend() {
        Backend::Sqlite => ("BLOB", "REAL"),
        Backend::Postgres => ("BYTEA", "DOUBLE PRECISION"),
    };
    let sql = format!(
        "CREATE TABLE vals (i BIGINT, r {real}, t TEXT, b {blob}, n TEXT, f BIGINT, j BIGINT)"
    );
    let bytes = vec![0u8, 1, 255, 0];
    let none: Option<String> = None;
    db.write_unannounced(|tx| {
        tx.execute(&sql, &[])?;
        // Out of order, and $1 twice.
        tx.execute(
            "INSERT INTO vals (t, i, r, b, n, f, j) VALUES ($3, $1, $2, $4, $5, $6, $1)",
            &[&i64::MIN, &-1.5f64, &"é ✓ x", &bytes, &none, &true],
        )
    })
    .unwrap();
    let row = db
        .read("vals", |tx, _| {
            tx.query_one("SELECT i, r, t, b, n, f, j FROM vals", &[])
        })
        .unwrap();
    assert_eq!(row.get::<i64>(0).unwrap(), i64::MIN);
    assert_eq!(row.get::<f64>(1).unwrap(), -1.5);
    assert_eq!(row.get::<String>(2).unwrap(), "é ✓ x");
    assert_eq!(row.get::<Vec<u8>>(3).unwrap(), bytes);
    assert_eq!(row.get::<Option<String>>(4).unwrap(), None);
    assert!(row.get::<bool>(5).unwrap());
    assert_eq!(row.get::<i64>(6).unwrap(), i64::MIN);
    let err = db
        .read("vals", |tx, _| {
            tx.query("SELECT i FROM vals WHERE i = $1", &[])
        })
        .unwrap_err();
    assert!(
        matches!(err, Error::Parameters(_) | Error::Postgres(_)),
        "{err:?}"
    );
}

/// PostgreSQL only: after the server restarts, the writer reconnects on its next call and the
/// subscriber's feed reconnects and catches up.
#[test]
fn postgres_connections_come_back_after_a_server_restart() {
    let Some(fx) = Fixture::postgres("store") else {
        return;
    };
    let writer = fx.open();
    writer.migrate(&DEMO).unwrap();
    let reader = fx.open();
    let mut rx = reader.subscribe("demo").unwrap();
    let server = fx.server.as_ref().unwrap();
    server.stop();
    server.restart();
    insert(&writer, 1, "after restart").expect("the writer reconnects");
    let generation = writer.generation("demo").unwrap();
    assert_eq!(
        wait_for(&mut rx, generation, Duration::from_secs(10)),
        generation,
        "the feed reconnected and caught up"
    );
    assert_eq!(names(&reader), ["seed", "after restart"]);
}

/// PostgreSQL only: a `Database` dropped on an async worker does not take the runtime down.
#[test]
fn postgres_database_drops_on_an_async_worker() {
    let Some(fx) = Fixture::postgres("store") else {
        return;
    };
    let db = fx.open();
    let _ = db.subscribe("demo").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async move { drop(db) });
    assert_eq!(fx.open().generation("demo").unwrap(), 0);
}

/// A write's bump and a `TempDir`'s files are private: the SQLite file is created mode 0600.
#[test]
fn sqlite_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::sqlite("store");
    fx.open();
    let dir = fx.dir.path();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dir), 0o700);
    assert_eq!(mode(&dir.join(keygate_store::DB_FILE)), 0o600);
}

/// PostgreSQL only: `sslmode=require` connects over TLS (rustls, ring) when the server's certificate
/// chains to the `sslrootcert` file, for the main connection and the feed's, and is refused
/// otherwise.
#[test]
fn postgres_tls_verifies_the_server_against_sslrootcert() {
    use keygate_mock::certs::{TestCa, LOCAL_NAMES};
    let Some(fx) = Fixture::postgres("store") else {
        return;
    };
    let ca = TestCa::new("keygate-store test CA");
    let leaf = ca.server_cert(&LOCAL_NAMES);
    fx.server
        .as_ref()
        .unwrap()
        .enable_tls(&leaf.cert_pem, &leaf.key_pem);
    let dir = TempDir::new("store-tls");
    std::fs::create_dir_all(dir.path()).unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();

    let url = format!(
        "{}?sslmode=require&sslrootcert={}",
        fx.url,
        ca_file.display()
    );
    let writer = Database::open(&url).expect("TLS with the test CA");
    let over_tls: bool = writer
        .read("demo", |tx, _| {
            tx.query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )?
            .get(0)
        })
        .unwrap();
    assert!(over_tls, "the connection is encrypted");
    let reader = Database::open(&url).unwrap();
    let mut rx = reader.subscribe("demo").unwrap();
    writer.migrate(&DEMO).unwrap();
    insert(&writer, 1, "over tls").unwrap();
    let generation = writer.generation("demo").unwrap();
    assert_eq!(
        wait_for(&mut rx, generation, Duration::from_secs(1)),
        generation
    );

    let err = Database::open(&format!("{}?sslmode=require", fx.url))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("certificate"),
        "an unknown CA is refused: {err}"
    );
}

fn a_prepared_statement_runs_once_per_row(fx: &Fixture) {
    let db = fx.open();
    db.migrate(&DEMO).unwrap();
    let changed = db
        .write("demo", |tx| {
            // Out of order, as `Tx::execute` allows.
            let mut insert = tx.prepare("INSERT INTO demo (name, id) VALUES ($2, $1)")?;
            let mut changed = 0;
            for (id, name) in [(1i64, "a-1"), (2, "b-2"), (3, "c-3")] {
                changed += insert.execute(&[&id, &name])?;
            }
            assert!(matches!(
                insert.execute(&[&4i64]),
                Err(Error::Parameters(_) | Error::Postgres(_))
            ));
            Ok::<_, Error>(changed)
        })
        .unwrap();
    assert_eq!(changed, 3);
    assert_eq!(names(&db), ["seed", "a-1", "b-2", "c-3"]);
}

fn require_checks_the_version_without_migrating(fx: &Fixture) {
    let db = fx.open();
    let err = db.require(&DEMO).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::SchemaTooOld {
                found: 0,
                expected: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("run `keygate migrate`"), "{err}");
    assert_eq!(db.schema_version("demo").unwrap(), 0, "nothing applied");
    db.migrate(&DEMO_OLD).unwrap();
    assert!(matches!(
        db.require(&DEMO),
        Err(Error::SchemaTooOld { found: 2, .. })
    ));
    db.require(&DEMO_OLD).unwrap();
    db.migrate(&DEMO).unwrap();
    db.require(&DEMO).unwrap();
    assert!(matches!(
        db.require(&DEMO_OLD),
        Err(Error::SchemaTooNew { found: 3, .. })
    ));
}
