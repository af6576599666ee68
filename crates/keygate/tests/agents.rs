//! Real agent clients through the real binary: Claude Code (`claude -p`) and Codex CLI (`codex
//! exec`) at the versions pinned in tests/agents/package.json, each run once per scenario against
//! `keygate serve` in front of the mock provider (in this process), with a throwaway home, an
//! access key and nothing but loopback. The prompt's `mock-tool:` line makes the mock answer with a
//! call to the CLI's own shell tool (`Bash` for Claude Code, `exec_command` for Codex); the CLI runs
//! `echo keygate-roundtrip-42`, sends the output back, and the mock's `tool result: ...` becomes
//! the CLI's final answer. Each test checks that answer, what reached the mock, and the gateway's
//! access-log and usage-ledger lines.
//!
//! - Straight: each CLI in its own format, on the built-in providers: Claude Code on
//!   `claude-sonnet-4-5` over `/v1/messages`, Codex on `gpt-5` over `/v1/responses`.
//! - Crossed: each CLI on a model reachable only in the other format (custom providers serving one
//!   surface each): Claude Code on `gpt-4o` over Chat Completions, Codex on `claude-sonnet-4-5`
//!   over Messages. These need the gateway to translate between formats.
//!
//! The CLIs come from the cache `cargo xtask test` fills; without them each test says so in one
//! line. docs/testing.md ("Agent clients") has the flags and what each CLI sends.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{api, send, Gateway, Req, TempDir};
use keygate_mock::{MockConfig, MockServer, RecordedRequest};
use keygate_test_support::parts::{self, AgentClis};
use keygate_test_support::require;
use serde_json::Value;

/// What the scripted shell command prints, so what the final answer must contain.
const MARK: &str = "keygate-roundtrip-42";
/// The start of the mock's answer to a tool result.
const TOOL_RESULT: &str = "tool result:";
/// The longest one CLI run may take (a round trip takes about a second): a hang fails the test
/// with what the CLI printed, instead of holding up the suite.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// The providers' server-side key (the CLIs hold an access key).
const SERVER_KEY: &str = "sk-agents-server-key";

/// The crossed policy's OpenAI-format provider: Chat Completions only.
const CHAT_ONLY: &str = "openai-chat-only";
/// The crossed policy's Anthropic-format provider: Messages only.
const MESSAGES_ONLY: &str = "anthropic-messages-only";

/// The built-in `openai` and `anthropic` providers (answered by the mock), behind access keys.
fn straight_policy() -> String {
    format!(
        "on_http_request:\n  - actions:\n      - type: ai-gateway\n        config:\n          access_keys: required\n          providers:\n            - id: openai\n              api_keys:\n                - value: {SERVER_KEY}\n            - id: anthropic\n              api_keys:\n                - value: {SERVER_KEY}\n"
    )
}

/// Only two custom providers on the mock, one surface each: `gpt-4o` over Chat Completions,
/// `claude-sonnet-4-5` over Messages.
fn crossed_policy(mock: &MockServer) -> String {
    let url = mock.openai_base_url();
    let provider = |id: &str, format: &str, surface: &str, model: &str| {
        format!(
            "            - id: {id}\n              base_url: {url}\n              api_keys:\n                - value: {SERVER_KEY}\n              supported_api_surfaces:\n                - {{format: {format}, surface: {surface}}}\n              models:\n                - id: {model}\n"
        )
    };
    format!(
        "on_http_request:\n  - actions:\n      - type: ai-gateway\n        config:\n          access_keys: required\n          only_allow_configured_providers: true\n          providers:\n{}{}",
        provider(CHAT_ONLY, "openai", "chat-completions", "gpt-4o"),
        provider(MESSAGES_ONLY, "anthropic", "messages", "claude-sonnet-4-5"),
    )
}

