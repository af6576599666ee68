//! `model_selection.strategy`: ordered CEL expressions over `ai.models`, compiled
//! at load. Plain CEL runs in `keygate-cel`; ngrok's AI collection methods run here.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use keygate_cel::{from_json, to_json, Expression, Scope, Variable};
use serde_json::Value as Json;

use super::chain::{split, Piece};
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;

/// The variable plain-CEL steps after an AI method read the current list from.
const CURRENT: &str = "_kg_cur";

/// One compiled strategy.
pub struct Strategy {
    source: String,
    steps: Vec<Step>,
}

enum Step {
    /// The base expression, or `_kg_cur<suffix>`.
    Cel(Expression),
    Method(Method, Vec<Expression>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Only,
    Ignore,
    OnlyProviders,
    IgnoreProviders,
    OnlyAuthors,
    IgnoreAuthors,
    UnderCost,
    InRegion,
    InCountryCode,
    SortBy,
    Random,
    Randomize,
    Get,
}

impl Method {
    fn parse(name: &str) -> Option<(Method, std::ops::RangeInclusive<usize>)> {
        Some(match name {
            "only" => (Method::Only, 1..=1),
            "ignore" => (Method::Ignore, 1..=1),
            "onlyProviders" => (Method::OnlyProviders, 1..=1),
            "ignoreProviders" => (Method::IgnoreProviders, 1..=1),
            "onlyAuthors" => (Method::OnlyAuthors, 1..=1),
            "ignoreAuthors" => (Method::IgnoreAuthors, 1..=1),
            "underCost" => (Method::UnderCost, 2..=2),
            "inRegion" => (Method::InRegion, 1..=1),
            "inCountryCode" => (Method::InCountryCode, 1..=1),
            "sortBy" => (Method::SortBy, 1..=1),
            "random" => (Method::Random, 0..=0),
            "randomize" => (Method::Randomize, 0..=0),
            "get" => (Method::Get, 1..=2),
            _ => return None,
        })
    }
}

/// Why a strategy could not produce models.
#[derive(Debug, Clone, PartialEq)]
pub enum StrategyError {
    /// Evaluation failed (`ERR_KEYGATE_3803`).
    Eval(String),
    /// The result is neither a model nor a list of models (`ERR_KEYGATE_3806`).
    WrongType(String),
}

impl Strategy {
    /// Compiles the strategy found at `field`.
    pub fn build(cx: &BuildContext<'_>, field: &str, source: &str) -> Result<Strategy, Diagnostic> {
        let pieces = split(source).map_err(|m| cx.error(field, m))?;
        let mut steps = Vec::with_capacity(pieces.len());
        for (i, piece) in pieces.into_iter().enumerate() {
            steps.push(match piece {
                Piece::Cel(text) if i == 0 => Step::Cel(cx.expression(field, text)?),
                Piece::Cel(suffix) => {
                    Step::Cel(cx.expression(field, &format!("{CURRENT}{suffix}"))?)
                }
                Piece::Method { name, args } => {
                    let Some((method, arity)) = Method::parse(name) else {
                        return Err(
                            cx.error(field, format!("unknown AI collection method '{name}'"))
                        );
                    };
                    if !arity.contains(&args.len()) {
                        return Err(cx.error(
                            field,
                            format!("'{name}' takes {arity:?} arguments, got {}", args.len()),
                        ));
                    }
                    let args = args
                        .iter()
                        .map(|a| cx.expression(field, a))
                        .collect::<Result<_, _>>()?;
                    Step::Method(method, args)
                }
            });
        }
        Ok(Strategy {
            source: source.to_owned(),
            steps,
        })
    }

    /// The strategy as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates against `scope` (whose `extra` holds `ai`): the selected models in order, as
    /// `AIModel` JSON objects.
    pub fn eval(&self, scope: &Scope<'_>) -> Result<Vec<Json>, StrategyError> {
        let mut current = Json::Null;
        for (i, step) in self.steps.iter().enumerate() {
            current = match step {
                Step::Cel(expression) => {
                    let mut extra: Vec<(&str, Variable)> = scope.extra.to_vec();
                    if i > 0 {
                        extra.push((CURRENT, Variable::new(from_json(&current))));
                    }
                    let inner = Scope {
                        extra: &extra,
                        ..*scope
                    };
                    let value = expression
                        .eval(&inner)
                        .map_err(|e| StrategyError::Eval(e.message))?;
                    to_json(&value)
                }
                Step::Method(method, args) => {
                    let args = args
                        .iter()
                        .map(|a| a.eval(scope).map(|v| to_json(&v)))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| StrategyError::Eval(e.message))?;
                    apply(*method, current, &args)?
                }
            };
        }
        match current {
            Json::Null => Ok(Vec::new()),
            Json::Object(_) => Ok(vec![current]),
            Json::Array(items) if items.iter().all(Json::is_object) => Ok(items),
            other => Err(StrategyError::WrongType(format!(
                "strategy must return a model or a list of models, got {}",
                kind(&other)
            ))),
        }
    }
}

