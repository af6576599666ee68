//! The ledger end to end within the crate, on SQLite and on a real PostgreSQL (a throwaway
//! cluster per test; reported as skipped in one line when PostgreSQL is not installed):
//! recording, batching, flushing, a full queue, retention, the reports over what was written,
//! and (SQLite) files older keygates wrote.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use keygate_store::{Database, Location};
use keygate_test_support::{on_both_backends, TestDatabase};
use rusqlite::Connection;

use crate::hist::Histogram;
use crate::time::{from_micros, to_micros};
use crate::*;

/// A ledger location to test against, and what keeps it alive.
struct Fixture {
    location: Location,
    database: TestDatabase,
}

impl From<TestDatabase> for Fixture {
    fn from(database: TestDatabase) -> Self {
        let location = if database.is_postgres() {
            Location::parse(&database.url).expect("a PostgreSQL URL")
        } else {
            default_location(database.dir.path())
        };
        Self { location, database }
    }
}

impl Fixture {
    fn sqlite() -> Self {
        TestDatabase::sqlite("usage").into()
    }

    fn ledger(&self, config: LedgerConfig) -> Ledger {
        Ledger::open(&self.location, config).expect("open the ledger")
    }

    fn reader(&self) -> Reader {
        Reader::open(&self.location).expect("open a reader")
    }

    /// The ledger's database, for what the API does not show.
    fn database(&self) -> Database {
        Database::open_at(self.location.clone()).expect("open the database")
    }

    /// The integer `sql` selects.
    fn scalar(&self, sql: &str) -> i64 {
        self.database()
            .read("usage", |tx, _| tx.query_one(sql, &[])?.get::<i64>(0))
            .expect(sql)
    }

    fn rows(&self) -> u64 {
        let all = Query {
            group_by: GroupBy::Provider,
            ..Query::default()
        };
        self.reader().report(&all).unwrap().total.requests
    }
}

on_both_backends!(
    an_event_round_trips_with_every_field,
    batches_larger_than_one_transaction_are_all_written_and_flush_shows_them,
    a_full_queue_drops_and_counts_instead_of_growing,
    dropping_the_ledger_commits_what_is_queued,
    retention_deletes_old_rows_at_start,
    totals_group_by_utc_day_and_hour_and_sum_exactly,
    events_page_newest_first,
    an_unwritten_ledger_reads_as_empty_and_a_newer_one_is_refused,
    the_overview_sums_minutes_into_buckets_with_percentiles,
    breakdowns_read_the_hourly_rollup_or_the_rows_alike,
    events_keep_their_attempts_and_are_found_by_id,
    retention_deletes_whole_rollup_minutes_and_hours,
    two_ledgers_on_one_database_keep_both_histograms,
);

fn at(rfc3339: &str) -> SystemTime {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .into()
}

/// A successful priced request by `key` to `model` at `time`.
fn event(id: &str, time: SystemTime, key: Option<&str>, model: &str) -> UsageEvent {
    UsageEvent {
        time,
        request_id: id.into(),
        access_key: key.map(str::to_owned),
        provider: "openai".into(),
        model: model.into(),
        status: 200,
        input_tokens: 10,
        output_tokens: 20,
        cached_tokens: 0,
        reasoning_tokens: 0,
        usage_source: UsageSource::Provider,
        cost_micros: Some(3),
        latency: Duration::from_micros(1_500),
        time_to_first_token: None,
        attempts: 1,
        error: None,
        tried: Vec::new(),
    }
}

fn unlimited() -> LedgerConfig {
    LedgerConfig {
        retention: None,
        ..LedgerConfig::default()
    }
}