/// What a scenario expects of the gateway.
struct Expect {
    /// The path the CLI calls (its own format).
    client_path: &'static str,
    /// The path the mock is asked on (the provider's format).
    upstream_path: &'static str,
    /// The provider and model that answer.
    provider: &'static str,
    model: &'static str,
    /// The CLI's shell tool, which the mock calls.
    tool: &'static str,
}

/// Claude Code's Bash tool call, as the mock is told to make it.
const CLAUDE_TOOL_CALL: &str =
    r#"mock-tool: Bash {"command":"echo keygate-roundtrip-42","description":"Print the mark"}"#;
/// Codex's shell tool call (unified exec: `exec_command` with a `cmd` string, in 0.171.0).
const CODEX_TOOL_CALL: &str = r#"mock-tool: exec_command {"cmd":"echo keygate-roundtrip-42"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_runs_a_tool_over_messages() {
    let Some(clis) = require(parts::agent_clis()) else {
        return;
    };
    let scenario = Scenario::start(|_| straight_policy()).await;
    let run = scenario.claude(&clis, "claude-sonnet-4-5").await;
    scenario
        .check(
            "claude straight",
            &run,
            &Expect {
                client_path: "/v1/messages",
                upstream_path: "/v1/messages",
                provider: "anthropic",
                model: "claude-sonnet-4-5",
                tool: "Bash",
            },
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_runs_a_tool_over_responses() {
    let Some(clis) = require(parts::agent_clis()) else {
        return;
    };
    let scenario = Scenario::start(|_| straight_policy()).await;
    let run = scenario.codex(&clis, "gpt-5").await;
    scenario
        .check(
            "codex straight",
            &run,
            &Expect {
                client_path: "/v1/responses",
                upstream_path: "/v1/responses",
                provider: "openai",
                model: "gpt-5",
                tool: "exec_command",
            },
        )
        .await;
}

/// Needs translation from Messages to Chat Completions (without it: `422 ERR_KEYGATE_3813`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_on_a_chat_completions_model() {
    let Some(clis) = require(parts::agent_clis()) else {
        return;
    };
    let scenario = Scenario::start(crossed_policy).await;
    let run = scenario.claude(&clis, "gpt-4o").await;
    scenario
        .check(
            "claude crossed",
            &run,
            &Expect {
                client_path: "/v1/messages",
                upstream_path: "/v1/chat/completions",
                provider: CHAT_ONLY,
                model: "gpt-4o",
                tool: "Bash",
            },
        )
        .await;
}

/// Needs translation from Responses to Messages (without it: `422 ERR_KEYGATE_3813`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_on_a_messages_model() {
    let Some(clis) = require(parts::agent_clis()) else {
        return;
    };
    let scenario = Scenario::start(crossed_policy).await;
    let run = scenario.codex(&clis, "claude-sonnet-4-5").await;
    scenario
        .check(
            "codex crossed",
            &run,
            &Expect {
                client_path: "/v1/responses",
                upstream_path: "/v1/messages",
                provider: MESSAGES_ONLY,
                model: "claude-sonnet-4-5",
                tool: "exec_command",
            },
        )
        .await;
}

/// The mock, a gateway on it with an access key, and a throwaway home for the CLI.
struct Scenario {
    mock: MockServer,
    gw: Gateway,
    key_id: String,
    token: String,
    home: TempDir,
    _data: TempDir,
}

impl Scenario {
    async fn start(policy: impl FnOnce(&MockServer) -> String) -> Self {
        let mock = MockServer::start(MockConfig::default())
            .await
            .expect("mock provider");
        let data = TempDir::new("agents-data");
        let key = api(data.path(), &["ai-gateway-api-keys", "create"]);
        let key_id = key["id"].as_str().expect("key id").to_owned();
        let token = key["token"].as_str().expect("key token").to_owned();
        let gw = Gateway::start_on_mock(&policy(&mock), &mock.openai_base_url(), data.path(), &[]);
        let home = TempDir::new("agents-home");
        std::fs::create_dir_all(home.path().join("work")).expect("work dir");
        Self {
            mock,
            gw,
            key_id,
            token,
            home,
            _data: data,
        }
    }

