//! Input-token estimates for `max_input_tokens`, without downloading a tokenizer.
//!
//! Heuristic: ASCII text costs one token per 4 characters (rounded up), every other character one
//! token (CJK and emoji are close to that in BPE vocabularies), plus 4 tokens per message and 3
//! for the reply primer. Only prompt-bearing fields are counted (`messages`, `system`, `prompt`,
//! `input`, `instructions`, `tools`); image/file payloads (`url`, `image_url`, `data`) are skipped.
//! It tends to over-count slightly for English, which is the safe side for a limit.

use serde_json::{Map, Value};

const PROMPT_FIELDS: [&str; 7] = [
    "messages",
    "system",
    "prompt",
    "input",
    "instructions",
    "tools",
    "functions",
];
const SKIPPED_KEYS: [&str; 4] = ["url", "image_url", "data", "file_data"];

/// Estimated tokens of one piece of text.
pub fn estimate_text_tokens(text: &str) -> u64 {
    let (mut ascii, mut other) = (0u64, 0u64);
    for c in text.chars() {
        if c.is_ascii() {
            ascii += 1;
        } else {
            other += 1;
        }
    }
    ascii.div_ceil(4) + other
}

/// Estimated input tokens of a request body.
pub fn estimate_input_tokens(body: &Map<String, Value>) -> u64 {
    let mut total = 3;
    for field in PROMPT_FIELDS {
        if let Some(value) = body.get(field) {
            if field == "messages" {
                total += 4 * value.as_array().map_or(0, |m| m.len() as u64);
            }
            total += count(value);
        }
    }
    total
}

fn count(value: &Value) -> u64 {
    match value {
        Value::String(s) => estimate_text_tokens(s),
        Value::Array(items) => items.iter().map(count).sum(),
        Value::Object(map) => map
            .iter()
            .filter(|(k, _)| !SKIPPED_KEYS.contains(&k.as_str()))
            .map(|(_, v)| count(v))
            .sum(),
        Value::Number(_) | Value::Bool(_) | Value::Null => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_estimate() {
        assert_eq!(estimate_text_tokens(""), 0);
        assert_eq!(estimate_text_tokens("abcd"), 1);
        assert_eq!(estimate_text_tokens("abcde"), 2);
        assert_eq!(estimate_text_tokens("日本語"), 3);
    }

    #[test]
    fn body_estimate_counts_prompt_fields_only() {
        let body = json!({
            "model": "a-very-long-model-name-that-is-not-prompt",
            "messages": [{"role": "user", "content": "abcdabcd"},
                         {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:AAAA"}}]}],
            "system": "abcd"
        });
        // 3 primer + 2*4 per message + "user"x2 (1 each) + 8 chars (2) + "image_url" type (3) + system (1)
        assert_eq!(
            estimate_input_tokens(body.as_object().unwrap()),
            3 + 8 + 2 + 2 + 3 + 1
        );
        let big = json!({"input": "x".repeat(4000)});
        assert_eq!(estimate_input_tokens(big.as_object().unwrap()), 1003);
    }
}
