//! What the loader tests share: offline dependencies, compiling a policy text, and every policy
//! written in the repository (examples, and the whole policies in the docs and the README).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keygate_cel::{Compiler, MemorySecrets};
use keygate_policy::{Deps, Policy, PolicyError};

/// Dependencies as `keygate policy check` has them: offline, no stores.
pub fn deps() -> Deps {
    Deps::offline(Arc::new(MemorySecrets::default()))
}

pub fn compile(text: &str) -> Result<Policy, PolicyError> {
    Policy::compile("policy.yml", text, &Compiler::new(), &deps())
}

/// The phase keys a whole policy starts with.
const PHASES: [&str; 4] = [
    "on_tcp_connect",
    "on_http_request",
    "on_http_response",
    "on_event_stream_message",
];

/// Fenced ```yaml / ```json blocks holding a whole policy.
pub fn fenced_policies(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        let fence = line.trim_start().starts_with("```");
        match (&mut block, fence) {
            (None, true) => {
                let lang = line.trim_start().trim_start_matches('`').trim();
                if matches!(lang, "yaml" | "yml" | "json") {
                    block = Some(String::new());
                }
            }
            (Some(_), true) => {
                let body = block.take().unwrap_or_default();
                if body.lines().any(|l| {
                    let l = l.trim_start_matches(['{', ' ', '"']);
                    PHASES.iter().any(|phase| l.starts_with(phase))
                }) {
                    out.push(body);
                }
            }
            (Some(body), false) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, false) => {}
        }
    }
    out
}

pub fn files(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| exts.contains(&e))
        })
        .collect();
    out.sort();
    out
}

/// Every policy written in the repository, each with where it was found: the files in
/// `examples/` (not the `*.test.yml` case files of `keygate policy test`) and the whole
/// policies in fenced blocks of `docs/*.md` and the README.
pub fn repository_policies() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut out = Vec::new();
    for path in files(&root.join("examples"), &["yml", "yaml", "json"]) {
        if path.to_string_lossy().contains(".test.") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read example");
        out.push((path.display().to_string(), text));
    }
    let mut docs = files(&root.join("docs"), &["md"]);
    docs.push(root.join("README.md"));
    for path in docs {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for (i, policy) in fenced_policies(&text).into_iter().enumerate() {
            out.push((format!("{} block {i}", path.display()), policy));
        }
    }
    out
}