fn an_event_round_trips_with_every_field(f: &Fixture) {
    let ledger = f.ledger(unlimited());
    let full = UsageEvent {
        time: from_micros(1_795_000_000_123_456),
        request_id: "req-full".into(),
        access_key: Some("aigk_01ABC".into()),
        provider: "anthropic".into(),
        model: "claude-sonnet-4-5".into(),
        status: 200,
        input_tokens: 1_234,
        output_tokens: 567,
        cached_tokens: 1_000,
        reasoning_tokens: 89,
        usage_source: UsageSource::Estimated,
        cost_micros: Some(12_345),
        latency: Duration::from_micros(2_437),
        time_to_first_token: Some(Duration::from_micros(812)),
        attempts: 2,
        error: Some("upstream stream ended early: connection reset".into()),
        tried: Vec::new(),
    };
    let bare = UsageEvent {
        request_id: "req-bare".into(),
        time: full.time + Duration::from_secs(1),
        ..event("", SystemTime::UNIX_EPOCH, None, "gpt-4o")
    };
    let bare = UsageEvent {
        cost_micros: None,
        ..bare
    };
    ledger.record(full.clone());
    ledger.record(bare.clone());
    ledger.flush();
    let events = f.reader().events(&Query::default(), 10, 0).unwrap();
    assert_eq!(events, [bare, full.clone()], "newest first");
    let json = serde_json::to_value(&full).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "time": "2026-11-18T11:06:40.123456Z", "request_id": "req-full",
            "access_key": "aigk_01ABC", "provider": "anthropic", "model": "claude-sonnet-4-5",
            "status": 200, "input_tokens": 1234, "output_tokens": 567, "cached_tokens": 1000,
            "reasoning_tokens": 89, "usage_source": "estimated", "cost_micros": 12345,
            "cost_usd": 0.012345, "latency_ms": 2.437, "time_to_first_token_ms": 0.812,
            "attempts": 2, "error": "upstream stream ended early: connection reset"
        })
    );
}

fn batches_larger_than_one_transaction_are_all_written_and_flush_shows_them(f: &Fixture) {
    let ledger = f.ledger(unlimited());
    let now = SystemTime::now();
    // More than two transactions' worth.
    let count = 2_500;
    for index in 0..count {
        ledger.record(event(&format!("req-{index}"), now, None, "gpt-4o"));
    }
    ledger.flush();
    assert_eq!(f.rows(), count);
    let distinct = f.scalar("SELECT COUNT(DISTINCT request_id) FROM usage");
    assert_eq!(distinct as u64, count);
    assert_eq!(ledger.dropped(), 0);
    // A flush with nothing queued returns at once; so does one after the writer went idle.
    ledger.flush();
    ledger.record(event("req-last", now, None, "gpt-4o"));
    ledger.flush();
    assert_eq!(f.rows(), count + 1);
}

fn a_full_queue_drops_and_counts_instead_of_growing(f: &Fixture) {
    let ledger = f.ledger(LedgerConfig {
        queue_capacity: 10,
        retention: None,
        ..LedgerConfig::default()
    });
    // Another connection takes the ledger's turn to write: the writer cannot commit, so nothing
    // leaves the queue.
    let (holding, held) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let db = f.database();
    let blocker = std::thread::spawn(move || {
        crate::schema::write(&db, |_| {
            holding.send(()).unwrap();
            let _ = released.recv();
            Ok(())
        })
        .unwrap();
    });
    held.recv().unwrap();
    let now = SystemTime::now();
    for index in 0..25 {
        ledger.record(event(&format!("req-{index}"), now, None, "gpt-4o"));
    }
    assert_eq!(ledger.dropped(), 15, "only the queue's capacity is kept");
    release.send(()).unwrap();
    blocker.join().unwrap();
    ledger.flush();
    assert_eq!(f.rows(), 10);
    // Room again once committed.
    ledger.record(event("req-after", now, None, "gpt-4o"));
    ledger.flush();
    assert_eq!((f.rows(), ledger.dropped()), (11, 15));
}

fn dropping_the_ledger_commits_what_is_queued(f: &Fixture) {
    let ledger = f.ledger(unlimited());
    for index in 0..50 {
        ledger.record(event(&format!("req-{index}"), SystemTime::now(), None, "m"));
    }
    drop(ledger);
    assert_eq!(f.rows(), 50);
}

