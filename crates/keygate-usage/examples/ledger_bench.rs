//! The dashboard's queries on a ledger of 1,000,000 requests over the last 30 days (about 23 a
//! minute; 20 access keys, 4 models of 2 providers, 2 % errors). The ledger is written through
//! `Ledger::record` like the gateway's, so the rollups are built as they are in production, and
//! kept for the next run: in `target/ledger-bench/usage.db` (delete it to write it anew), or in
//! the PostgreSQL database `--database postgres://...` names (which must be empty or hold the
//! same ledger).
//!
//! `cargo run --release -p keygate-usage --example ledger_bench [-- --database URL] [--migration]`
//! (figures in bench/RESULTS.md); `--migration` (SQLite) also times a first start on a version-1
//! copy.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use keygate_store::Location;
use keygate_usage::{
    Attempt, AttemptOutcome, GroupBy, Ledger, LedgerConfig, Query, Reader, Span, UsageEvent,
    UsageSource,
};

const ROWS: u64 = 1_000_000;
const RUNS: usize = 21;

/// xorshift64*: enough randomness for made-up traffic, and the same ledger every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/ledger-bench");
    let args: Vec<String> = std::env::args().collect();
    let location = match args.iter().position(|arg| arg == "--database") {
        Some(i) => Location::parse(args.get(i + 1).expect("--database URL")).expect("--database"),
        None => keygate_usage::default_location(&dir),
    };
    let now = SystemTime::now();
    let have = Reader::open(&location)
        .and_then(|r| {
            r.report(&Query {
                group_by: GroupBy::Provider,
                ..Query::default()
            })
        })
        .map(|report| report.total.requests)
        .unwrap_or(0);
    if have != ROWS {
        match &location {
            Location::Sqlite(_) => {
                let _ = std::fs::remove_dir_all(&dir);
            }
            Location::Postgres(_) => assert_eq!(have, 0, "{location} holds another ledger"),
        }
        let started = Instant::now();
        write(&location, now);
        println!(
            "wrote {ROWS} rows in {:.1} s ({location})",
            started.elapsed().as_secs_f64(),
        );
    } else {
        println!("reusing {location} ({ROWS} rows)");
    }
    if let Location::Sqlite(_) = location {
        let size: u64 = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        println!("ledger files: {:.0} MiB", size as f64 / 1_048_576.0);
    }
    let reader = Reader::open(&location).expect("open the ledger");
    let now = SystemTime::now();
    for span in [Span::Hour, Span::Day, Span::Week, Span::Month] {
        let window = span.overview_window(now);
        let (median, worst, overview) = time(|| reader.overview(&window).expect("overview"));
        println!(
            "overview {:>3}: median {median:>7.2} ms, worst {worst:>7.2} ms ({} requests, {} buckets)",
            span.as_str(),
            overview.total.requests,
            overview.buckets.len()
        );
    }
    // What the 30-day overview would cost without the rollup: the same sums from the rows.
    let window = Span::Month.overview_window(now);
    let (median, worst, report) = time(|| {
        reader
            .report(&Query {
                group_by: GroupBy::Hour,
                since: Some(window.since),
                until: Some(window.until),
                ..Query::default()
            })
            .expect("report")
    });
    println!(
        "for comparison, 30 days by hour from the rows (no percentiles): median {median:>7.2} ms, \
         worst {worst:>7.2} ms ({} requests)",
        report.total.requests
    );
    for span in [Span::Hour, Span::Month] {
        for by in [GroupBy::Key, GroupBy::Model] {
            let window = span.breakdown_window(now);
            let (median, worst, breakdown) =
                time(|| reader.breakdown(by, &window).expect("breakdown"));
            println!(
                "breakdown {:>3} by {:<5}: median {median:>7.2} ms, worst {worst:>7.2} ms ({} rows)",
                span.as_str(),
                by.as_str(),
                breakdown.rows.len()
            );
        }
    }
    let month = chrono_month_start(now);
    let (median, worst, keys) = time(|| reader.key_totals(month).expect("key totals"));
    println!(
        "key totals this month: median {median:>7.2} ms, worst {worst:>7.2} ms ({} keys)",
        keys.len()
    );
    let trailing = now - Duration::from_secs(86_400);
    let (median, worst, _) = time(|| reader.key_totals(trailing).expect("key totals"));
    println!("key totals last 24 h (rows): median {median:>7.2} ms, worst {worst:>7.2} ms");
    for (name, query) in [
        ("newest", Query::default()),
        (
            "key",
            Query {
                access_key: Some("aigk_bench07".into()),
                ..Query::default()
            },
        ),
        (
            "model",
            Query {
                model: Some("claude-haiku-4-5".into()),
                ..Query::default()
            },
        ),
        (
            "status 5xx",
            Query {
                status: Some(keygate_usage::parse_status("5xx").expect("status")),
                ..Query::default()
            },
        ),
    ] {
        let (median, worst, page) = time(|| reader.stored_events(&query, 51, 0).expect("events"));
        println!(
            "logs page ({name}): median {median:>7.2} ms, worst {worst:>7.2} ms ({} events)",
            page.len()
        );
    }
    if let (true, Location::Sqlite(path)) = (args.iter().any(|arg| arg == "--migration"), &location)
    {
        migration(path);
    }
}

