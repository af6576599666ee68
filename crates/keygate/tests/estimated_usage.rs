//! A provider that reports no token usage (as llama.cpp's server ignores
//! `stream_options.include_usage`), through the real binary: the usage is estimated from what
//! passed, marked `estimated` in the access log and the metrics, handed to a client that asked for
//! a usage chunk, and budgets still hold on it. The mock leaves usage out because the provider key
//! holds the word `nousage`.

mod common;

use std::time::{Duration, Instant};

use common::{api, send, Gateway, Req, TempDir};
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
        assert!(
            !reply.text().contains("\"usage\":{\"input"),
            "the mock omitted usage"
        );
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
