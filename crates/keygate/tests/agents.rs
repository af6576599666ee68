//! Real agent clients through the real binary: Claude Code (`claude -p`) and Codex CLI (`codex
//! exec`) at the versions pinned in tests/agents/package.json, each run once per scenario against
//! `keygate serve` in front of the mock provider (in this process), with a throwaway home, an
//! access key and nothing but loopback. The prompt's `mock-tool:` line makes the mock answer with a
//! call to the CLI's own shell tool (`Bash` for Claude Code, `exec_command` for Codex); the CLI runs
//! `echo keygate-roundtrip-42`, sends the output back, and the mock's `tool result: ...` becomes
//! the CLI's final answer. Each test checks that answer, what reached the mock (path, the
//! provider's format and key), and the gateway's access-log and usage-ledger lines.
//!
//! - Straight: each CLI in its own format, on the built-in providers: Claude Code on
//!   `claude-sonnet-4-5` over `/v1/messages`, Codex on `gpt-5` over `/v1/responses`. Codex runs
//!   with `supports_websockets = true`: its WebSocket attempt must get `426` and fall back to
//!   `POST` at once (a `404` made it retry with backoff, 6.3 s).
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
    /// The CLI's format (the path it calls).
    client: Wire,
    /// The provider's format: what the mock must be asked in.
    upstream: Wire,
    /// The provider and model that answer.
    provider: &'static str,
    model: &'static str,
    /// The CLI's shell tool, which the mock calls.
    tool: &'static str,
    /// Codex with `supports_websockets = true`: its `GET /v1/responses` upgrades, each answered
    /// `426`, before the `POST`s.
    websockets: bool,
}