/// How long a gateway's first start on a version-1 ledger of the same rows takes: the migration
/// adds the attempts column and the rollups, and sums the rows into them.
fn migration(path: &Path) {
    let old = path.with_file_name("usage-v1.db");
    let _ = std::fs::remove_file(&old);
    {
        let conn = rusqlite::Connection::open(path).expect("open");
        conn.execute_batch(&format!(
            "VACUUM INTO '{}'",
            old.display().to_string().replace('\'', "''")
        ))
        .expect("copy the ledger");
    }
    let conn = rusqlite::Connection::open(&old).expect("open the copy");
    conn.execute_batch(
        "DROP TABLE usage_minute; DROP TABLE usage_hour; DROP INDEX usage_model_time; \
         ALTER TABLE usage DROP COLUMN tried; DROP TABLE store_migrations; \
         DROP TABLE store_generations; PRAGMA user_version = 1;",
    )
    .expect("make it a version-1 ledger");
    drop(conn);
    let started = Instant::now();
    drop(Ledger::open(&Location::Sqlite(old.clone()), LedgerConfig::default()).expect("migrate"));
    println!(
        "migrating a version-1 ledger of {ROWS} rows (rollups rebuilt): {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_file(&old);
    let _ = std::fs::remove_file(old.with_extension("db-wal"));
    let _ = std::fs::remove_file(old.with_extension("db-shm"));
}

/// The median and worst of [`RUNS`] runs of `f`, in milliseconds, and its last result.
fn time<T>(mut f: impl FnMut() -> T) -> (f64, f64, T) {
    let mut times = Vec::with_capacity(RUNS);
    let mut last = None;
    for _ in 0..RUNS {
        let started = Instant::now();
        last = Some(f());
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    (times[RUNS / 2], times[RUNS - 1], last.expect("ran"))
}

/// Midnight UTC on the first of `now`'s month.
fn chrono_month_start(now: SystemTime) -> SystemTime {
    let days = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        / 86_400;
    // Days since the epoch to the civil date (Howard Hinnant's algorithm), then back to the 1st.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day_of_month = doy - (153 * mp + 2) / 5 + 1;
    let first = days as i64 - (day_of_month - 1);
    SystemTime::UNIX_EPOCH + Duration::from_secs(first as u64 * 86_400)
}

fn write(location: &Location, now: SystemTime) {
    let ledger = Ledger::open(
        location,
        LedgerConfig {
            retention: None,
            queue_capacity: 2_000_000,
            ..LedgerConfig::default()
        },
    )
    .expect("open the ledger");
    let models = [
        ("openai", "gpt-4o", 2.5, 10.0),
        ("openai", "gpt-4o-mini", 0.15, 0.6),
        ("anthropic", "claude-sonnet-4-5", 3.0, 15.0),
        ("anthropic", "claude-haiku-4-5", 1.0, 5.0),
    ];
    let span = Duration::from_secs(30 * 86_400);
    let step = span / ROWS as u32;
    let start = now - span;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..ROWS {
        let (provider, model, input_price, output_price) = models[rng.below(4) as usize];
        let failed = rng.below(50) == 0;
        let input = if failed { 0 } else { 50 + rng.below(2_000) };
        let output = if failed { 0 } else { 10 + rng.below(800) };
        let ttft = 50_000 + rng.below(400_000);
        let latency = ttft + rng.below(3_000_000);
        ledger.record(UsageEvent {
            time: start + step * i as u32,
            request_id: format!("{i:032x}"),
            access_key: Some(format!("aigk_bench{:02}", rng.below(20))),
            provider: provider.into(),
            model: model.into(),
            status: if failed { 503 } else { 200 },
            input_tokens: input,
            output_tokens: output,
            cached_tokens: 0,
            reasoning_tokens: 0,
            usage_source: UsageSource::Provider,
            cost_micros: Some(keygate_usage::cost_micros(
                input,
                output,
                input_price,
                output_price,
            )),
            latency: Duration::from_micros(latency),
            time_to_first_token: (!failed).then(|| Duration::from_micros(ttft)),
            attempts: 1,
            error: failed.then(|| "All providers failed: [503] ...".to_owned()),
            tried: vec![Attempt {
                provider: provider.into(),
                model: model.into(),
                api_key: Some("sk-proj...7890".into()),
                outcome: if failed {
                    AttemptOutcome::Status
                } else {
                    AttemptOutcome::Success
                },
                status: if failed { 503 } else { 200 },
                error: failed.then(|| "503 Service Unavailable".to_owned()),
                time_to_first_byte_ms: Some(ttft as f64 / 1000.0),
                duration_ms: ttft as f64 / 1000.0,
            }],
        });
        if i % 100_000 == 99_999 {
            ledger.flush();
        }
    }
    ledger.flush();
}
