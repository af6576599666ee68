//! Running the whole suite and summing up libtest's result lines into one.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use keygate_test_support::parts::{test_venv, PYTHON_ENV, REQUIRE_PARTS_ENV};

/// Totals over every test binary's `test result:` line.
#[derive(Debug, Default, PartialEq)]
pub struct Totals {
    pub binaries: u32,
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Totals {
    /// Adds one output line of a test binary; lines other than `test result: ...` are skipped.
    pub fn add_line(&mut self, line: &str) {
        let line = line.trim();
        let Some(rest) = ["test result: ok.", "test result: FAILED."]
            .iter()
            .find_map(|prefix| line.strip_prefix(prefix))
        else {
            return;
        };
        self.binaries += 1;
        for field in rest.split(';') {
            let mut words = field.split_whitespace().rev();
            let (Some(label), Some(count)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(count) = count.parse::<u64>() else {
                continue;
            };
            match label {
                "passed" => self.passed += count,
                "failed" => self.failed += count,
                "ignored" => self.ignored += count,
                _ => {}
            }
        }
    }
}

/// Runs `cargo test --workspace --no-fail-fast ARGS` with every part required, echoing its
/// output, then prints the summary line.
pub fn run_tests(args: Vec<String>, set_up: Duration) -> ExitCode {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!(
        "xtask: cargo test --workspace --no-fail-fast {}",
        args.join(" ")
    );
    let started = Instant::now();
    let child = Command::new(cargo)
        .args(["test", "--workspace", "--no-fail-fast"])
        .args(&args)
        .env(REQUIRE_PARTS_ENV, "1")
        .env(PYTHON_ENV, test_venv().join("bin/python3"))
        .stdout(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            eprintln!("xtask: cannot run cargo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut totals = Totals::default();
    let stdout = child.stdout.take().expect("piped stdout");
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        totals.add_line(&line);
        let _ = writeln!(out, "{line}");
    }
    drop(out);
    let status = child.wait().map(|s| s.success()).unwrap_or(false);
    let elapsed = started.elapsed().as_secs();
    let verdict = if status { "ok" } else { "FAILED" };
    println!(
        "xtask: {verdict}: {} passed, {} failed, {} ignored in {} test binaries; {} min {} s (set-up {:.1} s)",
        totals.passed,
        totals.failed,
        totals.ignored,
        totals.binaries,
        elapsed / 60,
        elapsed % 60,
        set_up.as_secs_f64(),
    );
    if !status && totals.failed == 0 {
        println!("xtask: cargo test failed before every test ran (a build error?): see above");
    }
    if status {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_result_lines_and_skips_the_rest() {
        let mut totals = Totals::default();
        for line in [
            "running 3 tests",
            "test a ... ok",
            "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s",
            "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.20s",
            "test result: passed though it is only text",
        ] {
            totals.add_line(line);
        }
        assert_eq!(
            totals,
            Totals {
                binaries: 2,
                passed: 15,
                failed: 2,
                ignored: 1
            }
        );
    }
}
