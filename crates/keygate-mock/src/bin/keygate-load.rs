//! `keygate-load`: fixed-rate (or maximum-rate) HTTP load with latency percentiles and time to
//! first token; prints one JSON line.

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::{HeaderName, HeaderValue, Method};
use keygate_mock::load::{run, LoadPlan, RequestSpec, Target};

/// Open-loop HTTP/1.1 load generator (wrk2-style latency accounting).
#[derive(Debug, Parser)]
#[command(name = "keygate-load", version)]
struct Args {
    /// Target URL (http:// only).
    #[arg(long)]
    url: String,
    /// Requests per second across all connections; 0 means as fast as possible.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up seconds (sent, not counted).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// HTTP method (default: POST with a body, GET without).
    #[arg(long)]
    method: Option<Method>,
    /// Request body.
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// File holding the request body.
    #[arg(long)]
    body_file: Option<std::path::PathBuf>,
    /// Request header `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Measure time to the first SSE `data:` chunk.
    #[arg(long)]
    stream: bool,
    /// Per-request timeout in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Runtime threads (1 = a single-threaded client, like `wrk -t1`).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Label copied into the report.
    #[arg(long, default_value = "")]
    label: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let plan = match plan(&args) {
        Ok(p) => p,
        Err(message) => {
            eprintln!("keygate-load: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keygate-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(run(plan, &args.label));
    match serde_json::to_string(&report) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("keygate-load: cannot print the report: {e}");
            ExitCode::FAILURE
        }
    }
}

fn seconds(name: &str, value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("--{name} must be a non-negative number"))
}

fn plan(args: &Args) -> Result<LoadPlan, String> {
    let target = Target::parse(&args.url).map_err(|e| e.to_string())?;
    let body = match (&args.body, &args.body_file) {
        (Some(b), _) => Bytes::from(b.clone()),
        (None, Some(path)) => std::fs::read(path)
            .map(Bytes::from)
            .map_err(|e| format!("cannot read --body-file {}: {e}", path.display()))?,
        (None, None) => Bytes::new(),
    };
    let headers = args
        .headers
        .iter()
        .map(|h| {
            let (name, value) = h
                .split_once(':')
                .ok_or_else(|| format!("--header '{h}' is not 'Name: value'"))?;
            let name = HeaderName::try_from(name.trim())
                .map_err(|_| format!("--header '{h}' has an invalid name"))?;
            let value = HeaderValue::try_from(value.trim())
                .map_err(|_| format!("--header '{h}' has an invalid value"))?;
            Ok((name, value))
        })
        .collect::<Result<Vec<_>, String>>()?;
    if !args.rate.is_finite() || args.rate < 0.0 {
        return Err("--rate must be 0 or a positive number".into());
    }
    let method = args.method.clone().unwrap_or(if body.is_empty() {
        Method::GET
    } else {
        Method::POST
    });
    Ok(LoadPlan {
        request: RequestSpec {
            method,
            target,
            headers,
            body,
        },
        rate: (args.rate > 0.0).then_some(args.rate),
        duration: seconds("duration", args.duration)?,
        warmup: seconds("warmup", args.warmup)?,
        connections: args.connections.max(1),
        stream: args.stream,
        timeout: Duration::from_millis(args.timeout_ms),
    })
}
