//! The external parts the tests use, each set up in one place.
//!
//! A part is found where it already is, else installed: system programs with apt-get (see
//! [`crate::apt`]), Python packages into a virtualenv under `target/` (never into the system's
//! Python). Each `ensure` says in a few words what it found or did.

use std::path::Path;
use std::process::{Command, Stdio};

use keygate_test_support::parts as found;

use crate::apt;

/// One external part.
pub struct Part {
    pub name: &'static str,
    /// Finds or installs the part: `Ok` says what was done, `Err` why it cannot be.
    pub ensure: fn() -> Result<String, String>,
}

/// Every part, in set-up order.
pub const ALL: &[Part] = &[
    Part {
        name: "redis-server",
        ensure: redis_server,
    },
    Part {
        name: "python SDKs",
        ensure: python_sdks,
    },
];

/// The pinned SDKs and everything they import.
const REQUIREMENTS: &str = "tests/sdk/requirements.txt";
/// A copy of the requirements the virtualenv was built from: when it matches, nothing is done.
const STAMP: &str = "keygate-requirements.txt";

fn redis_server() -> Result<String, String> {
    if let Ok(path) = found::redis_server() {
        return Ok(format!("found {}", path.display()));
    }
    apt::install("redis-server")?;
    let path = found::redis_server().map_err(|missing| missing.to_string())?;
    Ok(format!("installed {} with apt-get", path.display()))
}

fn python_sdks() -> Result<String, String> {
    let requirements_path = found::workspace_root().join(REQUIREMENTS);
    let requirements = std::fs::read_to_string(&requirements_path)
        .map_err(|e| format!("cannot read {}: {e}", requirements_path.display()))?;
    let venv = found::test_venv();
    let python = venv.join("bin/python3");
    let stamp = venv.join(STAMP);
    if python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == requirements) {
        return Ok(format!("up to date in {}", shown(&venv)));
    }
    if venv.exists() {
        std::fs::remove_dir_all(&venv)
            .map_err(|e| format!("cannot remove the stale {}: {e}", venv.display()))?;
    }
    let python3 = found::find_on_path("python3")
        .ok_or("no python3 on PATH: install it with `sudo apt-get install python3 python3-venv`")?;
    run(
        Command::new(python3).args(["-m", "venv"]).arg(&venv),
        "python3 -m venv failed (on Debian: `sudo apt-get install python3-venv`)",
    )?;
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg("-r")
            .arg(&requirements_path),
        "pip install of the pinned SDKs failed",
    )?;
    std::fs::write(&stamp, &requirements)
        .map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
    Ok(format!(
        "installed {} packages into {}",
        pinned_count(&requirements),
        shown(&venv)
    ))
}

/// Runs `command`, its output shown only when it fails.
fn run(command: &mut Command, failure: &str) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{failure}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    Err(format!("{failure}: {}", last.trim()))
}

/// Requirement lines (not comments or blanks).
fn pinned_count(requirements: &str) -> usize {
    requirements
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

/// `path` relative to the workspace root when it is inside it.
fn shown(path: &Path) -> String {
    let root = found::workspace_root();
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    path.strip_prefix(&root)
        .map_or_else(|_| path.display().to_string(), |p| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requirement_lines_only() {
        assert_eq!(
            pinned_count("# pinned\n\nopenai==3.60.0\n anthropic==2.16.0 \n"),
            2
        );
    }

    #[test]
    fn the_pinned_requirements_pin_the_sdks() {
        let text = std::fs::read_to_string(found::workspace_root().join(REQUIREMENTS)).unwrap();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            assert!(line.contains("=="), "not pinned: {line}");
        }
        assert!(text.lines().any(|l| l.starts_with("openai==")));
        assert!(text.lines().any(|l| l.starts_with("anthropic==")));
    }
}
