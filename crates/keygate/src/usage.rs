//! `keygate usage`: totals from the usage ledger (DATA_DIR/usage.db, or the `--database`
//! PostgreSQL database), as an aligned table or as the JSON `GET /v1/usage` answers. It reads the
//! ledger itself, so it needs neither a running gateway nor the master key; a data dir without a
//! ledger shows an empty report.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use keygate_usage::{rfc3339, QueryParams, Reader, Report, Totals};

#[derive(clap::Args)]
pub struct UsageArgs {
    /// Group by key, model, provider, day or hour (days and hours in UTC) [default: key].
    #[arg(long, env = "KEYGATE_USAGE_BY")]
    by: Option<String>,
    /// From this time: RFC 3339, a UTC date (2026-01-31) or a duration ago (7d, 12h) [default: 30d].
    #[arg(long, env = "KEYGATE_USAGE_SINCE")]
    since: Option<String>,
    /// Before this time, in the forms of --since [default: now].
    #[arg(long, env = "KEYGATE_USAGE_UNTIL")]
    until: Option<String>,
    /// Only requests made with this access key id (aigk_...).
    #[arg(long, env = "KEYGATE_USAGE_KEY")]
    key: Option<String>,
    /// Only requests answered by this model.
    #[arg(long, env = "KEYGATE_USAGE_MODEL")]
    model: Option<String>,
    /// Print the JSON GET /v1/usage answers instead of a table.
    #[arg(long, env = "KEYGATE_USAGE_JSON")]
    json: bool,
    /// Holds usage.db.
    #[arg(long, env = "KEYGATE_DATA_DIR", default_value = "./keygate-data")]
    data_dir: PathBuf,
    #[arg(long, env = "KEYGATE_DATABASE", value_name = "URL", value_parser = crate::database::parse, help = crate::database::HELP)]
    database: Option<keygate_store::Location>,
}

pub fn run(args: UsageArgs) -> ExitCode {
    let params = QueryParams {
        by: args.by.as_deref(),
        since: args.since.as_deref(),
        until: args.until.as_deref(),
        key: args.key.as_deref(),
        model: args.model.as_deref(),
        status: None,
    };
    let query = match params.report_query(SystemTime::now()) {
        Ok(query) => query,
        Err(err) => {
            // The parameters are named as the flags are.
            eprintln!("error: --{err}");
            return ExitCode::from(2);
        }
    };
    let location = match &args.database {
        Some(database) => keygate_usage::location(database, &args.data_dir),
        None => keygate_usage::default_location(&args.data_dir),
    };
    let report = match Reader::open(&location).and_then(|reader| reader.report(&query)) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(1);
        }
    };
    let text = if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => json + "\n",
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::from(1);
            }
        }
    } else {
        table(&report)
    };
    match crate::stdout::write(&text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: cannot write the report: {err}");
            ExitCode::from(1)
        }
    }
}

const NUMBER_COLUMNS: [&str; 8] = [
    "REQUESTS",
    "ERRORS",
    "INPUT",
    "OUTPUT",
    "CACHED",
    "REASONING",
    "ESTIMATED",
    "COST (USD)",
];

/// The report as text: a line saying what it covers, then aligned columns (group left, numbers
/// right), a total line, and a note when some requests had no price.
fn table(report: &Report) -> String {
    let header = std::iter::once(report.group_by.as_str().to_ascii_uppercase())
        .chain(NUMBER_COLUMNS.map(str::to_owned))
        .collect::<Vec<_>>();
    let mut lines = vec![header];
    for row in &report.rows {
        lines.push(cells(&row.group, &row.totals));
    }
    lines.push(cells("total", &report.total));
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|column| {
            lines
                .iter()
                .map(|line| line[column].len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let bound = |time: Option<SystemTime>, open: &str| time.map_or(open.to_owned(), rfc3339);
    let mut out = format!(
        "usage by {}, {} to {}\n",
        report.group_by.as_str(),
        bound(report.since, "the start"),
        bound(report.until, "now")
    );
    for line in &lines {
        let mut text = format!("{:<width$}", line[0], width = widths[0]);
        for (cell, width) in line.iter().zip(&widths).skip(1) {
            text.push_str(&format!("  {cell:>width$}"));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    if report.total.unpriced_requests > 0 {
        out.push_str(&format!(
            "{} request(s) used models without a price; their cost is not included.\n",
            report.total.unpriced_requests
        ));
    }
    out
}

fn cells(group: &str, totals: &Totals) -> Vec<String> {
    let micros = totals.cost_micros;
    vec![
        group.to_owned(),
        totals.requests.to_string(),
        totals.errors.to_string(),
        totals.input_tokens.to_string(),
        totals.output_tokens.to_string(),
        totals.cached_tokens.to_string(),
        totals.reasoning_tokens.to_string(),
        totals.estimated_requests.to_string(),
        // Exact: the integer micro-USD, not the float.
        format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000),
    ]
}

#[cfg(test)]
mod tests {
    use keygate_usage::{GroupBy, TotalRow};

    use super::*;

    fn totals(requests: u64, input: u64, cost_micros: u64) -> Totals {
        Totals {
            requests,
            input_tokens: input,
            cost_micros,
            ..Totals::default()
        }
    }

    #[test]
    fn columns_align_and_the_total_closes_the_table() {
        let report = Report {
            group_by: GroupBy::Model,
            since: Some(SystemTime::UNIX_EPOCH),
            until: None,
            rows: vec![
                TotalRow {
                    group: "gpt-4o".into(),
                    totals: totals(12, 123_456, 1_234_567),
                },
                TotalRow {
                    group: "claude-sonnet-4-5".into(),
                    totals: Totals {
                        unpriced_requests: 1,
                        ..totals(1, 7, 0)
                    },
                },
            ],
            total: Totals {
                unpriced_requests: 1,
                ..totals(13, 123_463, 1_234_567)
            },
        };
        assert_eq!(
            table(&report),
            "usage by model, 1970-01-01T00:00:00.000000Z to now\n\
             MODEL              REQUESTS  ERRORS   INPUT  OUTPUT  CACHED  REASONING  ESTIMATED  COST (USD)\n\
             gpt-4o                   12       0  123456       0       0          0          0    1.234567\n\
             claude-sonnet-4-5         1       0       7       0       0          0          0    0.000000\n\
             total                    13       0  123463       0       0          0          0    1.234567\n\
             1 request(s) used models without a price; their cost is not included.\n"
        );
    }
}