fn retention_deletes_old_rows_at_start(f: &Fixture) {
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    let ledger = f.ledger(unlimited());
    for (id, age) in [("old", 100), ("older", 400), ("recent", 1)] {
        ledger.record(event(id, now - day * age, None, "gpt-4o"));
    }
    drop(ledger);
    assert_eq!(f.rows(), 3, "no retention keeps everything");
    let ledger = f.ledger(LedgerConfig {
        retention: Some(day * 90),
        ..LedgerConfig::default()
    });
    // The writer's first step is the sweep's first chunk, before any batch or flush.
    ledger.flush();
    let left = f.reader().events(&Query::default(), 10, 0).unwrap();
    assert_eq!(
        left.iter()
            .map(|e| e.request_id.as_str())
            .collect::<Vec<_>>(),
        ["recent"]
    );
}

fn totals_group_by_utc_day_and_hour_and_sum_exactly(f: &Fixture) {
    let ledger = f.ledger(unlimited());
    let late = at("2026-03-01T23:59:59.999999Z");
    let midnight = at("2026-03-02T00:00:00Z");
    let next_hour = at("2026-03-02T01:30:00+00:00");
    let mut events = vec![
        event("a", late, Some("aigk_A"), "gpt-4o"),
        event("b", midnight, Some("aigk_A"), "gpt-4o-mini"),
        event("c", next_hour, Some("aigk_B"), "gpt-4o"),
        event("d", next_hour, None, "claude-sonnet-4-5"),
    ];
    events[1].cost_micros = Some(1_000_001);
    events[2].status = 429;
    events[2].usage_source = UsageSource::Estimated;
    events[3].provider = "anthropic".into();
    events[3].cost_micros = None;
    events[3].cached_tokens = 7;
    events[3].reasoning_tokens = 5;
    for event in &events {
        ledger.record(event.clone());
    }
    ledger.flush();
    let reader = f.reader();
    let groups = |group_by| {
        let query = Query {
            group_by,
            ..Query::default()
        };
        reader
            .totals(&query)
            .unwrap()
            .into_iter()
            .map(|row| (row.group, row.totals.requests))
            .collect::<Vec<_>>()
    };
    let pairs = |list: &[(&str, u64)]| {
        list.iter()
            .map(|(group, count)| (group.to_string(), *count))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        groups(GroupBy::Day),
        pairs(&[("2026-03-01", 1), ("2026-03-02", 3)])
    );
    assert_eq!(
        groups(GroupBy::Hour),
        pairs(&[
            ("2026-03-01T23:00Z", 1),
            ("2026-03-02T00:00Z", 1),
            ("2026-03-02T01:00Z", 2)
        ])
    );
    assert_eq!(
        groups(GroupBy::Key),
        pairs(&[("aigk_A", 2), ("(none)", 1), ("aigk_B", 1)])
    );
    assert_eq!(
        groups(GroupBy::Provider),
        pairs(&[("openai", 3), ("anthropic", 1)])
    );

    let report = reader
        .report(&Query {
            group_by: GroupBy::Model,
            ..Query::default()
        })
        .unwrap();
    assert_eq!(
        report.total,
        Totals {
            requests: 4,
            errors: 1,
            input_tokens: 40,
            output_tokens: 80,
            cached_tokens: 7,
            reasoning_tokens: 5,
            estimated_requests: 1,
            unpriced_requests: 1,
            cost_micros: 3 + 1_000_001 + 3,
        }
    );
    let gpt4o = &report.rows[0];
    assert_eq!((gpt4o.group.as_str(), gpt4o.totals.requests), ("gpt-4o", 2));
    assert_eq!((gpt4o.totals.errors, gpt4o.totals.cost_micros), (1, 6));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["group_by"], "model");
    assert_eq!(json["since"], serde_json::Value::Null);
    assert_eq!(json["rows"][0]["group"], "gpt-4o");
    assert_eq!(json["rows"][0]["cost_micros"], 6);
    assert_eq!(json["total"]["cost_usd"], 1.000007);

    // Filters: [since, until), key, model, status.
    let count = |query: Query| reader.report(&query).unwrap().total.requests;
    let window = Query {
        since: Some(midnight),
        until: Some(next_hour),
        ..Query::default()
    };
    assert_eq!(count(window), 1);
    let key = Query {
        access_key: Some("aigk_A".into()),
        ..Query::default()
    };
    assert_eq!(count(key), 2);
    let model = Query {
        model: Some("gpt-4o".into()),
        since: Some(midnight),
        ..Query::default()
    };
    assert_eq!(count(model), 1);
    let errors = Query {
        status: Some(parse_status("4xx").unwrap()),
        ..Query::default()
    };
    assert_eq!(count(errors), 1);
}

