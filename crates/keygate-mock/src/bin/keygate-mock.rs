//! `keygate-mock`: runs the mock LLM provider until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use keygate_mock::{MockConfig, MockServer};

/// A mock OpenAI / Anthropic provider for tests and benchmarks.
#[derive(Debug, Parser)]
#[command(name = "keygate-mock", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9999")]
    listen: SocketAddr,
    /// Content chunks per streamed reply.
    #[arg(long, default_value_t = 5)]
    chunks: usize,
    /// Pause before each streamed content chunk, in milliseconds.
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
    /// Delay used by API keys containing a bare `slow`, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    slow_delay_ms: u64,
    /// Requests kept in the record (0 turns recording off).
    #[arg(long, default_value_t = 10_000)]
    max_records: usize,
    /// Runtime worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// PEM certificate chain; with --tls-key, serve HTTPS (ALPN h2 and http/1.1).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this PEM CA (with --tls-cert).
    #[arg(long, requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Streams one HTTP/2 connection may carry at once.
    #[arg(long, default_value_t = 100)]
    max_concurrent_streams: u32,
    /// Speak HTTP/1.1 only.
    #[arg(long)]
    http1_only: bool,
    /// List this model id on `GET .../models` instead of the built-in lists (repeatable).
    #[arg(long = "model", value_name = "ID")]
    models: Vec<String>,
    /// Write a new test CA (`ca.pem`) and a certificate for 127.0.0.1/localhost signed by it
    /// (`server.crt`, `server.key`) into this directory, then exit (for benchmarks and trials).
    #[arg(long, exclusive = true)]
    write_test_certs: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(dir) = &args.write_test_certs {
        return write_test_certs(dir);
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keygate-mock: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> ExitCode {
    let mut config = MockConfig::default()
        .with_listen(args.listen)
        .with_chunks(args.chunks)
        .with_chunk_delay(Duration::from_millis(args.chunk_delay_ms))
        .with_slow_delay(Duration::from_millis(args.slow_delay_ms))
        .with_max_records(args.max_records)
        .with_max_concurrent_streams(args.max_concurrent_streams);
    if args.http1_only {
        config = config.with_http1_only();
    }
    if !args.models.is_empty() {
        config = config.with_models(args.models.clone());
    }
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let files = (
            read(cert),
            read(key),
            args.client_ca.as_ref().map(read).transpose(),
        );
        match files {
            (Ok(cert), Ok(key), Ok(ca)) => {
                config = config.with_tls(cert, key);
                if let Some(ca) = ca {
                    config = config.with_client_ca(ca);
                }
            }
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                eprintln!("keygate-mock: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let server = match MockServer::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("keygate-mock: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("keygate-mock listening on {}", server.url());
    if let Err(e) = stop_signal().await {
        eprintln!("keygate-mock: cannot wait for signals: {e}");
        return ExitCode::FAILURE;
    }
    server.shutdown().await;
    ExitCode::SUCCESS
}

async fn stop_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

fn write_test_certs(dir: &std::path::Path) -> ExitCode {
    let ca = keygate_mock::certs::TestCa::new("keygate-mock test CA");
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(dir.join("ca.pem"), ca.cert_pem()))
        .and_then(|()| {
            ca.server_cert(&keygate_mock::certs::LOCAL_NAMES)
                .write(dir, "server")
        });
    match written {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "keygate-mock: cannot write test certificates to {}: {e}",
                dir.display()
            );
            ExitCode::FAILURE
        }
    }
}
