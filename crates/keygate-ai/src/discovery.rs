//! Model discovery, the pure half: reading the model list a provider's own server answers
//! (`GET {base_url}/models`), and [`DiscoveredModels`], the snapshot of every provider's last good
//! list that [`crate::Registry::with_discovered`] merges into a registry. Fetching (when, how
//! often, with which key) is the caller's business.

use std::collections::BTreeMap;

use serde_json::Value;

/// At most this many models are kept from one list (the rest are dropped).
pub const MAX_DISCOVERED_MODELS: usize = 10_000;
/// Longest model id kept (bytes); longer ids are skipped.
pub const MAX_MODEL_ID_LEN: usize = 256;

/// Why a model list body cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelListError {
    #[error("the model list is not JSON: {0}")]
    NotJson(String),
    #[error("the model list has neither a 'data' nor a 'models' array")]
    NoList,
}

/// The model ids of a list body, in the server's order, duplicates (case-insensitive) dropped.
///
/// Accepted shapes: OpenAI's `{"data": [{"id": ...}, ...]}` (what OpenAI, vLLM, llama.cpp's
/// `llama-server`, LM Studio, Ollama's `/v1/models` and Anthropic answer), and Ollama's native
/// `{"models": [{"name": ...} | {"model": ...}]}` (`/api/tags`). `data` wins when both are there
/// (newer llama.cpp sends both). A list entry may also be a bare string. Entries without a usable
/// id (missing, empty, longer than [`MAX_MODEL_ID_LEN`], holding control characters or spaces
/// at either end) are skipped; at most [`MAX_DISCOVERED_MODELS`] are kept.
pub fn parse_model_list(body: &[u8]) -> Result<Vec<String>, ModelListError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ModelListError::NotJson(e.to_string()))?;
    let (entries, keys): (&Vec<Value>, &[&str]) = match (
        value.get("data").and_then(Value::as_array),
        value.get("models").and_then(Value::as_array),
    ) {
        (Some(data), _) => (data, &["id"]),
        (None, Some(models)) => (models, &["name", "model", "id"]),
        (None, None) => return Err(ModelListError::NoList),
    };
    let mut ids: Vec<String> = Vec::new();
    for entry in entries {
        let id = match entry {
            Value::String(id) => Some(id.as_str()),
            Value::Object(map) => keys.iter().find_map(|k| map.get(*k)?.as_str()),
            _ => None,
        };
        let Some(id) = id.filter(|id| usable_id(id)) else {
            continue;
        };
        if !ids.iter().any(|seen| seen.eq_ignore_ascii_case(id)) {
            ids.push(id.to_owned());
            if ids.len() == MAX_DISCOVERED_MODELS {
                break;
            }
        }
    }
    Ok(ids)
}

fn usable_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_MODEL_ID_LEN
        && id.trim() == id
        && !id.chars().any(char::is_control)
}

/// The last good model list of each discovering provider, by provider id. A provider without an
/// entry has not answered yet; an empty entry is a server that listed no model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoveredModels {
    by_provider: BTreeMap<String, Vec<String>>,
}

impl DiscoveredModels {
    /// Records `provider`'s list; `false` when it is the one already recorded.
    pub fn set(&mut self, provider: &str, ids: Vec<String>) -> bool {
        if self.by_provider.get(provider) == Some(&ids) {
            return false;
        }
        self.by_provider.insert(provider.to_owned(), ids);
        true
    }

    /// `provider`'s list, if it has answered.
    pub fn get(&self, provider: &str) -> Option<&[String]> {
        self.by_provider.get(provider).map(Vec::as_slice)
    }

    /// Whether no provider has answered yet.
    pub fn is_empty(&self) -> bool {
        self.by_provider.is_empty()
    }
}

/// What changed between two lists of one provider, for the log: `(added, removed)`.
pub fn list_changes<'a>(old: &'a [String], new: &'a [String]) -> (Vec<&'a str>, Vec<&'a str>) {
    let added = new
        .iter()
        .filter(|id| !old.contains(id))
        .map(String::as_str)
        .collect();
    let removed = old
        .iter()
        .filter(|id| !new.contains(id))
        .map(String::as_str)
        .collect();
    (added, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Vec<String>, ModelListError> {
        parse_model_list(body.as_bytes())
    }

    #[test]
    fn openai_shape() {
        let body = r#"{"object": "list", "data": [
            {"id": "smollm2", "object": "model", "created": 1, "owned_by": "llamacpp"},
            {"id": "qwen2.5:0.5b", "object": "model"}
        ]}"#;
        assert_eq!(parse(body).unwrap(), ["smollm2", "qwen2.5:0.5b"]);
        assert_eq!(parse(r#"{"data": []}"#).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn ollama_tags_and_llamacpp_double_shapes() {
        let tags = r#"{"models": [{"name": "llama3:8b", "model": "llama3:8b", "size": 1},
                                  {"model": "phi3:mini"}]}"#;
        assert_eq!(parse(tags).unwrap(), ["llama3:8b", "phi3:mini"]);
        // llama.cpp's server answers both arrays; `data` (the OpenAI one) wins.
        let both = r#"{"models": [{"name": "/models/x.gguf"}], "object": "list",
                       "data": [{"id": "x.gguf"}]}"#;
        assert_eq!(parse(both).unwrap(), ["x.gguf"]);
    }

    #[test]
    fn lenient_entries_strict_document() {
        let body = r#"{"data": ["bare", {"id": ""}, {"id": 5}, {"name": "no-id"}, 7, null,
            {"id": " padded "}, {"id": "ctl\u0007"}, {"id": "Bare"}, {"id": "ok/with:chars"}]}"#;
        assert_eq!(parse(body).unwrap(), ["bare", "ok/with:chars"]);
        let long = format!(
            r#"{{"data": [{{"id": "{}"}}, {{"id": "fine"}}]}}"#,
            "x".repeat(300)
        );
        assert_eq!(parse(&long).unwrap(), ["fine"]);
        assert!(matches!(parse("<html>"), Err(ModelListError::NotJson(_))));
        assert_eq!(parse(r#"{"data": {}}"#), Err(ModelListError::NoList));
        assert_eq!(parse(r#"[{"id": "a"}]"#), Err(ModelListError::NoList));
        assert_eq!(parse(r#"{"error": "x"}"#), Err(ModelListError::NoList));
    }

    #[test]
    fn at_most_the_cap_is_kept() {
        let ids: Vec<String> = (0..MAX_DISCOVERED_MODELS + 5)
            .map(|i| format!("m{i}"))
            .collect();
        let body = serde_json::json!({ "data": ids }).to_string();
        let parsed = parse(&body).unwrap();
        assert_eq!(parsed.len(), MAX_DISCOVERED_MODELS);
        assert_eq!(parsed[0], "m0");
    }

    #[test]
    fn snapshots_report_changes() {
        let mut discovered = DiscoveredModels::default();
        assert!(discovered.is_empty());
        assert!(discovered.set("llamacpp", vec!["a".into()]));
        assert!(!discovered.set("llamacpp", vec!["a".into()]));
        assert!(discovered.set("llamacpp", vec!["a".into(), "b".into()]));
        assert!(discovered.set("vllm", vec![]));
        assert_eq!(discovered.get("llamacpp").unwrap(), ["a", "b"]);
        assert_eq!(discovered.get("vllm").unwrap(), Vec::<String>::new());
        assert!(discovered.get("other").is_none());
        let old = vec!["a".to_owned(), "b".to_owned()];
        let new = vec!["b".to_owned(), "c".to_owned()];
        assert_eq!(list_changes(&old, &new), (vec!["c"], vec!["a"]));
    }
}
