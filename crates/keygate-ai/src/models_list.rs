//! `GET /v1/models`: the models a policy allows, in OpenAI's list shape.

use serde_json::{json, Value};

use crate::registry::Candidate;

/// The list body. Each model appears once under its id (the first provider offering it is
/// `owned_by`); pass-through models are not listed. The shape satisfies both SDKs: OpenAI's
/// `{object: "list", data: [{id, object, created, owned_by}]}` plus Anthropic's `type`,
/// `display_name`, `created_at`, `has_more`, `first_id` and `last_id`.
pub fn models_list(candidates: &[Candidate]) -> Value {
    let mut seen: Vec<String> = Vec::new();
    let mut data = Vec::new();
    for candidate in candidates {
        let id = &candidate.model.id;
        if seen.iter().any(|s| s.eq_ignore_ascii_case(id)) {
            continue;
        }
        seen.push(id.clone());
        data.push(json!({
            "id": id,
            "object": "model",
            "created": 0,
            "owned_by": candidate.provider.id,
            "type": "model",
            "created_at": "1970-01-01T00:00:00Z",
            "display_name": candidate.model.display_name.clone().unwrap_or_else(|| id.clone()),
            "context_window": candidate.model.max_context_window,
        }));
    }
    json!({"object": "list", "data": data, "has_more": false, "first_id": seen.first(), "last_id": seen.last()})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Catalog, GatewaySpec, Registry, Surface};

    #[test]
    fn lists_allowed_models_once() {
        let spec = GatewaySpec {
            providers: serde_json::from_value(json!([
                {"id": "azure", "base_url": "https://a.example/openai/deployments/x", "models": [{"id": "gpt-4o"}]},
                {"id": "openai", "models": [{"id": "gpt-4o-mini"}]}
            ]))
            .unwrap(),
            only_allow_configured_models: true,
            ..Default::default()
        };
        let reg = Registry::new(&spec, Catalog::builtin()).unwrap();
        let list = models_list(&reg.available(Some(Surface::ChatCompletions)));
        assert_eq!(list["object"], "list");
        let ids: Vec<&str> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["gpt-4o", "gpt-4o-mini"]);
        assert_eq!(list["data"][0]["owned_by"], "azure");
        assert_eq!(list["first_id"], "gpt-4o");
        assert_eq!(list["last_id"], "gpt-4o-mini");
        assert_eq!(list["has_more"], false);
    }
}