fn kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "bool",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "a list that holds non-models",
        Json::Object(_) => "map",
    }
}

/// Runs one AI collection method over the current list.
fn apply(method: Method, current: Json, args: &[Json]) -> Result<Json, StrategyError> {
    let Json::Array(items) = current else {
        return Err(StrategyError::Eval(format!(
            "{method:?} needs a list, got {}",
            kind(&current)
        )));
    };
    let text_list = |value: &Json| -> Vec<String> {
        match value {
            Json::String(s) => vec![s.to_ascii_lowercase()],
            Json::Array(values) => values
                .iter()
                .filter_map(Json::as_str)
                .map(str::to_ascii_lowercase)
                .collect(),
            _ => Vec::new(),
        }
    };
    let keep = |items: Vec<Json>, pred: &dyn Fn(&Json) -> bool| {
        Json::Array(items.into_iter().filter(|i| pred(i)).collect())
    };
    Ok(match method {
        Method::Only | Method::Ignore => {
            let ids = text_list(&args[0]);
            let want = method == Method::Only;
            keep(items, &|m| {
                names(m, "id", "id_aliases").iter().any(|n| ids.contains(n)) == want
            })
        }
        Method::OnlyProviders | Method::IgnoreProviders => {
            let ids = text_list(&args[0]);
            let want = method == Method::OnlyProviders;
            keep(items, &|m| {
                names(m, "provider_id", "provider_id_aliases")
                    .iter()
                    .any(|n| ids.contains(n))
                    == want
            })
        }
        Method::OnlyAuthors | Method::IgnoreAuthors => {
            let ids = text_list(&args[0]);
            let want = method == Method::OnlyAuthors;
            keep(items, &|m| {
                names(m, "author_id", "author_id_aliases")
                    .iter()
                    .any(|n| ids.contains(n))
                    == want
            })
        }
        Method::UnderCost => {
            let field = price_field(&args[0])?;
            let max = args[1].as_f64().ok_or_else(|| {
                StrategyError::Eval("underCost: the maximum must be a number".into())
            })?;
            keep(items, &|m| price(m, field).is_some_and(|p| p < max))
        }
        Method::InRegion | Method::InCountryCode => {
            let wanted = text_list(&args[0]);
            let key = if method == Method::InRegion {
                "region"
            } else {
                "country_code"
            };
            keep(items, &|m| {
                m.get("datacenters")
                    .and_then(Json::as_array)
                    .is_some_and(|dcs| {
                        dcs.iter().any(|dc| {
                            dc.get(key)
                                .and_then(Json::as_str)
                                .is_some_and(|v| wanted.contains(&v.to_ascii_lowercase()))
                        })
                    })
            })
        }
        Method::SortBy => {
            let field = match args[0].as_str() {
                Some("price") => "input",
                _ => price_field(&args[0])?,
            };
            let mut items = items;
            items.sort_by(|a, b| {
                let (pa, pb) = (
                    price(a, field).unwrap_or(f64::INFINITY),
                    price(b, field).unwrap_or(f64::INFINITY),
                );
                pa.total_cmp(&pb)
            });
            Json::Array(items)
        }
        Method::Random => {
            if items.is_empty() {
                Json::Null
            } else {
                let index = (random_u64() % items.len() as u64) as usize;
                items.into_iter().nth(index).unwrap_or(Json::Null)
            }
        }
        Method::Randomize => {
            let mut items = items;
            for i in (1..items.len()).rev() {
                items.swap(i, (random_u64() % (i as u64 + 1)) as usize);
            }
            Json::Array(items)
        }
        Method::Get => {
            let first = args[0].as_str().unwrap_or_default();
            let found = match args.get(1).and_then(Json::as_str) {
                Some(model) => items.into_iter().find(|m| {
                    names(m, "provider_id", "provider_id_aliases")
                        .contains(&first.to_ascii_lowercase())
                        && names(m, "id", "id_aliases").contains(&model.to_ascii_lowercase())
                }),
                None => items
                    .into_iter()
                    .find(|m| names(m, "id", "id_aliases").contains(&first.to_ascii_lowercase())),
            };
            found.unwrap_or(Json::Null)
        }
    })
}

/// An item's id and aliases, lower-cased.
fn names(item: &Json, id: &str, aliases: &str) -> Vec<String> {
    let mut out: Vec<String> = item
        .get(id)
        .and_then(Json::as_str)
        .map(str::to_ascii_lowercase)
        .into_iter()
        .collect();
    if let Some(list) = item.get(aliases).and_then(Json::as_array) {
        out.extend(
            list.iter()
                .filter_map(Json::as_str)
                .map(str::to_ascii_lowercase),
        );
    }
    out
}

