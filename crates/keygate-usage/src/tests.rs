//! The ledger end to end within the crate: recording, batching, flushing, a full queue,
//! retention, and the reports over what was written.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use keygate_secrets::test_support::TempDir;
use rusqlite::Connection;

use crate::time::{from_micros, to_micros};
use crate::*;

/// The ledger file in `dir`.
fn db(dir: &TempDir) -> PathBuf {
    dir.path().join(DB_FILE)
}

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

fn rows(path: &Path) -> u64 {
    let all = Query {
        group_by: GroupBy::Provider,
        ..Query::default()
    };
    Reader::open(path)
        .unwrap()
        .report(&all)
        .unwrap()
        .total
        .requests
}

#[test]
fn an_event_round_trips_with_every_field() {
    let dir = TempDir::new("usage");
    let ledger = Ledger::open(&db(&dir), unlimited()).unwrap();
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
    let events = Reader::open(&db(&dir))
        .unwrap()
        .events(&Query::default(), 10, 0)
        .unwrap();
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

#[test]
fn batches_larger_than_one_transaction_are_all_written_and_flush_shows_them() {
    let dir = TempDir::new("usage");
    let ledger = Ledger::open(&db(&dir), unlimited()).unwrap();
    let now = SystemTime::now();
    // More than two transactions' worth.
    let count = 2_500;
    for index in 0..count {
        ledger.record(event(&format!("req-{index}"), now, None, "gpt-4o"));
    }
    ledger.flush();
    assert_eq!(rows(&db(&dir)), count);
    let conn = Connection::open(db(&dir)).unwrap();
    let distinct: u64 = conn
        .query_row("SELECT COUNT(DISTINCT request_id) FROM usage", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(distinct, count);
    assert_eq!(ledger.dropped(), 0);
    // A flush with nothing queued returns at once; so does one after the writer went idle.
    ledger.flush();
    ledger.record(event("req-last", now, None, "gpt-4o"));
    ledger.flush();
    assert_eq!(rows(&db(&dir)), count + 1);
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_growing() {
    let dir = TempDir::new("usage");
    let ledger = Ledger::open(
        &db(&dir),
        LedgerConfig {
            queue_capacity: 10,
            retention: None,
        },
    )
    .unwrap();
    // Hold the write lock: the writer cannot commit, so nothing leaves the queue.
    let blocker = Connection::open(db(&dir)).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let now = SystemTime::now();
    for index in 0..25 {
        ledger.record(event(&format!("req-{index}"), now, None, "gpt-4o"));
    }
    assert_eq!(ledger.dropped(), 15, "only the queue's capacity is kept");
    blocker.execute_batch("COMMIT").unwrap();
    ledger.flush();
    assert_eq!(rows(&db(&dir)), 10);
    // Room again once committed.
    ledger.record(event("req-after", now, None, "gpt-4o"));
    ledger.flush();
    assert_eq!((rows(&db(&dir)), ledger.dropped()), (11, 15));
}

#[test]
fn dropping_the_ledger_commits_what_is_queued() {
    let dir = TempDir::new("usage");
    let ledger = Ledger::open(&db(&dir), unlimited()).unwrap();
    for index in 0..50 {
        ledger.record(event(&format!("req-{index}"), SystemTime::now(), None, "m"));
    }
    drop(ledger);
    assert_eq!(rows(&db(&dir)), 50);
}

#[test]
fn retention_deletes_old_rows_at_start() {
    let dir = TempDir::new("usage");
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    let ledger = Ledger::open(&db(&dir), unlimited()).unwrap();
    for (id, age) in [("old", 100), ("older", 400), ("recent", 1)] {
        ledger.record(event(id, now - day * age, None, "gpt-4o"));
    }
    drop(ledger);
    assert_eq!(rows(&db(&dir)), 3, "no retention keeps everything");
    let ledger = Ledger::open(
        &db(&dir),
        LedgerConfig {
            retention: Some(day * 90),
            ..LedgerConfig::default()
        },
    )
    .unwrap();
    // The writer's first step is the sweep's first chunk, before any batch or flush.
    ledger.flush();
    let left = Reader::open(&db(&dir))
        .unwrap()
        .events(&Query::default(), 10, 0)
        .unwrap();
    assert_eq!(
        left.iter()
            .map(|e| e.request_id.as_str())
            .collect::<Vec<_>>(),
        ["recent"]
    );
}

#[test]
fn totals_group_by_utc_day_and_hour_and_sum_exactly() {
    let dir = TempDir::new("usage");
    let ledger = Ledger::open(&db(&dir), unlimited()).unwrap();
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
    let reader = Reader::open(&db(&dir)).unwrap();
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

#[test]
fn events_page_newest_first() {
    let dir = TempDir::new("usage");
    let ledger = Ledger::open(&db(&dir), unlimited()).unwrap();
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
    let reader = Reader::open(&db(&dir)).unwrap();
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

#[test]
fn a_missing_or_unwritten_file_reads_as_empty_and_a_newer_one_is_refused() {
    let dir = TempDir::new("usage");
    let reader = Reader::open(&db(&dir)).unwrap();
    assert!(reader.totals(&Query::default()).unwrap().is_empty());
    assert!(reader.events(&Query::default(), 10, 0).unwrap().is_empty());
    assert!(!db(&dir).exists(), "reading creates nothing");

    std::fs::create_dir_all(dir.path()).unwrap();
    Connection::open(db(&dir)).unwrap();
    assert!(Reader::open(&db(&dir))
        .unwrap()
        .totals(&Query::default())
        .unwrap()
        .is_empty());

    drop(Ledger::open(&db(&dir), unlimited()).unwrap());
    Connection::open(db(&dir))
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let newer = "has schema version 99, newer than this keygate supports (2)";
    let err = Reader::open(&db(&dir)).err().unwrap().to_string();
    assert!(err.contains(newer), "{err}");
    let err = Ledger::open(&db(&dir), unlimited())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains(newer), "{err}");
}

#[test]
fn the_file_is_private_in_wal_mode_and_times_are_stored_in_microseconds() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("usage");
    let ledger = Ledger::open(&db(&dir), unlimited()).unwrap();
    let time = at("2026-03-01T12:00:00.000001Z");
    ledger.record(event("req", time, None, "gpt-4o"));
    drop(ledger);
    let mode = std::fs::metadata(db(&dir)).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let conn = Connection::open(db(&dir)).unwrap();
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

#[test]
fn the_overview_sums_minutes_into_buckets_with_percentiles() {
    let dir = TempDir::new("usage");
    let ledger = Ledger::open(&db(&dir), unlimited()).unwrap();
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
    let reader = Reader::open(&db(&dir)).unwrap();
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

#[test]
fn breakdowns_read_the_hourly_rollup_or_the_rows_alike() {
    let dir = TempDir::new("usage");
    let ledger = Ledger::open(&db(&dir), unlimited()).unwrap();
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
    let reader = Reader::open(&db(&dir)).unwrap();
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

#[test]
fn events_keep_their_attempts_and_are_found_by_id() {
    let dir = TempDir::new("usage");
    let ledger = Ledger::open(&db(&dir), unlimited()).unwrap();
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
    let reader = Reader::open(&db(&dir)).unwrap();
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

#[test]
fn a_version_1_ledger_is_migrated_and_its_rows_rolled_up() {
    let dir = TempDir::new("usage");
    std::fs::create_dir_all(dir.path()).unwrap();
    {
        let conn = Connection::open(db(&dir)).unwrap();
        conn.execute_batch(crate::schema::STEPS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO usage (time, request_id, access_key, provider, model, status, \
             input_tokens, output_tokens, cached_tokens, reasoning_tokens, usage_source, \
             cost_micros, latency_us, ttft_us, attempts, error) VALUES \
             (?1, 'old', 'aigk_A', 'openai', 'gpt-4o', 200, 10, 20, 0, 0, 'provider', 5, 1000, \
             NULL, 1, NULL)",
            [to_micros(at("2026-03-01T12:00:00Z"))],
        )
        .unwrap();
    }
    let old = Reader::open(&db(&dir)).unwrap();
    assert_eq!(old.events(&Query::default(), 10, 0).unwrap()[0].tried, []);
    drop(old);
    let ledger = Ledger::open(&db(&dir), unlimited()).unwrap();
    ledger.record(event(
        "new",
        at("2026-03-01T12:00:30Z"),
        Some("aigk_A"),
        "gpt-4o",
    ));
    ledger.flush();
    let reader = Reader::open(&db(&dir)).unwrap();
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

#[test]
fn retention_deletes_whole_rollup_minutes_and_hours() {
    let dir = TempDir::new("usage");
    let day = Duration::from_secs(86_400);
    let now = SystemTime::now();
    {
        let ledger = Ledger::open(&db(&dir), unlimited()).unwrap();
        ledger.record(event("old", now - day * 100, Some("aigk_A"), "gpt-4o"));
        ledger.record(event("new", now - day, Some("aigk_A"), "gpt-4o"));
    }
    let config = LedgerConfig {
        retention: Some(day * 90),
        ..LedgerConfig::default()
    };
    let ledger = Ledger::open(&db(&dir), config).unwrap();
    ledger.flush();
    let conn = Connection::open(db(&dir)).unwrap();
    let count = |table: &str| -> i64 {
        conn.query_row(&format!("SELECT SUM(requests) FROM {table}"), [], |row| {
            row.get(0)
        })
        .unwrap()
    };
    assert_eq!(count("usage_minute"), 1);
    assert_eq!(count("usage_hour"), 1);
}