    /// `claude -p PROMPT` on `model`, JSON output, its Bash tool allowed (not
    /// `--dangerously-skip-permissions`, which Claude Code refuses as root). It talks to nothing
    /// but `ANTHROPIC_BASE_URL` (telemetry, error reports and update checks are the nonessential
    /// traffic turned off) and makes no backoff retries, so an error shows at once. (A 400 is
    /// still sent again up to five times at once, each time without one more `anthropic-beta`
    /// feature.)
    async fn claude(&self, clis: &AgentClis, model: &str) -> Run {
        let mut command = self.command(&clis.claude);
        command
            .args(["-p", CLAUDE_TOOL_CALL])
            .args(["--model", model, "--output-format", "json"])
            .args(["--allowedTools", "Bash"])
            .env("ANTHROPIC_BASE_URL", self.gw.url(""))
            .env("ANTHROPIC_AUTH_TOKEN", &self.token)
            // Background calls to the small model, if any, go to the same model.
            .env("ANTHROPIC_DEFAULT_HAIKU_MODEL", model)
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("CLAUDE_CODE_MAX_RETRIES", "0");
        let mut run = run(command, self.home.path(), "claude").await;
        let result: Option<Value> = serde_json::from_str(&run.stdout).ok();
        run.answer = match result {
            Some(result) if result["is_error"] == false => {
                result["result"].as_str().unwrap_or_default().to_owned()
            }
            _ => String::new(),
        };
        run
    }

    /// `codex exec PROMPT` on `model`, through the `keygate` provider of `$CODEX_HOME/config.toml`
    /// ([`codex_config`]), its shell commands run without the sandbox (the one command is the
    /// test's own `echo`; bubblewrap needs user namespaces, which containers often lack).
    async fn codex(&self, clis: &AgentClis, model: &str) -> Run {
        let codex_home = self.home.path().join("codex");
        std::fs::create_dir_all(&codex_home).expect("CODEX_HOME");
        std::fs::write(codex_home.join("config.toml"), codex_config(&self.gw)).expect("config");
        let last = self.home.path().join("last-message.txt");
        let mut command = self.command(&clis.codex);
        command
            .args([
                "exec",
                "--strict-config",
                "--skip-git-repo-check",
                "--ephemeral",
            ])
            .args(["--sandbox", "danger-full-access", "--color", "never"])
            .args(["--model", model])
            .arg("--output-last-message")
            .arg(&last)
            .arg(CODEX_TOOL_CALL)
            .env("CODEX_HOME", &codex_home)
            .env("KEYGATE_ACCESS_KEY", &self.token);
        let mut run = run(command, self.home.path(), "codex").await;
        run.answer = std::fs::read_to_string(&last).unwrap_or_default();
        run
    }