fn events_page_newest_first(f: &Fixture) {
    let ledger = f.ledger(unlimited());
    let start = at("2026-03-01T00:00:00Z");
    for index in 0..5u64 {
        let mut event = event(
            &format!("req-{index}"),
            start + Duration::from_secs(index),
            None,
            "gpt-4o",
        );
        event.status = if index == 3 { 503 } else { 200 };
        ledger.record(event);
    }
    ledger.flush();
    let reader = f.reader();
    let ids = |query: &Query, limit, offset| {
        reader
            .events(query, limit, offset)
            .unwrap()
            .into_iter()
            .map(|e| e.request_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&Query::default(), 2, 0), ["req-4", "req-3"]);
    assert_eq!(ids(&Query::default(), 2, 2), ["req-2", "req-1"]);
    assert_eq!(ids(&Query::default(), 2, 4), ["req-0"]);
    let failed = Query {
        status: Some(parse_status("5xx").unwrap()),
        ..Query::default()
    };
    assert_eq!(ids(&failed, 10, 0), ["req-3"]);
}

fn an_unwritten_ledger_reads_as_empty_and_a_newer_one_is_refused(f: &Fixture) {
    let reader = f.reader();
    assert!(reader.totals(&Query::default()).unwrap().is_empty());
    assert!(reader.events(&Query::default(), 10, 0).unwrap().is_empty());
    assert!(reader
        .overview(&Span::Hour.overview_window(SystemTime::now()))
        .is_ok());
    drop(reader);

    // `keygate migrate`: the steps run once.
    let migrated = migrate(&f.location).unwrap();
    assert_eq!((migrated.from, migrated.to), (0, 2));
    let migrated = migrate(&f.location).unwrap();
    assert_eq!((migrated.from, migrated.to), (2, 2));
    assert_eq!(f.database().schema_version("usage").unwrap(), 2);
    assert!(f
        .reader()
        .events(&Query::default(), 10, 0)
        .unwrap()
        .is_empty());
    // A newer keygate's next step.
    f.database()
        .write_unannounced(|tx| {
            tx.execute(
                "INSERT INTO store_migrations (component, version, applied_at) \
                 VALUES ('usage', 3, 'later')",
                &[],
            )
        })
        .unwrap();
    let newer = "usage schema is at version 3, newer than this keygate knows (2)";
    assert_both_refuse(&f.location, newer);
}

/// Both a reader and a ledger refuse `location` with `message`.
fn assert_both_refuse(location: &Location, message: &str) {
    let err = Reader::open(location).err().unwrap().to_string();
    assert!(err.contains(message), "{err}");
    let err = Ledger::open(location, unlimited())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains(message), "{err}");
}

/// The ledger file of a SQLite fixture.
fn file(f: &Fixture) -> PathBuf {
    f.database.dir.path().join(DB_FILE)
}

#[test]
fn a_missing_or_empty_file_reads_as_empty_and_a_newer_one_is_refused() {
    let f = Fixture::sqlite();
    let reader = f.reader();
    assert!(reader.totals(&Query::default()).unwrap().is_empty());
    assert!(reader.events(&Query::default(), 10, 0).unwrap().is_empty());
    assert!(!file(&f).exists(), "reading creates nothing");

    std::fs::create_dir_all(f.database.dir.path()).unwrap();
    Connection::open(file(&f)).unwrap();
    assert!(f.reader().totals(&Query::default()).unwrap().is_empty());

    // A file a newer keygate wrote before the store layer kept the record.
    Connection::open(file(&f))
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let newer = "usage schema is at version 99, newer than this keygate knows (2)";
    assert_both_refuse(&f.location, newer);
}

