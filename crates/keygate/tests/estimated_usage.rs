//! A provider that reports no token usage (as llama.cpp's server ignores
//! `stream_options.include_usage`), through the real binary: the usage is estimated from what
//! passed, marked `estimated` in the access log and the metrics, handed to a client that asked for
//! a usage chunk or filled into the Messages and Responses events that carry it, counted with an
//! OpenAI model's own vocabulary, and budgets still hold on it. The mock leaves usage out because
//! the provider key holds the word `nousage`.

mod common;

use std::time::{Duration, Instant};

use common::{api, send, Gateway, Req, TempDir};
use keygate_ai::{estimate_input_tokens, Tokenizer};
use keygate_mock::{MockConfig, MockServer};
use serde_json::{json, Value};

const POLICY: &str = "on_http_request:
  - actions:
      - type: ai-gateway
        config:
          access_keys: optional
          providers:
            - id: openai
              api_keys:
                - value: sk-server-nousage
            - id: anthropic
              api_keys:
                - value: sk-ant-server-nousage
";

fn start(mock: &MockServer, data: &TempDir) -> Gateway {
    Gateway::start_on_mock(POLICY, &mock.openai_base_url(), data.path(), &[])
}

/// The `ai` objects of the access log, oldest first, once there are `n`.
fn ai_lines(gw: &Gateway, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines: Vec<Value> = gw
            .output()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line["ai"].is_object())
            .map(|line| line["ai"].clone())
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn usage_the_provider_omits_is_estimated_logged_counted_and_given_to_the_client() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let data = TempDir::new("estimate-data");
    let gw = start(&mock, &data);
    let words = vec!["abc"; 40].join(" ");
    let chat = |stream: bool| {
        json!({"model": "gpt-4o", "stream": stream, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": words}]})
    };
    let mut plain = chat(false);
    plain.as_object_mut().unwrap().remove("stream_options");
    let messages = |stream: bool| {
        json!({"model": "claude-sonnet-4-6", "max_tokens": 500, "stream": stream,
            "messages": [{"role": "user", "content": words}]})
    };
    let requests = [
        ("/v1/chat/completions", plain),
        ("/v1/chat/completions", chat(true)),
        ("/v1/messages", messages(false)),
        ("/v1/messages", messages(true)),
    ];
    let mut streamed_chat = String::new();
    for (path, body) in &requests {
        let reply = send(gw.addr, Req::post(path, body.to_string()))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        // (A streamed Messages answer gets its usage filled in: the next test.)
        if !(body["stream"] == true && *path == "/v1/messages") {
            assert!(
                !reply.text().contains("\"usage\":{\"input"),
                "the mock omitted usage"
            );
        }
        if body["stream"] == true && *path == "/v1/chat/completions" {
            streamed_chat = reply.text();
        }
    }
    // The chat stream asked for usage and got a chunk of the estimate, before [DONE].
    let events: Vec<&str> = streamed_chat
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .collect();
    assert_eq!(events.last(), Some(&"data: [DONE]"));
    let made: Value = serde_json::from_str(&events[events.len() - 2][6..]).unwrap();
    assert_eq!(made["choices"], json!([]));
    assert_eq!(made["model"], "gpt-4o");
    let (prompt, completion) = (
        &made["usage"]["prompt_tokens"],
        &made["usage"]["completion_tokens"],
    );
    // 40 words of 4 characters in and out: about 40 tokens each way.
    assert!((40..=60).contains(&prompt.as_u64().unwrap()), "{made}");
    assert!((38..=42).contains(&completion.as_u64().unwrap()), "{made}");

    let lines = ai_lines(&gw, 4);
    assert_eq!(lines.len(), 4);
    for ai in &lines {
        assert_eq!(ai["usage_source"], "estimated", "{ai}");
        let (input, output) = (
            ai["input_tokens"].as_u64().unwrap(),
            ai["output_tokens"].as_u64().unwrap(),
        );
        assert!(
            (40..=60).contains(&input) && (38..=42).contains(&output),
            "{ai}"
        );
    }
    assert_eq!(
        lines[1]["input_tokens"], *prompt,
        "the chunk and the log agree"
    );
    assert_eq!(lines[1]["output_tokens"], *completion);

    let metrics = send(gw.admin, Req::get("/metrics")).await.unwrap().text();
    assert!(
        metrics.contains(r#"keygate_ai_tokens_total{provider="openai",model="gpt-4o",direction="output",source="estimated"}"#),
        "{metrics}"
    );
    // The ledger marks the rows too (it commits in batches, off the request path).
    let deadline = Instant::now() + Duration::from_secs(5);
    let report = loop {
        let report = api_usage(&data);
        if report["total"]["requests"] == 4 || Instant::now() > deadline {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(report["total"]["estimated_requests"], 4, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_budget_holds_when_the_provider_reports_nothing() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let data = TempDir::new("estimate-data");
    let key = api(
        data.path(),
        &["ai-gateway-api-keys", "create", "--token-limit", "1000/day"],
    );
    let token = key["token"].as_str().unwrap().to_owned();
    let gw = start(&mock, &data);
    let body = json!({"model": "gpt-4o", "stream": true,
        "messages": [{"role": "user", "content": vec!["abc"; 100].join(" ")}]})
    .to_string();
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let (addr, body, token) = (gw.addr, body.clone(), token.clone());
            tokio::spawn(async move {
                send(
                    addr,
                    Req::post("/v1/chat/completions", body)
                        .bearer(&token)
                        .header("x-mock-chunks", "50"),
                )
                .await
                .unwrap()
            })
        })
        .collect();
    let mut answered = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        match reply.status {
            200 => answered += 1,
            429 => assert_eq!(reply.json()["error"]["code"], "ERR_KEYGATE_27009"),
            other => panic!("status {other}: {}", reply.text()),
        }
    }
    assert!((2..12).contains(&answered), "{answered} answered");
    let lines = ai_lines(&gw, answered);
    let total: u64 = lines
        .iter()
        .map(|ai| {
            assert_eq!(ai["usage_source"], "estimated");
            ai["input_tokens"].as_u64().unwrap() + ai["output_tokens"].as_u64().unwrap()
        })
        .sum();
    // The estimates are what was reserved and settled: at most one held chunk (2 tokens) over.
    assert!(
        total <= 1000 + answered as u64 * 4,
        "{total} tokens over {answered} answers"
    );
}

/// The `data:` payloads of a stream that are JSON.
fn events(stream: &str) -> Vec<Value> {
    stream
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str(data).ok())
        .collect()
}

#[tokio::test]
async fn final_events_carry_the_estimate_counted_with_the_model_s_vocabulary() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let data = TempDir::new("estimate-data");
    let gw = start(&mock, &data);
    // 239 characters: 60 tokens by the heuristic, 40 in o200k_base.
    let words = vec!["hello world"; 20].join(" ");
    let chat = json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": words}]});
    let messages = json!({"model": "claude-sonnet-4-6", "max_tokens": 500, "stream": true,
        "messages": [{"role": "user", "content": words}]});
    let responses = json!({"model": "gpt-4o", "stream": true, "input": words});
    let cases = [
        ("/v1/chat/completions", &chat, Tokenizer::O200k),
        ("/v1/messages", &messages, Tokenizer::Heuristic),
        ("/v1/responses", &responses, Tokenizer::O200k),
    ];
    let mut expected = Vec::new();
    for (path, body, tokenizer) in cases {
        let reply = send(gw.addr, Req::post(path, body.to_string()))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        let events = events(&reply.text());
        // The generated text the client got, and the usage the stream's last figures give it.
        let (text, usage): (String, Value) = match path {
            "/v1/chat/completions" => (
                events
                    .iter()
                    .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
                    .collect(),
                events.last().unwrap()["usage"].clone(),
            ),
            "/v1/messages" => (
                events
                    .iter()
                    .filter(|e| e["type"] == "content_block_delta")
                    .filter_map(|e| e["delta"]["text"].as_str())
                    .collect(),
                events
                    .iter()
                    .find(|e| e["type"] == "message_delta")
                    .unwrap()["usage"]
                    .clone(),
            ),
            _ => (
                events
                    .iter()
                    .filter(|e| e["type"] == "response.output_text.delta")
                    .filter_map(|e| e["delta"].as_str())
                    .collect(),
                events
                    .iter()
                    .find(|e| e["type"] == "response.completed")
                    .unwrap()["response"]["usage"]
                    .clone(),
            ),
        };
        assert!(text.contains("hello world"), "{path}: {text}");
        let input = estimate_input_tokens(body.as_object().unwrap(), tokenizer);
        let output = tokenizer.count(&text);
        let (given_input, given_output) = match path {
            "/v1/chat/completions" => (&usage["prompt_tokens"], &usage["completion_tokens"]),
            _ => (&usage["input_tokens"], &usage["output_tokens"]),
        };
        assert_eq!(
            (given_input, given_output),
            (&json!(input), &json!(output)),
            "{path}: {usage}"
        );
        if path == "/v1/responses" {
            assert_eq!(usage["total_tokens"], input + output);
            assert_eq!(usage["output_tokens_details"]["reasoning_tokens"], 0);
        }
        expected.push((input, output));
    }
    // gpt-4o was counted with o200k_base, Claude with the heuristic.
    assert_eq!(expected[0].1, 40, "{expected:?}");
    assert_eq!(expected[1].1, 60, "{expected:?}");
    let lines = ai_lines(&gw, 3);
    let logged: Vec<(u64, u64)> = lines
        .iter()
        .map(|ai| {
            assert_eq!(ai["usage_source"], "estimated", "{ai}");
            (
                ai["input_tokens"].as_u64().unwrap(),
                ai["output_tokens"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(logged, expected, "the stream and the log agree");
}

#[tokio::test]
async fn max_input_tokens_counts_an_openai_model_with_its_vocabulary() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let data = TempDir::new("estimate-data");
    let policy = POLICY.replace(
        "          access_keys: optional\n",
        "          access_keys: optional\n          max_input_tokens: 50\n",
    );
    let gw = Gateway::start_on_mock(&policy, &mock.openai_base_url(), data.path(), &[]);
    // o200k_base: 40 + "user" 1 + 3 per message + 3 = 47; the heuristic: 60 + 1 + 4 + 3 = 68.
    let words = vec!["hello world"; 20].join(" ");
    let ask = |model: &str| {
        json!({"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": words}]})
            .to_string()
    };
    let gpt = send(gw.addr, Req::post("/v1/chat/completions", ask("gpt-4o")))
        .await
        .unwrap();
    assert_eq!(gpt.status, 200, "{}", gpt.text());
    let claude = send(gw.addr, Req::post("/v1/messages", ask("claude-sonnet-4-6")))
        .await
        .unwrap();
    assert_eq!(claude.status, 413, "{}", claude.text());
    assert!(
        claude
            .text()
            .contains("input too large: 68 tokens (max 50)"),
        "{}",
        claude.text()
    );
}

fn api_usage(data: &TempDir) -> Value {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(["usage", "--json", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}