    /// `program` in the work directory with nothing of this process's environment but `PATH`
    /// (node, bash): the home is the throwaway one.
    fn command(&self, program: &Path) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(program);
        command
            .current_dir(self.home.path().join("work"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("TERM", "dumb")
            .env("LANG", "C.UTF-8");
        command
    }

    /// Checks the round trip: the CLI's answer, the requests the mock received, and one
    /// access-log line and one ledger row per request.
    async fn check(&self, name: &str, run: &Run, expect: &Expect) {
        let requests = self.mock.requests();
        let lines = self.access_log_lines(requests.len()).await;
        let mut terminal = std::io::stderr();
        let _ = writeln!(
            terminal,
            "agents: {name}: {} ran {:.1} s, {} gateway requests",
            run.program,
            run.elapsed.as_secs_f64(),
            lines.len()
        );
        let context = || {
            let log: Vec<String> = lines.iter().map(summary).collect();
            let upstream: Vec<String> = requests
                .iter()
                .map(|r| format!("{} {}", r.method, r.path))
                .collect();
            format!(
                "{}\n--- gateway requests\n{}\n--- mock requests\n{}",
                run.report(),
                log.join("\n"),
                upstream.join("\n")
            )
        };
        assert!(
            run.succeeded() && run.answer.contains(TOOL_RESULT) && run.answer.contains(MARK),
            "{name}: no `{TOOL_RESULT} ...{MARK}...` answer\n{}",
            context()
        );

        // The mock: the CLI's tools on the first request, the tool's output ending the second.
        assert_eq!(
            requests.len(),
            2,
            "{name}: one tool round trip\n{}",
            context()
        );
        for request in &requests {
            assert_eq!(
                (request.method.as_str(), request.path.as_str()),
                ("POST", expect.upstream_path),
                "{name}\n{}",
                context()
            );
        }
        let first = requests[0].body_json().unwrap_or_default();
        assert!(
            names(&first["tools"], expect.tool),
            "{name}: no `{}` tool in the first request: {}",
            expect.tool,
            requests[0].body
        );
        let result = tool_result(&requests[1]).unwrap_or_default();
        assert!(
            result.contains(MARK),
            "{name}: the second request does not end with the tool's output: {}",
            requests[1].body
        );

        // The gateway: one access-log line per request, all answered by the expected model.
        assert_eq!(lines.len(), requests.len(), "{name}\n{}", context());
        for line in &lines {
            assert_eq!(line["method"], "POST", "{name}: {line}");
            assert_eq!(line["path"], expect.client_path, "{name}: {line}");
            assert_eq!(line["status"], 200, "{name}: {line}");
            assert_eq!(line["access_key"], self.key_id.as_str(), "{name}: {line}");
            assert_eq!(line["ai"]["provider"], expect.provider, "{name}: {line}");
            assert_eq!(line["ai"]["model"], expect.model, "{name}: {line}");
            assert_eq!(line["ai"]["usage_source"], "provider", "{name}: {line}");
            for tokens in ["input_tokens", "output_tokens"] {
                assert!(
                    line["ai"][tokens].as_u64() > Some(0),
                    "{name}: {tokens}: {line}"
                );
            }
        }
        self.check_ledger(name, &lines).await;
    }

    /// One ledger row per access-log line, the same request id, key, model and tokens.
    async fn check_ledger(&self, name: &str, lines: &[Value]) {
        let query = format!("/v1/usage/events?key={}&limit=100", self.key_id);
        let deadline = Instant::now() + Duration::from_secs(10);
        let events = loop {
            // The ledger's writer commits within 200 ms.
            let reply = send(self.gw.admin, Req::get(&query)).await.expect("admin");
            assert_eq!(reply.status, 200, "{}", reply.text());
            let events = reply.json()["events"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if events.len() >= lines.len() || Instant::now() > deadline {
                break events;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(events.len(), lines.len(), "{name}: ledger rows {events:?}");
        for line in lines {
            let event = events
                .iter()
                .find(|e| e["request_id"] == line["request_id"])
                .unwrap_or_else(|| panic!("{name}: no ledger row for {line}"));
            assert_eq!(event["access_key"], self.key_id.as_str(), "{name}: {event}");
            assert_eq!(event["status"], 200, "{name}: {event}");
            assert_eq!(event["provider"], line["ai"]["provider"], "{name}: {event}");
            assert_eq!(event["model"], line["ai"]["model"], "{name}: {event}");
            assert_eq!(event["usage_source"], "provider", "{name}: {event}");
            for tokens in ["input_tokens", "output_tokens"] {
                assert_eq!(event[tokens], line["ai"][tokens], "{name}: {event}");
            }
        }
    }

    /// The gateway's access-log lines (`"message": "request"`), oldest first, once there are at
    /// least `expected` (a line is printed as its response ends) or after 5 s.
    async fn access_log_lines(&self, expected: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines: Vec<Value> = self
                .gw
                .output()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| v["message"] == "request")
                .collect();
            if lines.len() >= expected || Instant::now() > deadline {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The `$CODEX_HOME/config.toml` of a run: Keygate as the one provider, Responses over HTTP (a
/// custom provider does not try a WebSocket first), no retries, and none of the traffic Codex
/// sends elsewhere on its own: the curated-plugin sync (`git ls-remote` of github.com, then
/// api.github.com and chatgpt.com) and the OpenTelemetry metrics to ab.chatgpt.com.
fn codex_config(gw: &Gateway) -> String {
    format!(
        r#"model_provider = "keygate"
check_for_update_on_startup = false

[analytics]
enabled = false

[features]
plugins = false
remote_plugin = false
apps = false

[model_providers.keygate]
name = "Keygate"
base_url = "{}"
env_key = "KEYGATE_ACCESS_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
"#,
        gw.url("/v1")
    )
}

/// A finished CLI run, or one killed at [`CLI_TIMEOUT`].
struct Run {
    program: &'static str,
    /// `None`: killed at the timeout.
    status: Option<std::process::ExitStatus>,
    stdout: String,
    stderr: String,
    /// The final answer the CLI gave (empty when it gave none).
    answer: String,
    elapsed: Duration,
}

impl Run {
    fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    fn report(&self) -> String {
        let status = match self.status {
            Some(status) => status.to_string(),
            None => format!("killed after {} s", CLI_TIMEOUT.as_secs()),
        };
        format!(
            "{} ({status}, {:.1} s)\n--- stdout\n{}\n--- stderr\n{}",
            self.program,
            self.elapsed.as_secs_f64(),
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Runs `command` in a process group of its own, its output in files under `dir` (so a run
/// killed at the timeout still shows what it printed); the whole group is killed at the end.
async fn run(mut command: tokio::process::Command, dir: &Path, program: &'static str) -> Run {
    let (out_path, err_path) = (dir.join("stdout.txt"), dir.join("stderr.txt"));
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let err = std::fs::File::create(&err_path).expect("stderr file");
    command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("{program} does not start: {e}"));
    let group = child.id();
    let status = match tokio::time::timeout(CLI_TIMEOUT, child.wait()).await {
        Ok(status) => Some(status.expect("wait for the CLI")),
        Err(_) => None,
    };
    let elapsed = started.elapsed();
    // Codex's launcher is a Node process that starts the native binary: end both, and anything
    // they left behind.
    if let Some(group) = group {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{group}")])
            .stderr(Stdio::null())
            .status();
    }
    let _ = child.wait().await;
    Run {
        program,
        status,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        answer: String::new(),
        elapsed,
    }
}

/// Whether a `tools` list (any format) has a tool called `name`: Messages and Responses name it at
/// the top (`name`), Chat Completions under `function`.
fn names(tools: &Value, name: &str) -> bool {
    tools.as_array().is_some_and(|tools| {
        tools
            .iter()
            .any(|t| t["name"] == name || t["function"]["name"] == name)
    })
}

/// The output of the tool result that ends a recorded request, in its format: a Messages user
/// message with a `tool_result` block, a Chat Completions `tool` message, a Responses
/// `function_call_output` item.
fn tool_result(request: &RecordedRequest) -> Option<String> {
    let body = request.body_json()?;
    let text = |content: &Value| match content {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if let Some(last) = body["messages"].as_array().and_then(|m| m.last()) {
        if last["role"] == "tool" {
            return Some(text(&last["content"]));
        }
        let blocks = last["content"].as_array()?;
        let result = blocks.iter().find(|b| b["type"] == "tool_result")?;
        return Some(text(&result["content"]));
    }
    let last = body["input"].as_array()?.last()?;
    (last["type"] == "function_call_output").then(|| text(&last["output"]))
}

/// One access-log line in a few words: `POST /v1/messages 422 ERROR`.
fn summary(line: &Value) -> String {
    let mut summary = format!(
        "{} {} {}",
        line["method"].as_str().unwrap_or("?"),
        line["path"].as_str().unwrap_or("?"),
        line["status"]
    );
    if let Some(error) = line["error"].as_str() {
        summary.push_str(&format!(" {error}"));
    }
    summary
}