#[test]
fn the_file_is_private_in_wal_mode_and_times_are_stored_in_microseconds() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::sqlite();
    let ledger = f.ledger(unlimited());
    let time = at("2026-03-01T12:00:00.000001Z");
    ledger.record(event("req", time, None, "gpt-4o"));
    drop(ledger);
    let mode = std::fs::metadata(file(&f)).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let conn = Connection::open(file(&f)).unwrap();
    let stored: i64 = conn
        .query_row("SELECT time FROM usage", [], |row| row.get(0))
        .unwrap();
    assert_eq!(stored, to_micros(time));
    let journal: String = conn
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
}

/// A request at `time` with `latency_ms` and, when given, a time to first token.
fn timed(id: &str, time: SystemTime, latency_ms: u64, ttft_ms: Option<u64>) -> UsageEvent {
    UsageEvent {
        latency: Duration::from_millis(latency_ms),
        time_to_first_token: ttft_ms.map(Duration::from_millis),
        ..event(id, time, Some("aigk_A"), "gpt-4o")
    }
}

fn the_overview_sums_minutes_into_buckets_with_percentiles(f: &Fixture) {
    let ledger = f.ledger(unlimited());
    let now = at("2026-03-02T12:00:30Z");
    // 100 requests in the last hour at 1..=100 ms, one of them failed, and one too old.
    for i in 1..=100u64 {
        let time = now - Duration::from_secs(i * 30);
        let mut event = timed(&format!("r{i}"), time, i, Some(i / 2));
        if i == 7 {
            event.status = 503;
            event.cost_micros = None;
            event.input_tokens = 0;
            event.output_tokens = 0;
        }
        ledger.record(event);
    }
    ledger.record(timed("old", now - Duration::from_secs(2 * 3600), 5, None));
    ledger.flush();
    let reader = f.reader();
    let window = Span::Hour.overview_window(now);
    let overview = reader.overview(&window).unwrap();
    assert_eq!(overview.buckets.len(), 60);
    assert_eq!(overview.bucket_seconds, 60);
    let total = &overview.total;
    // Requests are 30 s apart back from 12:00:30; the window, 11:01 to 12:01, holds those up
    // to 59 min 30 s old.
    let in_window = (1..=100u64).filter(|i| i * 30 < 3600 + 30).count() as u64;
    assert_eq!(total.requests, in_window);
    assert_eq!(total.errors, 1);
    assert_eq!(total.unpriced_requests, 1);
    assert_eq!(total.input_tokens, (in_window - 1) * 10);
    assert_eq!(total.cost_micros, (in_window - 1) * 3);
    let sum: u64 = overview.buckets.iter().map(|b| b.summary.requests).sum();
    assert_eq!(sum, total.requests);
    // The same totals as the report over the same window.
    let report = reader
        .report(&Query {
            since: Some(window.since),
            until: Some(window.until),
            ..Query::default()
        })
        .unwrap();
    assert_eq!(report.total.requests, total.requests);
    assert_eq!(report.total.cost_micros, total.cost_micros);
    assert_eq!(report.total.output_tokens, total.output_tokens);
    let p50 = total.latency_p50_ms.unwrap();
    let exact = (in_window as f64 / 2.0).ceil();
    assert!((p50 / exact - 1.0).abs() < 0.05, "p50 {p50} vs {exact}");
    assert!(total.ttft_p95_ms.unwrap() < total.latency_p95_ms.unwrap());
    let json = serde_json::to_value(&overview).unwrap();
    assert_eq!(json["since"], "2026-03-02T11:01:00.000000Z");
    assert_eq!(json["buckets"][59]["start"], "2026-03-02T12:00:00.000000Z");
    assert!(json["total"]["error_rate"].as_f64().unwrap() > 0.0);
}

