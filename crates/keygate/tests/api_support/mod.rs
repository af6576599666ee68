//! The `keygate api ...` test harness shared by `api_cli.rs` and `access_keys_cli.rs`: a throwaway data
//! directory, the real binary run against it, and assertions on its output.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use serde_json::Value;

/// A unique temporary data directory, removed on drop.
pub struct DataDir(PathBuf);

impl DataDir {
    pub fn new(tag: &str) -> Self {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).unwrap();
        let name = format!("keygate-api-cli-{tag}-{:016x}", u64::from_le_bytes(random));
        Self(std::env::temp_dir().join(name))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `keygate api ARGS --data-dir DIR`, with no KEYGATE_* variables inherited.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keygate"));
        cmd.arg("api").args(args).arg("--data-dir").arg(self.path());
        for var in [
            "KEYGATE_MASTER_KEY",
            "KEYGATE_MASTER_KEY_FILE",
            "KEYGATE_DATA_DIR",
        ] {
            cmd.env_remove(var);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs a command that must succeed and returns its stdout as JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        parse_ok(&self.run(args))
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn parse_ok(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "status {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Asserts exit status `code` and a one-line `error: ...` on stderr containing `needle`; returns stderr.
pub fn assert_fails(out: &Output, code: i32, needle: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.contains(needle), "expected '{needle}' in: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

pub fn str_field<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string '{field}' in {value}"))
}

pub fn random_value(tag: &str) -> String {
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).unwrap();
    format!(
        "{tag}-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
    )
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Asserts that no file in the data directory (database, WAL, key file, ...) holds any of `needles`; returns
/// how many files it read.
pub fn assert_absent_from_files(dir: &Path, stage: &str, needles: &[&str]) -> usize {
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        for needle in needles {
            assert!(
                !contains(&bytes, needle),
                "{stage}: {} holds a plaintext value",
                path.display()
            );
        }
        files += 1;
    }
    files
}
