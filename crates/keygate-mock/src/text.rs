//! Text helpers shared by the surfaces: finding the message to echo, token estimates, chunking, ids.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The text pieces of a message `content`: the string itself, or the `text` of each part of an
/// array of parts (`{"type":"text","text":...}`, `{"type":"input_text","text":...}`; parts without
/// `text`, such as images or Anthropic `tool_result` blocks, are skipped).
pub(crate) fn text_parts(content: &Value) -> impl Iterator<Item = &str> {
    let (whole, parts) = match content {
        Value::String(s) => (Some(s.as_str()), None),
        Value::Array(parts) => (None, Some(parts.iter())),
        _ => (None, None),
    };
    whole.into_iter().chain(
        parts
            .into_iter()
            .flatten()
            .filter_map(|part| part.get("text").and_then(Value::as_str)),
    )
}

/// The text of a message `content`: its [`text_parts`] concatenated.
pub(crate) fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        _ => text_parts(content).collect(),
    }
}

/// Characters of text in one conversation item of any surface: its content's text, plus the tool
/// traffic it carries — tool results (Anthropic `tool_result` blocks, the Responses
/// `function_call_output` `output`; a chat `tool` message's result is its content) and tool call
/// arguments (chat `tool_calls`, Anthropic `tool_use` input as compact JSON, the Responses
/// `function_call` `arguments`).
pub(crate) fn item_chars(item: &Value) -> usize {
    let text = |v: Option<&Value>| v.map_or(0, |v| text_parts(v).map(|t| t.chars().count()).sum());
    let string = |v: Option<&Value>| v.and_then(Value::as_str).map_or(0, |s| s.chars().count());
    let content = item.get("content");
    let blocks: usize = content
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|block| match block.get("type").and_then(Value::as_str) {
            Some("tool_result") => text(block.get("content")),
            Some("tool_use") => block
                .get("input")
                .map_or(0, |input| input.to_string().chars().count()),
            _ => 0,
        })
        .sum();
    let calls: usize = item
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|call| string(call.pointer("/function/arguments")))
        .sum();
    text(content) + blocks + calls + text(item.get("output")) + string(item.get("arguments"))
}

/// Characters of text across every item of an array of messages or Responses input items.
pub(crate) fn messages_chars(messages: Option<&Value>) -> usize {
    messages
        .and_then(Value::as_array)
        .map(|list| list.iter().map(item_chars).sum())
        .unwrap_or(0)
}

/// Token estimate used for every `usage` figure: one token per four characters, at least one.
pub(crate) fn estimate_tokens(chars: usize) -> u64 {
    u64::try_from(chars.div_ceil(4).max(1)).unwrap_or(u64::MAX)
}

/// Splits `text` into `n` contiguous, non-empty pieces of near-equal length (fewer when the text
/// has fewer than `n` characters; one empty piece for empty text).
pub(crate) fn split_chunks(text: &str, n: usize) -> Vec<&str> {
    let chars = text.chars().count();
    let pieces = n.clamp(1, chars.max(1));
    let boundaries: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    (0..pieces)
        .map(|k| {
            let from = boundaries[k * chars / pieces];
            let to = boundaries[(k + 1) * chars / pieces];
            &text[from..to]
        })
        .collect()
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Unique ids per server: `prefix` followed by a zero-padded counter.
#[derive(Debug, Default)]
pub(crate) struct Ids(AtomicU64);

impl Ids {
    pub(crate) fn next(&self, prefix: &str) -> String {
        let mut n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        // `{prefix}mock{n:020}`, written without the formatting machinery (hot path).
        let mut digits = [b'0'; 20];
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        let mut id = String::with_capacity(prefix.len() + 4 + digits.len());
        id.push_str(prefix);
        id.push_str("mock");
        id.extend(digits.iter().map(|&d| char::from(d)));
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_of_strings_and_parts() {
        let parts = json!([{"type": "text", "text": "hel"}, {"type": "image_url"}, {"type": "text", "text": "lo"}]);
        assert_eq!(text_parts(&parts).collect::<Vec<_>>(), ["hel", "lo"]);
        assert_eq!(content_text(&parts), "hello");
        assert_eq!(content_text(&json!("plain")), "plain");
        assert_eq!(content_text(&json!(null)), "");
    }

    #[test]
    fn characters_count_text_and_tool_traffic() {
        let chat = json!([
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "hel"}, {"type": "text", "text": "lo"}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        ]);
        assert_eq!(messages_chars(Some(&chat)), 3 + 5 + 7 + 2);
        let anthropic = json!([
            {"role": "assistant", "content": [
                {"type": "text", "text": "ok"},
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "42"}]},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "7"}
            ]},
        ]);
        assert_eq!(messages_chars(Some(&anthropic)), 2 + 7 + 2 + 1);
        let responses = json!([
            {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{\"a\":1}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "42"},
        ]);
        assert_eq!(messages_chars(Some(&responses)), 7 + 2);
        assert_eq!(messages_chars(None), 0);
        assert_eq!(messages_chars(Some(&json!("not a list"))), 0);
    }

    #[test]
    fn token_estimate() {
        assert_eq!(estimate_tokens(0), 1);
        assert_eq!(estimate_tokens(4), 1);
        assert_eq!(estimate_tokens(5), 2);
        assert_eq!(estimate_tokens(400), 100);
    }

    #[test]
    fn chunks_cover_text_exactly() {
        let text = "héllo wörld, 12345";
        for n in 1..25 {
            let parts = split_chunks(text, n);
            assert_eq!(parts.concat(), text);
            assert_eq!(parts.len(), n.min(text.chars().count()));
            assert!(parts.iter().all(|p| !p.is_empty()));
        }
        assert_eq!(split_chunks("", 5), vec![""]);
        assert_eq!(split_chunks("abcd", 2), vec!["ab", "cd"]);
    }

    #[test]
    fn ids_are_unique_and_prefixed() {
        let ids = Ids::default();
        let a = ids.next("chatcmpl-");
        let b = ids.next("chatcmpl-");
        assert_eq!(a, "chatcmpl-mock00000000000000000001");
        assert_ne!(a, b);
    }
}
