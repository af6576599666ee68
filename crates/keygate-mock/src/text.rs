//! Text helpers shared by the surfaces: finding the message to echo, token estimates, chunking, ids.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The text of a message `content`: a string, or the concatenated `text` of an array of parts
/// (`{"type":"text","text":...}`, `{"type":"input_text","text":...}`).
pub(crate) fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// The text of the last message whose `role` is `user` in an array of messages, or `""`.
pub(crate) fn last_user_text(messages: Option<&Value>) -> String {
    messages
        .and_then(Value::as_array)
        .and_then(|list| {
            list.iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        })
        .and_then(|m| m.get("content"))
        .map(content_text)
        .unwrap_or_default()
}

/// Characters of text across every message's content in an array of messages.
pub(crate) fn messages_chars(messages: Option<&Value>) -> usize {
    messages
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|m| m.get("content"))
                .map(|c| content_text(c).chars().count())
                .sum()
        })
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
    fn last_user_message_string_or_parts() {
        let messages = json!([
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "reply"},
            {"role": "user", "content": [{"type": "text", "text": "hel"}, {"type": "image_url"}, {"type": "text", "text": "lo"}]},
        ]);
        assert_eq!(last_user_text(Some(&messages)), "hello");
        assert_eq!(messages_chars(Some(&messages)), 3 + 5 + 5 + 5);
        assert_eq!(
            last_user_text(Some(&json!([{"role": "assistant", "content": "x"}]))),
            ""
        );
        assert_eq!(last_user_text(None), "");
        assert_eq!(last_user_text(Some(&json!("not a list"))), "");
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
