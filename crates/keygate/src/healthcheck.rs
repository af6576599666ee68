//! `keygate healthcheck`: GET a health URL and exit 0 on a 2xx answer, 1 otherwise, for
//! container health checks in images without curl (distroless).

use std::process::ExitCode;
use std::time::Duration;

use keygate_http::HttpClient;

#[derive(clap::Args)]
pub struct HealthcheckArgs {
    /// The URL to GET (the admin listener's /healthz, or /readyz).
    #[arg(
        long,
        env = "KEYGATE_HEALTHCHECK_URL",
        default_value = "http://127.0.0.1:9090/healthz"
    )]
    url: http::Uri,
    /// Unhealthy when no answer came within this long (e.g. 3s, 500ms).
    #[arg(long, default_value = "5s", value_parser = keygate_policy::actions::parse_duration)]
    timeout: Duration,
}

pub fn run(args: HealthcheckArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("unhealthy: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let verdict = runtime.block_on(async {
        tokio::time::timeout(args.timeout, check(&args.url))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", args.timeout)))
    });
    match verdict {
        Ok(status) => {
            println!("healthy: {} {status}", args.url);
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("unhealthy: {}: {why}", args.url);
            ExitCode::FAILURE
        }
    }
}

/// The status of a 2xx answer; `Err` says what else happened.
async fn check(url: &http::Uri) -> Result<http::StatusCode, String> {
    let request = http::Request::get(url.clone())
        .body(keygate_http::empty())
        .map_err(|err| err.to_string())?;
    let response = HttpClient::default()
        .send(request)
        .await
        .map_err(|err| err.with_causes())?;
    match response.status() {
        status if status.is_success() => Ok(status),
        status => Err(format!("answered {status}")),
    }
}