fn breakdowns_read_the_hourly_rollup_or_the_rows_alike(f: &Fixture) {
    let ledger = f.ledger(unlimited());
    let now = at("2026-03-02T12:20:00Z");
    for i in 0..30u64 {
        let time = now - Duration::from_secs(i * 100);
        let key = ["aigk_A", "aigk_B", "aigk_C"][(i % 3) as usize];
        let model = if i % 2 == 0 { "gpt-4o" } else { "gpt-4o-mini" };
        let mut event = event(&format!("r{i}"), time, Some(key), model);
        if i == 29 {
            event.access_key = None;
        }
        ledger.record(event);
    }
    ledger.flush();
    let reader = f.reader();
    let hourly = reader
        .breakdown(GroupBy::Model, &Span::Day.breakdown_window(now))
        .unwrap();
    let raw = reader
        .breakdown(
            GroupBy::Model,
            &Window {
                since: at("2026-03-01T13:00:30Z"),
                until: at("2026-03-02T13:00:30Z"),
                bucket: Duration::from_secs(3600),
            },
        )
        .unwrap();
    for breakdown in [&hourly, &raw] {
        assert_eq!(breakdown.total.requests, 30);
        let groups: Vec<_> = breakdown
            .rows
            .iter()
            .map(|r| (r.group.as_str(), r.summary.requests))
            .collect();
        assert_eq!(groups, [("gpt-4o", 15), ("gpt-4o-mini", 15)]);
        assert_eq!(breakdown.rows[0].series.len(), 24);
        assert_eq!(breakdown.rows[0].series.iter().sum::<u64>(), 15);
    }
    // 11:30 to 12:20 is in the last two hourly buckets.
    assert_eq!(hourly.rows[0].series[22] + hourly.rows[0].series[23], 15);
    let keys = reader
        .breakdown(GroupBy::Key, &Span::Hour.breakdown_window(now))
        .unwrap();
    assert!(keys.rows.iter().any(|r| r.group == "(none)"));
    assert!(reader
        .breakdown(GroupBy::Day, &Span::Hour.breakdown_window(now))
        .is_err());
    // Totals per key since a whole hour (rollup) and since any time (rows).
    let since_hour = reader.key_totals(at("2026-03-02T12:00:00Z")).unwrap();
    let since_time = reader.key_totals(at("2026-03-02T11:59:59Z")).unwrap();
    assert_eq!(since_hour, since_time);
    assert_eq!(since_hour["aigk_A"].requests, 5);
    assert!(!since_hour.contains_key(""));
}

fn events_keep_their_attempts_and_are_found_by_id(f: &Fixture) {
    let ledger = f.ledger(unlimited());
    let tried = vec![
        Attempt {
            provider: "openai".into(),
            model: "gpt-4o".into(),
            api_key: Some("sk-proj...7890".into()),
            outcome: AttemptOutcome::Status,
            status: 429,
            error: Some("429 Too Many Requests".into()),
            time_to_first_byte_ms: Some(1.5),
            duration_ms: 2.25,
        },
        Attempt {
            provider: "anthropic".into(),
            model: "claude-sonnet-4-5".into(),
            api_key: None,
            outcome: AttemptOutcome::Success,
            status: 200,
            error: None,
            time_to_first_byte_ms: None,
            duration_ms: 3.0,
        },
    ];
    let mut first = event(
        "req-1",
        at("2026-03-01T12:00:00Z"),
        None,
        "claude-sonnet-4-5",
    );
    first.tried = tried.clone();
    ledger.record(first.clone());
    ledger.record(event("req-2", at("2026-03-01T12:00:01Z"), None, "gpt-4o"));
    ledger.flush();
    let reader = f.reader();
    let page = reader.stored_events(&Query::default(), 10, 0).unwrap();
    assert_eq!(page.len(), 2);
    let found = reader.event(page[1].id).unwrap().unwrap();
    assert_eq!(found.event, first);
    assert!(reader.event(12345).unwrap().is_none());
    let json = serde_json::to_value(&found).unwrap();
    assert_eq!(json["id"], page[1].id);
    assert_eq!(json["tried"][0]["outcome"], "status");
    assert_eq!(json["tried"][0]["api_key"], "sk-proj...7890");
    assert!(json["tried"][1].get("api_key").is_none());
    let bare = serde_json::to_value(&page[0].event).unwrap();
    assert!(bare.get("tried").is_none(), "no attempts, no field: {bare}");
}

