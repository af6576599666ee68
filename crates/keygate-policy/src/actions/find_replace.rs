//! The `replacements` list shared by `request-body-find-replace`, `response-body-find-replace`
//! and `sse-find-replace`: RE2-style patterns applied in order, each to the previous one's output.
//! In `sse-find-replace` each replacement names the event field it rewrites (`field`, `data` by
//! default); rules on different fields never see each other's output.
//!
//! `from` and `to` may interpolate `${...}`; a `from` without interpolation is compiled once at
//! load, one with interpolation is compiled when its text changes (the last one is kept).
//! In `to`, `$1`, `${name}`-free `$name` and `$$` refer to the match's groups, as in RE2.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use keygate_cel::{EvalError, Scope, Template, Value};
use regex::bytes::{Regex, RegexBuilder};
use serde::Deserialize;

use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;

/// Largest compiled pattern: bounds what an interpolated `from` can cost.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// One `replacements[]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplacementConfig {
    from: String,
    #[serde(default)]
    to: String,
    field: Option<String>,
}

/// The event fields an `sse-find-replace` rule may rewrite.
const EVENT_FIELDS: [&str; 4] = ["data", "event", "id", "retry"];

/// Where the rules apply.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// A whole body: `field` is refused.
    Body,
    /// Fields of a Server-Sent Event.
    Event,
}

/// The config of `request-body-find-replace` and `response-body-find-replace`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BodyConfig {
    replacements: Vec<ReplacementConfig>,
}

/// The compiled `replacements` list.
pub(crate) struct Replacements {
    rules: Vec<Replacement>,
    /// The event fields the rules rewrite, each once, in rule order (empty for a body).
    fields: Vec<&'static str>,
}

struct Replacement {
    /// The event field (`Target::Event`), `None` for a body.
    field: Option<&'static str>,
    from: Pattern,
    to: Template,
}

/// A compiled pattern with the text it was compiled from.
type Compiled = Arc<(String, Regex)>;

enum Pattern {
    Fixed(Compiled),
    Interpolated {
        template: Template,
        last: ArcSwapOption<(String, Regex)>,
    },
}

/// A rule that matched: its index and the text of its first match.
pub(crate) struct Matched {
    index: usize,
    first: Vec<u8>,
}

impl Replacements {
    /// The `replacements` of a body action's config (which holds nothing else).
    pub fn from_body_config(cx: &BuildContext<'_>) -> Result<Self, Diagnostic> {
        let config: BodyConfig = cx.config()?;
        Self::build(cx, &config.replacements, Target::Body)
    }

    /// Compiles `configs`, found at `replacements` in the action's config, for `target`.
    pub fn build(
        cx: &BuildContext<'_>,
        configs: &[ReplacementConfig],
        target: Target,
    ) -> Result<Self, Diagnostic> {
        if configs.is_empty() {
            return Err(cx.error("replacements", "needs at least one replacement"));
        }
        let mut rules = Vec::with_capacity(configs.len());
        for (i, config) in configs.iter().enumerate() {
            let field = format!("replacements[{i}]");
            let from_field = format!("{field}.from");
            if config.from.is_empty() {
                return Err(cx.error(&from_field, "must not be empty"));
            }
            let template = cx.template(&from_field, &config.from)?;
            let from = match template.as_literal() {
                Some(literal) => Pattern::Fixed(Arc::new((
                    literal.to_owned(),
                    compile(literal).map_err(|message| cx.error(&from_field, message))?,
                ))),
                None => Pattern::Interpolated {
                    template,
                    last: ArcSwapOption::empty(),
                },
            };
            let to = cx.template(&format!("{field}.to"), &config.to)?;
            let event_field = match (target, config.field.as_deref()) {
                (Target::Body, None) => None,
                (Target::Body, Some(_)) => {
                    return Err(cx.error(
                        &format!("{field}.field"),
                        "field applies to sse-find-replace only: a body has no fields",
                    ))
                }
                (Target::Event, None) => Some("data"),
                (Target::Event, Some(name)) => Some(
                    EVENT_FIELDS.into_iter().find(|f| *f == name).ok_or_else(|| {
                        cx.error(
                            &format!("{field}.field"),
                            format!("unknown event field '{name}': expected one of data, event, id, retry"),
                        )
                    })?,
                ),
            };
            rules.push(Replacement {
                field: event_field,
                from,
                to,
            });
        }
        let mut fields: Vec<&'static str> = Vec::new();
        for field in rules.iter().filter_map(|rule| rule.field) {
            if !fields.contains(&field) {
                fields.push(field);
            }
        }
        Ok(Self { rules, fields })
    }

