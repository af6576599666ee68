//! `keygate serve` and `keygate policy check`.

use std::path::Path;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ServeArgs {}

pub fn run(_args: ServeArgs) -> ExitCode {
    todo!()
}

pub fn check(_file: &Path) -> ExitCode {
    todo!()
}
