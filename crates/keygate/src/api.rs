//! `keygate api vaults|secrets ...`: manage the encrypted secret store.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ApiArgs {}

pub fn run(_args: ApiArgs) -> ExitCode {
    todo!()
}