/// `text.input` / `text.output` → the `pricing` field.
fn price_field(kind_arg: &Json) -> Result<&'static str, StrategyError> {
    match kind_arg.as_str() {
        Some("text.input") => Ok("input"),
        Some("text.output") => Ok("output"),
        Some(other) => Err(StrategyError::Eval(format!(
            "price type '{other}' is not in the catalog (use text.input or text.output)"
        ))),
        None => Err(StrategyError::Eval(
            "the price type must be a string".into(),
        )),
    }
}

fn price(model: &Json, field: &str) -> Option<f64> {
    model
        .get("pricing")
        .and_then(|p| p.get(field))
        .and_then(Json::as_f64)
}

/// A non-cryptographic random number (load spreading only).
fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0x9e37_79b9_7f4a_7c15);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn models() -> Json {
        json!([
            {"id": "gpt-4o", "id_aliases": ["chatgpt-4o-latest"], "provider_id": "openai", "provider_id_aliases": ["open-ai"],
             "author_id": "openai", "pricing": {"input": 2.5, "output": 10.0}, "datacenters": []},
            {"id": "claude-haiku-4-5", "id_aliases": [], "provider_id": "anthropic", "provider_id_aliases": [],
             "author_id": "anthropic", "pricing": {"input": 1.0, "output": 5.0}, "datacenters": [{"region": "us-east-1", "country_code": "US"}]},
            {"id": "local", "id_aliases": [], "provider_id": "ollama", "provider_id_aliases": [], "author_id": "meta", "pricing": null}
        ])
    }

    fn ids(value: &Json) -> Vec<&str> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn filters_by_name_provider_author() {
        assert_eq!(
            ids(&apply(Method::Only, models(), &[json!(["ChatGPT-4o-latest"])]).unwrap()),
            ["gpt-4o"]
        );
        assert_eq!(
            ids(&apply(Method::Ignore, models(), &[json!("gpt-4o")]).unwrap()),
            ["claude-haiku-4-5", "local"]
        );
        assert_eq!(
            ids(&apply(
                Method::OnlyProviders,
                models(),
                &[json!(["open-ai", "ollama"])]
            )
            .unwrap()),
            ["gpt-4o", "local"]
        );
        assert_eq!(
            ids(&apply(Method::IgnoreAuthors, models(), &[json!(["openai"])]).unwrap()),
            ["claude-haiku-4-5", "local"]
        );
        assert_eq!(
            ids(&apply(Method::InRegion, models(), &[json!("us-east-1")]).unwrap()),
            ["claude-haiku-4-5"]
        );
        assert_eq!(
            ids(&apply(Method::InCountryCode, models(), &[json!("us")]).unwrap()),
            ["claude-haiku-4-5"]
        );
    }

    #[test]
    fn prices_and_sorting() {
        assert_eq!(
            ids(&apply(
                Method::UnderCost,
                models(),
                &[json!("text.input"), json!(2.0)]
            )
            .unwrap()),
            ["claude-haiku-4-5"]
        );
        assert_eq!(
            ids(&apply(Method::SortBy, models(), &[json!("price")]).unwrap()),
            ["claude-haiku-4-5", "gpt-4o", "local"]
        );
        assert!(matches!(
            apply(Method::UnderCost, models(), &[json!("tools.x"), json!(1)]),
            Err(StrategyError::Eval(_))
        ));
    }

    #[test]
    fn random_picks_and_shuffles() {
        let picked = apply(Method::Random, models(), &[]).unwrap();
        assert!(picked.is_object());
        assert_eq!(apply(Method::Random, json!([]), &[]).unwrap(), Json::Null);
        let mut shuffled = ids(&apply(Method::Randomize, models(), &[]).unwrap())
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>();
        shuffled.sort();
        assert_eq!(shuffled, ["claude-haiku-4-5", "gpt-4o", "local"]);
        let seen: std::collections::HashSet<String> = (0..64)
            .map(|_| {
                apply(Method::Random, models(), &[]).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert!(seen.len() > 1, "random() always picked the same model");
    }

    #[test]
    fn get_and_type_errors() {
        assert_eq!(
            apply(Method::Get, models(), &[json!("openai"), json!("GPT-4o")]).unwrap()["id"],
            "gpt-4o"
        );
        assert_eq!(
            apply(Method::Get, models(), &[json!("local")]).unwrap()["provider_id"],
            "ollama"
        );
        assert_eq!(
            apply(Method::Get, models(), &[json!("nope")]).unwrap(),
            Json::Null
        );
        assert!(matches!(
            apply(Method::Only, json!("x"), &[json!([])]),
            Err(StrategyError::Eval(_))
        ));
    }
}