    /// The event fields the rules rewrite, each once, in rule order.
    pub fn fields(&self) -> &[&'static str] {
        &self.fields
    }

    /// Applies the rules for `field` (`None`: a body's rules) to `input` in order, appending
    /// those that matched to `matched`. Returns the rewritten text, `None` when nothing matched.
    pub fn apply(
        &self,
        input: &[u8],
        field: Option<&str>,
        scope: &Scope<'_>,
        matched: &mut Vec<Matched>,
    ) -> Result<Option<Vec<u8>>, EvalError> {
        let mut current: Option<Vec<u8>> = None;
        let rules = self.rules.iter().enumerate();
        for (index, rule) in rules.filter(|(_, rule)| rule.field == field) {
            let text = current.as_deref().unwrap_or(input);
            let compiled = rule.from.regex(scope)?;
            let regex = &compiled.1;
            let Some(first) = regex.find(text) else {
                continue;
            };
            matched.push(Matched {
                index,
                first: first.as_bytes().to_vec(),
            });
            let to = rule.to.eval_string(scope)?;
            let replaced = regex.replace_all(text, to.as_bytes()).into_owned();
            current = Some(replaced);
        }
        Ok(current)
    }
}

/// A `replacements` list found at `at` in the config, compiled once at load for rules that run
/// outside any request's scope (`ai-gateway` `redact`): `from` and `to` may not interpolate,
/// and `field` does not apply. Returns each rule's pattern and replacement text.
pub(crate) fn fixed(
    cx: &BuildContext<'_>,
    at: &str,
    configs: &[ReplacementConfig],
) -> Result<Vec<(Regex, String)>, Diagnostic> {
    if configs.is_empty() {
        return Err(cx.error(at, "needs at least one replacement"));
    }
    let literal = |field: &str, source: &str| {
        let template = cx.template(field, source)?;
        template.as_literal().map(str::to_owned).ok_or_else(|| {
            cx.error(
                field,
                "is compiled once at load: ${...} interpolation is not supported here",
            )
        })
    };
    let mut rules = Vec::with_capacity(configs.len());
    for (i, config) in configs.iter().enumerate() {
        let field = format!("{at}[{i}]");
        if config.field.is_some() {
            return Err(cx.error(
                &format!("{field}.field"),
                "field applies to sse-find-replace only",
            ));
        }
        let from_field = format!("{field}.from");
        if config.from.is_empty() {
            return Err(cx.error(&from_field, "must not be empty"));
        }
        let from = literal(&from_field, &config.from)?;
        let regex = compile(&from).map_err(|message| cx.error(&from_field, message))?;
        rules.push((regex, literal(&format!("{field}.to"), &config.to)?));
    }
    Ok(rules)
}

impl Pattern {
    fn regex(&self, scope: &Scope<'_>) -> Result<Compiled, EvalError> {
        match self {
            Pattern::Fixed(compiled) => Ok(compiled.clone()),
            Pattern::Interpolated { template, last } => {
                let source = template.eval_string(scope)?;
                if let Some(cached) = last.load_full().filter(|c| c.0 == source) {
                    return Ok(cached);
                }
                let regex = compile(&source)
                    .map_err(|message| EvalError::new(format!("replacements.from: {message}")))?;
                let compiled = Arc::new((source, regex));
                last.store(Some(compiled.clone()));
                Ok(compiled)
            }
        }
    }
}

fn compile(source: &str) -> Result<Regex, String> {
    RegexBuilder::new(source)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|err| format!("invalid regular expression: {err}"))
}

/// The `replacements` result list: `{replacement_index, matched_content}` per rule that matched,
/// in rule order.
pub(crate) fn results(matched: &mut [Matched]) -> Value {
    matched.sort_by_key(|m| m.index);
    let list: Vec<Value> = matched
        .iter()
        .map(|m| {
            Value::from(HashMap::from([
                ("replacement_index", Value::from(m.index as i64)),
                (
                    "matched_content",
                    Value::from(String::from_utf8_lossy(&m.first).into_owned()),
                ),
            ]))
        })
        .collect();
    Value::from(HashMap::from([("replacements", Value::List(list.into()))]))
}
