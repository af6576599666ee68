//! Per-request and per-chunk costs of the AI gateway's domain work: model resolution, body
//! transformation, and scanning a streamed response for usage (pass-through and stripping, and
//! with the output estimate).

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keygate_ai::{
    prepare_body, BodyOptions, Catalog, ClientRequest, GatewaySpec, OutputEstimate, Registry,
    SseScanner, Surface,
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

fn bench(c: &mut Criterion) {
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
    // "estimate": the output estimate that every metered stream runs, so usage the provider
    // omits (and a budget's running count) is known; the others scan for usage alone.
    for (name, strip, estimate) in [
        ("pass", false, false),
        ("strip_usage_chunk", true, false),
        ("pass_estimate", false, true),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut scanner = SseScanner::new(strip);
                if estimate {
                    let output = OutputEstimate::for_stream(Surface::ChatCompletions);
                    scanner = scanner.with_output_estimate(output);
                }
                for chunk in &stream {
                    black_box(scanner.push(chunk.clone()));
                }
                black_box(scanner.finish());
                scanner.usage()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