/// Codex's WebSocket attempts per run when the gateway answers `426`: one, the session's prewarm,
/// then it uses HTTP for the rest of the session (measured with 0.171.0: 1 in every run). A `404`
/// instead makes it try again for the turn and then reconnect `stream_max_retries` times with
/// backoff: 7 `GET`s and 6.3 s with the default of 5 (2 `GET`s with 0, which is why the
/// WebSocket run keeps the default). The bound leaves room for one more try, none for a retry
/// loop.
const MAX_WEBSOCKET_ATTEMPTS: usize = 2;

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
                client: Wire::Messages,
                upstream: Wire::Messages,
                provider: "anthropic",
                model: "claude-sonnet-4-5",
                tool: "Bash",
                websockets: false,
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
    let run = scenario
        .codex(&clis, "gpt-5", Transport::WebSocketFirst)
        .await;
    scenario
        .check(
            "codex straight",
            &run,
            &Expect {
                client: Wire::Responses,
                upstream: Wire::Responses,
                provider: "openai",
                model: "gpt-5",
                tool: "exec_command",
                websockets: true,
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
                client: Wire::Messages,
                upstream: Wire::Chat,
                provider: CHAT_ONLY,
                model: "gpt-4o",
                tool: "Bash",
                websockets: false,
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
    let run = scenario
        .codex(&clis, "claude-sonnet-4-5", Transport::Http)
        .await;
    scenario
        .check(
            "codex crossed",
            &run,
            &Expect {
                client: Wire::Responses,
                upstream: Wire::Messages,
                provider: MESSAGES_ONLY,
                model: "claude-sonnet-4-5",
                tool: "exec_command",
                websockets: false,
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
    async fn codex(&self, clis: &AgentClis, model: &str, transport: Transport) -> Run {
        let codex_home = self.home.path().join("codex");
        std::fs::create_dir_all(&codex_home).expect("CODEX_HOME");
        std::fs::write(
            codex_home.join("config.toml"),
            codex_config(&self.gw, transport),
        )
        .expect("config");
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

    /// Checks the round trip: the CLI's answer, the requests the mock received (path, format,
    /// the provider's key), one access-log line and one ledger row per request, and Codex's
    /// WebSocket attempts, each answered `426`.
    async fn check(&self, name: &str, run: &Run, expect: &Expect) {
        let requests = self.mock.requests();
        let lines = self.access_log_lines(requests.len()).await;
        let (upgrades, posts): (Vec<&Value>, Vec<&Value>) =
            lines.iter().partition(|l| l["method"] == "GET");
        let mut terminal = std::io::stderr();
        let _ = writeln!(
            terminal,
            "agents: {name}: {} ran {:.1} s, {} gateway requests ({} WebSocket GETs), {} upstream {}",
            run.program,
            run.elapsed.as_secs_f64(),
            lines.len(),
            upgrades.len(),
            requests.len(),
            expect.upstream.path(),
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

        // The mock: the CLI's tools on the first request, the tool's output ending the second,
        // both in the provider's format with the provider's key.
        assert_eq!(
            requests.len(),
            2,
            "{name}: one tool round trip\n{}",
            context()
        );
        for request in &requests {
            assert_eq!(
                (request.method.as_str(), request.path.as_str()),
                ("POST", expect.upstream.path()),
                "{name}\n{}",
                context()
            );
            if let Err(problem) = expect.upstream.check(request) {
                panic!(
                    "{name}: request {} is not {}: {problem}\n{}",
                    request.seq,
                    expect.upstream.name(),
                    excerpt(&request.body)
                );
            }
            for (header, value) in &request.headers {
                assert!(
                    !value.contains(&self.token),
                    "{name}: the access key reached the provider in `{header}`"
                );
            }
        }
        let first = requests[0].body_json().unwrap_or_default();
        assert!(
            expect.upstream.has_tool(&first["tools"], expect.tool),
            "{name}: no `{}` tool in the first request: {}",
            expect.tool,
            excerpt(&requests[0].body)
        );
        let result = expect
            .upstream
            .tool_result(&requests[1])
            .unwrap_or_default();
        assert!(
            result.contains(MARK),
            "{name}: the second request does not end with the tool's output in {}: {}",
            expect.upstream.name(),
            excerpt(&requests[1].body)
        );

        // The gateway: one access-log line per request, all answered by the expected model.
        assert_eq!(posts.len(), requests.len(), "{name}\n{}", context());
        for line in &posts {
            assert_eq!(line["method"], "POST", "{name}: {line}");
            assert_eq!(line["path"], expect.client.path(), "{name}: {line}");
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

        // Codex's WebSocket attempts: answered `426` by the gateway itself (the mock saw only
        // `POST`s, above), and few enough that no retry loop ran before the fallback to HTTP.
        if expect.websockets {
            assert!(
                (1..=MAX_WEBSOCKET_ATTEMPTS).contains(&upgrades.len()),
                "{name}: {} WebSocket attempts, expected 1 to {MAX_WEBSOCKET_ATTEMPTS} (a retry \
                 loop before the HTTP fallback?)\n{}",
                upgrades.len(),
                context()
            );
            for line in &upgrades {
                assert_eq!(line["path"], expect.client.path(), "{name}: {line}");
                assert_eq!(line["status"], 426, "{name}: {line}");
            }
        } else {
            assert!(upgrades.is_empty(), "{name}: a GET\n{}", context());
        }
        self.check_ledger(name, &posts, expect).await;
    }

    /// One ledger row per `POST` in the access log (the `426`s make none), the same request id,
    /// key, tokens, and the provider and model that answered.
    async fn check_ledger(&self, name: &str, lines: &[&Value], expect: &Expect) {
        let query = format!("/v1/usage/events?key={}&limit=100", self.key_id);
        let deadline = Instant::now() + Duration::from_secs(10);
        let events = loop {
            // The ledger's writer commits within 200 ms.
            let request = Req::get(&query).bearer(&self.gw.admin_token());
            let reply = send(self.gw.admin, request).await.expect("admin");
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
            assert_eq!(event["provider"], expect.provider, "{name}: {event}");
            assert_eq!(event["model"], expect.model, "{name}: {event}");
            assert_eq!(event["usage_source"], "provider", "{name}: {event}");
            for tokens in ["input_tokens", "output_tokens"] {
                assert_eq!(event[tokens], line["ai"][tokens], "{name}: {event}");
            }
        }
    }

    /// The gateway's access-log lines (`"message": "request"`), oldest first, once at least
    /// `posts` of them are `POST`s (a line is printed as its response ends) or after 5 s.
    async fn access_log_lines(&self, posts: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines: Vec<Value> = self
                .gw
                .output()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| v["message"] == "request")
                .collect();
            let done = lines.iter().filter(|l| l["method"] == "POST").count() >= posts;
            if done || Instant::now() > deadline {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// How Codex reaches the Responses API.
#[derive(Clone, Copy)]
enum Transport {
    /// `POST` only: a custom provider's default (`supports_websockets = false`).
    Http,
    /// `supports_websockets = true`, as the built-in `openai` provider does: a WebSocket upgrade
    /// on `GET /v1/responses` first, `POST` once it is refused. With Codex's default
    /// `stream_max_retries` (5), so that a refusal Codex does not take as final shows as a
    /// retry loop (7 `GET`s).
    WebSocketFirst,
}

/// The `$CODEX_HOME/config.toml` of a run: Keygate as the one provider, Responses over HTTP or
/// WebSocket first ([`Transport`]), no retries, and none of the traffic Codex sends elsewhere on
/// its own: the curated-plugin sync (`git ls-remote` of github.com, then api.github.com and
/// chatgpt.com) and the OpenTelemetry metrics to ab.chatgpt.com.
fn codex_config(gw: &Gateway, transport: Transport) -> String {
    let transport = match transport {
        Transport::Http => "stream_max_retries = 0\n",
        Transport::WebSocketFirst => "supports_websockets = true\n",
    };
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
{transport}"#,
        gw.url("/v1")
    )
}

/// An API format, as the CLI speaks it or the mock is asked in.
#[derive(Clone, Copy, PartialEq)]
enum Wire {
    /// Anthropic Messages.
    Messages,
    /// OpenAI Chat Completions.
    Chat,
    /// OpenAI Responses.
    Responses,
}

impl Wire {
    fn path(self) -> &'static str {
        match self {
            Wire::Messages => "/v1/messages",
            Wire::Chat => "/v1/chat/completions",
            Wire::Responses => "/v1/responses",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Wire::Messages => "Messages",
            Wire::Chat => "Chat Completions",
            Wire::Responses => "Responses",
        }
    }

    /// Whether a recorded request is one of this format, sent with the provider's own key: the
    /// fields only it has (Messages: `max_tokens`, `anthropic-version`, `x-api-key`, tools with
    /// `input_schema`, only `user` and `assistant` turns; Chat Completions: `messages`, tools
    /// under `function`; Responses: `input`, tools named at the top), and none of the other two
    /// formats' own fields.
    fn check(self, request: &RecordedRequest) -> Result<(), String> {
        let body = request
            .body_json()
            .ok_or_else(|| "the body is not JSON".to_owned())?;
        let absent = |fields: &[&str]| match fields.iter().find(|f| body.get(**f).is_some()) {
            Some(field) => Err(format!("it has `{field}`")),
            None => Ok(()),
        };
        let tools = body["tools"].as_array().cloned().unwrap_or_default();
        let bearer = format!("Bearer {SERVER_KEY}");
        match self {
            Wire::Messages => {
                expect_field(request.header("x-api-key") == Some(SERVER_KEY), "x-api-key")?;
                expect_field(
                    request.header("anthropic-version").is_some(),
                    "anthropic-version",
                )?;
                expect_field(body["max_tokens"].is_u64(), "max_tokens")?;
                let turns = body["messages"].as_array().cloned().unwrap_or_default();
                expect_field(!turns.is_empty(), "messages")?;
                expect_field(
                    turns
                        .iter()
                        .all(|m| m["role"] == "user" || m["role"] == "assistant"),
                    "only user and assistant turns",
                )?;
                expect_field(
                    tools.iter().all(|t| t["input_schema"].is_object()),
                    "tools with input_schema",
                )?;
                absent(&[
                    "input",
                    "instructions",
                    "max_output_tokens",
                    "stream_options",
                ])
            }
            Wire::Chat => {
                expect_field(
                    request.header("authorization") == Some(&bearer),
                    "Bearer key",
                )?;
                expect_field(
                    request.header("anthropic-version").is_none(),
                    "no anthropic-version",
                )?;
                expect_field(
                    body["messages"].as_array().is_some_and(|m| !m.is_empty()),
                    "messages",
                )?;
                expect_field(
                    tools
                        .iter()
                        .all(|t| t["type"] == "function" && t["function"]["name"].is_string()),
                    "tools under function",
                )?;
                absent(&[
                    "system",
                    "thinking",
                    "input",
                    "instructions",
                    "max_output_tokens",
                ])
            }
            Wire::Responses => {
                expect_field(
                    request.header("authorization") == Some(&bearer),
                    "Bearer key",
                )?;
                expect_field(
                    request.header("anthropic-version").is_none(),
                    "no anthropic-version",
                )?;
                expect_field(
                    body["input"].as_array().is_some_and(|i| !i.is_empty()),
                    "input",
                )?;
                expect_field(
                    tools
                        .iter()
                        .filter(|t| t["type"] == "function")
                        .all(|t| t["name"].is_string() && t["function"].is_null()),
                    "function tools named at the top",
                )?;
                absent(&["messages", "system", "thinking", "max_tokens"])
            }
        }
    }

    /// Whether a `tools` list of this format has a tool called `name`.
    fn has_tool(self, tools: &Value, name: &str) -> bool {
        tools.as_array().is_some_and(|tools| {
            tools.iter().any(|t| match self {
                Wire::Messages | Wire::Responses => t["name"] == name,
                Wire::Chat => t["function"]["name"] == name,
            })
        })
    }

    /// The output of the tool result that ends a recorded request, in this format: a Messages
    /// user message with a `tool_result` block (`tool_use_id`), a Chat Completions `tool` message
    /// (`tool_call_id`), a Responses `function_call_output` item (`call_id`).
    fn tool_result(self, request: &RecordedRequest) -> Option<String> {
        let body = request.body_json()?;
        let text = |content: &Value| match content {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match self {
            Wire::Messages => {
                let last = body["messages"].as_array()?.last()?;
                let blocks = last["content"].as_array()?;
                let result = blocks
                    .iter()
                    .find(|b| b["type"] == "tool_result" && b["tool_use_id"].is_string())?;
                (last["role"] == "user").then(|| text(&result["content"]))
            }
            Wire::Chat => {
                let last = body["messages"].as_array()?.last()?;
                (last["role"] == "tool" && last["tool_call_id"].is_string())
                    .then(|| text(&last["content"]))
            }
            Wire::Responses => {
                let last = body["input"].as_array()?.last()?;
                (last["type"] == "function_call_output" && last["call_id"].is_string())
                    .then(|| text(&last["output"]))
            }
        }
    }
}

/// `Ok` when `holds`, else what is missing.
fn expect_field(holds: bool, what: &str) -> Result<(), String> {
    if holds {
        Ok(())
    } else {
        Err(format!("no {what}"))
    }
}

/// The start of a request body, for a failure message (Claude Code's are about 88 KB).
fn excerpt(body: &str) -> String {
    match body.char_indices().nth(2000) {
        Some((end, _)) => format!("{}... ({} bytes)", &body[..end], body.len()),
        None => body.to_owned(),
    }
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
