//! Per-request and per-chunk costs of the AI gateway's domain work: model resolution, body
//! transformation, scanning a streamed response for usage (pass-through and stripping, and with
//! the output estimate by the heuristic and by o200k_base), and counting a prompt's tokens.
//!
//! Before the benchmarks it prints what loading the BPE vocabularies costs (time and resident
//! memory, once per process) and each sample prompt's count by the heuristic and by BPE.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keygate_ai::{
    estimate_text_tokens, prepare_body, BodyOptions, Catalog, ClientRequest, GatewaySpec,
    OutputEstimate, Registry, SseScanner, Surface, Tokenizer,
};
use serde_json::json;

/// An OpenAI chat stream of `events` content chunks plus the usage chunk and `[DONE]`.
fn openai_stream(events: usize) -> Vec<Bytes> {
    let mut chunks: Vec<Bytes> = (0..events)
        .map(|i| {
            let chunk = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o",
                "choices": [{"index": 0, "delta": {"content": format!("word{i} ")}, "finish_reason": null}], "usage": null});
            Bytes::from(format!("data: {chunk}\n\n"))
        })
        .collect();
    let usage = json!({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": events}});
    chunks.push(Bytes::from(format!("data: {usage}\n\n")));
    chunks.push(Bytes::from_static(b"data: [DONE]\n\n"));
    chunks
}

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Realistic prompt texts (English prose, Rust code, OpenAI tool schemas as JSON, Chinese and
/// Japanese), and a worst case for BPE: 64 KiB of letters without a space, one pre-tokenizer
/// piece (tiktoken's merge loop is superlinear on such a piece).
fn samples() -> [(&'static str, String); 5] {
    let prose =
        "The gateway sits between your applications and the model providers. Every request \
        passes through a policy: rules decide which keys may call which models, how many tokens a \
        team may spend in a day, and what happens when a provider is slow or down. When OpenAI \
        answers with a 429, the request is retried on the next key; when every key is exhausted, \
        it fails over to Anthropic or to a self-hosted model running on your own hardware. ";
    let tools = json!([{"type": "function", "function": {"name": "search_orders",
        "description": "Search the customer's orders by date range, status and free text.",
        "parameters": {"type": "object", "properties": {
            "customer_id": {"type": "string"},
            "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
            "status": {"type": "string", "enum": ["pending", "shipped", "delivered", "cancelled"]},
            "query": {"type": "string", "description": "Words to look for in item names and notes"},
            "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
            "required": ["customer_id"]}}}]);
    let cjk = "人工智能网关位于应用程序和模型提供商之间。每个请求都要经过一条策略：规则决定哪些密钥可以调用哪些模型、\
        一个团队每天可以消耗多少令牌。ゲートウェイはアプリケーションとモデルプロバイダーの間にあります。";
    [
        ("prose", prose.repeat(4)),
        (
            "code",
            include_str!("../src/sse.rs").chars().take(4000).collect(),
        ),
        ("tool_schema_json", tools.to_string().repeat(3)),
        ("cjk", cjk.repeat(4)),
        ("letters_without_spaces", letters(64 << 10)),
    ]
}

/// `len` pseudo-random lowercase letters.
fn letters(len: usize) -> String {
    let mut state: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect()
}

/// Prints the vocabularies' load cost and the heuristic's error against BPE on the samples.
fn report_bpe() {
    for tokenizer in [Tokenizer::O200k, Tokenizer::Cl100k] {
        let (rss, start) = (rss_kib(), std::time::Instant::now());
        tokenizer.count("load");
        eprintln!(
            "{tokenizer:?}: first use {:.0?}, resident memory +{} MiB",
            start.elapsed(),
            rss_kib().saturating_sub(rss) / 1024
        );
    }
    for (name, text) in samples() {
        let heuristic = estimate_text_tokens(&text);
        let o200k = Tokenizer::O200k.count(&text);
        let cl100k = Tokenizer::Cl100k.count(&text);
        let error = |count: u64| (count as f64 - o200k as f64) * 100.0 / o200k as f64;
        // Streamed as deltas of 4 characters: each delta counted on its own, or the whole text
        // counted as it grows (what `OutputEstimate` does).
        let chars: Vec<char> = text.chars().collect();
        let deltas: Vec<String> = chars.chunks(4).map(|c| c.iter().collect()).collect();
        let per_delta: u64 = deltas.iter().map(|d| Tokenizer::O200k.count(d)).sum();
        let mut grown = OutputEstimate::for_stream(Surface::ChatCompletions, Tokenizer::O200k);
        deltas.iter().for_each(|d| grown.count_text(d));
        eprintln!(
            "{name}: {} bytes; o200k {o200k}, cl100k {cl100k}, heuristic {heuristic} ({:+.0} % \
             against o200k); 4-character deltas counted one by one {per_delta} ({:+.0} %), \
             counted as the text grows {}",
            text.len(),
            error(heuristic),
            error(per_delta),
            grown.tokens(),
        );
    }
}

fn bench(c: &mut Criterion) {
    report_bpe();
    let registry = Registry::new(&GatewaySpec::default(), Catalog::builtin()).expect("registry");
    let body = json!({"model": "gpt-4o-2024-11-20", "models": ["claude-haiku-4-5"], "stream": true,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Hello there, how are you?"}]});
    let bytes = bytes::Bytes::from(body.to_string());
    c.bench_function("parse_resolve_prepare", |b| {
        b.iter(|| {
            let request = ClientRequest::parse(black_box(bytes.clone())).expect("parse");
            let resolution = registry
                .resolve(&request.requested(), Surface::ChatCompletions)
                .expect("resolve");
            prepare_body(
                &request,
                Surface::ChatCompletions,
                &resolution.candidates[0],
                &BodyOptions::default(),
            )
            .expect("prepare")
            .to_bytes()
        })
    });

    let stream = openai_stream(200);
    let total: usize = stream.iter().map(Bytes::len).sum();
    let mut group = c.benchmark_group("sse_scan_200_chunks");
    group.throughput(Throughput::Bytes(total as u64));
    // "estimate": the output estimate a metered stream runs while its provider is not known to
    // report usage (and a budget's running count), by the heuristic or by the model's BPE
    // vocabulary (gpt-4o); the others scan for usage alone.
    for (name, strip, estimate) in [
        ("pass", false, None),
        ("strip_usage_chunk", true, None),
        ("pass_estimate", false, Some(Tokenizer::Heuristic)),
        ("pass_estimate_o200k", false, Some(Tokenizer::O200k)),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut scanner = SseScanner::new(strip);
                if let Some(tokenizer) = estimate {
                    let output = OutputEstimate::for_stream(Surface::ChatCompletions, tokenizer);
                    scanner = scanner.with_output_estimate(output);
                }
                for chunk in &stream {
                    black_box(scanner.push(chunk.clone()));
                }
                black_box(scanner.finish());
                // What settling the stream reads: the usage, and the estimate when there is one.
                (scanner.usage(), estimate.map(|_| scanner.output_estimate()))
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("input_tokens");
    for (name, text) in samples() {
        group.throughput(Throughput::Bytes(text.len() as u64));
        for tokenizer in [Tokenizer::Heuristic, Tokenizer::O200k] {
            let id = format!("{name}/{tokenizer:?}");
            group.bench_function(id, |b| b.iter(|| tokenizer.count(black_box(&text))));
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