/// A ledger file as a keygate before the store layer wrote it: the steps up to `version`, its
/// `PRAGMA user_version`, and one request (with its rollups from version 2 on, as that writer
/// kept them).
fn old_file(f: &Fixture, version: i64) {
    std::fs::create_dir_all(f.database.dir.path()).unwrap();
    let conn = Connection::open(file(f)).unwrap();
    conn.execute_batch(crate::schema::SQLITE_STEP_1).unwrap();
    let time = to_micros(at("2026-03-01T12:00:00Z"));
    conn.execute(
        "INSERT INTO usage (time, request_id, access_key, provider, model, status, \
         input_tokens, output_tokens, cached_tokens, reasoning_tokens, usage_source, \
         cost_micros, latency_us, ttft_us, attempts, error) VALUES \
         (?1, 'old', 'aigk_A', 'openai', 'gpt-4o', 200, 10, 20, 0, 0, 'provider', 5, 1000, \
         NULL, 1, NULL)",
        [time],
    )
    .unwrap();
    if version >= 2 {
        conn.execute_batch(crate::schema::SQLITE_STEP_2).unwrap();
        let mut latency = Histogram::default();
        latency.record(1000);
        conn.execute(
            "INSERT INTO usage_minute VALUES (?1, 1, 0, 10, 20, 0, 0, 0, 0, 5, 1000, 0, 0, ?2, X'')",
            rusqlite::params![time.div_euclid(60_000_000), latency.encode()],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO usage_hour VALUES \
             (?1, 'aigk_A', 'openai', 'gpt-4o', 1, 0, 10, 20, 0, 0, 0, 0, 5, 1000, 0, 0)",
            [time.div_euclid(3_600_000_000)],
        )
        .unwrap();
    }
    conn.pragma_update(None, "user_version", version).unwrap();
}

#[test]
fn a_version_2_file_is_adopted_with_its_rows_and_nothing_runs_again() {
    let f = Fixture::sqlite();
    old_file(&f, 2);
    let ledger = f.ledger(unlimited());
    ledger.record(event(
        "new",
        at("2026-03-01T12:00:30Z"),
        Some("aigk_A"),
        "gpt-4o",
    ));
    ledger.flush();
    let reader = f.reader();
    let ids: Vec<_> = reader
        .events(&Query::default(), 10, 0)
        .unwrap()
        .into_iter()
        .map(|e| e.request_id)
        .collect();
    assert_eq!(ids, ["new", "old"]);
    // The rollups the old writer kept are added to, not rebuilt (which would count "old" twice).
    let overview = reader
        .overview(&Span::Hour.overview_window(at("2026-03-01T12:10:00Z")))
        .unwrap();
    assert_eq!(
        (overview.total.requests, overview.total.cost_micros),
        (2, 8)
    );
    // 1 ms (the old row) and 1.5 ms (the new one): both histograms are there.
    let (p50, p95) = (
        overview.total.latency_p50_ms.unwrap(),
        overview.total.latency_p95_ms.unwrap(),
    );
    assert!(p50 < 1.2 && p95 > 1.4, "p50 {p50}, p95 {p95}");
    let db = f.database();
    assert_eq!(db.schema_version("usage").unwrap(), 2);
    assert_eq!(
        f.scalar("SELECT COUNT(*) FROM store_migrations WHERE component = 'usage'"),
        2
    );
    // An older keygate opened on this file again finds the version it knows.
    assert_eq!(f.scalar("PRAGMA user_version"), 2);
    drop(ledger);
    drop(f.ledger(unlimited()));
    assert_eq!(f.rows(), 2, "opening again changes nothing");
}

