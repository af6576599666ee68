//! The `keygate` command line: argument parsing and wiring, nothing else.

mod alloc;
mod api;
mod check;
mod config_file;
mod database;
mod healthcheck;
mod ip_intel;
mod migrate;
mod policy_test;
mod serve;
mod stdout;
mod token;
mod usage;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: alloc::MiMalloc = alloc::MiMalloc;

/// Keygate: a self-hosted AI gateway driven by ngrok Traffic Policy.
#[derive(Parser)]
#[command(name = "keygate", version, about, disable_help_subcommand = false)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(Box<serve::ServeArgs>),
    /// Validate policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Manage vaults, secrets and AI gateway keys (mirrors `ngrok api ...`).
    Api(api::ApiArgs),
    /// Access tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Usage totals from the usage ledger (tokens, cost, errors), by key, model, provider, day or hour.
    Usage(usage::UsageArgs),
    /// Exit 0 when a running gateway's health URL answers 2xx (for container health checks).
    Healthcheck(healthcheck::HealthcheckArgs),
    /// Create or upgrade the store's tables (SQLite data dir or --database), then exit.
    Migrate(migrate::MigrateArgs),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a policy file; prints `ok` or every error found.
    Check(check::CheckArgs),
    /// Run a policy offline against the cases of a test file (or explain one request).
    Test(Box<policy_test::TestArgs>),
}

fn main() -> ExitCode {
    let command = config_file::with_flag(Cli::command());
    let args = match config_file::expand(&command, std::env::args_os().collect()) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let cli =
        Cli::from_arg_matches(&command.get_matches_from(args)).unwrap_or_else(|err| err.exit());
    match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Policy(PolicyCommand::Check(args)) => check::run(args),
        Command::Policy(PolicyCommand::Test(args)) => policy_test::run(*args),
        Command::Api(args) => api::run(args),
        Command::Token(cmd) => token::run(cmd),
        Command::Usage(args) => usage::run(args),
        Command::Healthcheck(args) => healthcheck::run(args),
        Command::Migrate(args) => migrate::run(args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::config_file::with_flag(super::Cli::command()).debug_assert();
    }
}
