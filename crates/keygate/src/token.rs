//! `keygate token generate`: random access tokens from the OS CSPRNG.

use std::process::ExitCode;

use base64::Engine as _;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Print a new random access token (base64url, no padding).
    Generate {
        /// Number of random bytes (at least 16).
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(16..=1024))]
        bytes: u16,
    },
}

pub fn run(cmd: TokenCommand) -> ExitCode {
    match cmd {
        TokenCommand::Generate { bytes } => {
            let mut buf = vec![0u8; usize::from(bytes)];
            if let Err(err) = getrandom::fill(&mut buf) {
                eprintln!("error: the OS random number generator failed: {err}");
                return ExitCode::from(1);
            }
            println!(
                "{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&buf)
            );
            ExitCode::SUCCESS
        }
    }
}