#[test]
fn a_version_1_ledger_is_migrated_and_its_rows_rolled_up() {
    let f = Fixture::sqlite();
    old_file(&f, 1);
    let old = f.reader();
    assert_eq!(old.events(&Query::default(), 10, 0).unwrap()[0].tried, []);
    drop(old);
    let ledger = f.ledger(unlimited());
    ledger.record(event(
        "new",
        at("2026-03-01T12:00:30Z"),
        Some("aigk_A"),
        "gpt-4o",
    ));
    ledger.flush();
    let reader = f.reader();
    let overview = reader
        .overview(&Span::Hour.overview_window(at("2026-03-01T12:10:00Z")))
        .unwrap();
    assert_eq!(overview.total.requests, 2);
    assert_eq!(overview.total.cost_micros, 8);
    assert_eq!(
        reader.key_totals(at("2026-03-01T12:00:00Z")).unwrap()["aigk_A"].requests,
        2
    );
}

fn retention_deletes_whole_rollup_minutes_and_hours(f: &Fixture) {
    let day = Duration::from_secs(86_400);
    let now = SystemTime::now();
    {
        let ledger = f.ledger(unlimited());
        ledger.record(event("old", now - day * 100, Some("aigk_A"), "gpt-4o"));
        ledger.record(event("new", now - day, Some("aigk_A"), "gpt-4o"));
    }
    let config = LedgerConfig {
        retention: Some(day * 90),
        ..LedgerConfig::default()
    };
    let ledger = f.ledger(config);
    ledger.flush();
    let count = |table: &str| {
        f.scalar(&format!(
            "SELECT CAST(SUM(requests) AS BIGINT) FROM {table}"
        ))
    };
    assert_eq!(count("usage_minute"), 1);
    assert_eq!(count("usage_hour"), 1);
}

fn two_ledgers_on_one_database_keep_both_histograms(f: &Fixture) {
    // Two gateways writing the same minute at once: each batch reads the minute's histograms,
    // merges its own and writes them back, so the batches must take turns.
    let minute = at("2026-03-02T12:00:00Z");
    let ledgers = [f.ledger(unlimited()), f.ledger(unlimited())];
    std::thread::scope(|scope| {
        for (n, ledger) in ledgers.iter().enumerate() {
            scope.spawn(move || {
                for i in 0..300u64 {
                    let time = minute + Duration::from_millis(i * 100);
                    ledger.record(timed(&format!("l{n}-{i}"), time, 1 + i % 50, Some(1)));
                    if i % 10 == 0 {
                        ledger.flush();
                    }
                }
                ledger.flush();
            });
        }
    });
    let hists = f
        .database()
        .read("usage", |tx, _| {
            tx.query("SELECT latency_hist, ttft_hist FROM usage_minute", &[])?
                .iter()
                .map(|row| Ok((row.get::<Vec<u8>>(0)?, row.get::<Vec<u8>>(1)?)))
                .collect::<keygate_store::Result<Vec<_>>>()
        })
        .unwrap();
    let mut latency = Histogram::default();
    let mut ttft = Histogram::default();
    for (l, t) in &hists {
        latency.merge_encoded(l);
        ttft.merge_encoded(t);
    }
    assert_eq!((latency.total(), ttft.total()), (600, 600));
    assert_eq!(f.rows(), 600);
}

/// `keygate serve --no-migrate`: a ledger not yet migrated is refused, not created; a migrated one
/// opens.
#[test]
fn without_migrations_only_a_current_ledger_opens() {
    let f = Fixture::sqlite();
    let current_only = || LedgerConfig {
        apply_migrations: false,
        ..LedgerConfig::default()
    };
    let err = Ledger::open(&f.location, current_only())
        .err()
        .expect("refused");
    assert!(err.to_string().contains("run `keygate migrate`"), "{err}");
    migrate(&f.location).unwrap();
    drop(Ledger::open(&f.location, current_only()).expect("a migrated ledger opens"));
}
