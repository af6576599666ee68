//! `cargo xtask test`: the one command that runs every test on a fresh machine.
//!
//! It sets up each external part the tests use (see [`parts`]), prints what it did and how long
//! each part took, then runs `cargo test --workspace --no-fail-fast` with every part required,
//! and ends with one summary line of passed and failed tests.

mod apt;
mod parts;
mod summary;

use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: cargo xtask test [CARGO_TEST_ARGS...]   set up the test parts, then run every test
       cargo xtask setup                       set up the test parts only

CARGO_TEST_ARGS go to `cargo test --workspace --no-fail-fast`, e.g. `cargo xtask test -- sdk`.";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let command = args.next();
    match command.as_deref() {
        Some("test") => match setup() {
            Ok(set_up) => summary::run_tests(args.collect(), set_up),
            Err(()) => ExitCode::from(2),
        },
        Some("setup") => match setup() {
            Ok(_) => ExitCode::SUCCESS,
            Err(()) => ExitCode::from(2),
        },
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Sets up every part, one line each; `Err` after printing why a part cannot be set up.
fn setup() -> Result<Duration, ()> {
    println!("xtask: setting up the parts the tests need");
    let started = Instant::now();
    let mut failed = false;
    for part in parts::ALL {
        let part_started = Instant::now();
        let outcome = (part.ensure)();
        let seconds = part_started.elapsed().as_secs_f64();
        match outcome {
            Ok(what) => println!("  {:<16} {what} ({seconds:.1} s)", part.name),
            Err(why) => {
                println!("  {:<16} cannot be set up: {why}", part.name);
                failed = true;
            }
        }
    }
    if failed {
        eprintln!("xtask: stopped before testing: a part above is missing");
        return Err(());
    }
    Ok(started.elapsed())
}
