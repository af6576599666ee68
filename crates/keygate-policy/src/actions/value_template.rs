//! Arbitrary YAML/JSON values whose strings may interpolate `${...}` (set-vars values, log
//! metadata): compiled at load, evaluated into CEL values per request.

use keygate_cel::{from_json, EvalError, Scope, Template, Value};

use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;

/// A compiled value tree.
pub enum ValueTemplate {
    /// A scalar or string without interpolation.
    Literal(Value),
    String(Template),
    List(Vec<ValueTemplate>),
    Map(Vec<(String, ValueTemplate)>),
}

impl ValueTemplate {
    /// Compiles `value`, found at `field` (relative to the action's config).
    pub fn build(
        cx: &BuildContext<'_>,
        field: &str,
        value: &serde_json::Value,
    ) -> Result<Self, Diagnostic> {
        Ok(match value {
            serde_json::Value::String(source) => {
                let template = cx.template(field, source)?;
                match template.as_literal() {
                    Some(_) => ValueTemplate::Literal(from_json(value)),
                    None => ValueTemplate::String(template),
                }
            }
            serde_json::Value::Array(items) => ValueTemplate::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| ValueTemplate::build(cx, &format!("{field}[{i}]"), item))
                    .collect::<Result<_, _>>()?,
            ),
            serde_json::Value::Object(entries) => ValueTemplate::Map(
                entries
                    .iter()
                    .map(|(key, item)| {
                        Ok((
                            key.clone(),
                            ValueTemplate::build(cx, &format!("{field}.{key}"), item)?,
                        ))
                    })
                    .collect::<Result<_, Diagnostic>>()?,
            ),
            scalar => ValueTemplate::Literal(from_json(scalar)),
        })
    }

    /// Evaluates into a CEL value (a whole-string `${...}` keeps its type).
    pub fn eval(&self, scope: &Scope<'_>) -> Result<Value, EvalError> {
        Ok(match self {
            ValueTemplate::Literal(value) => value.clone(),
            ValueTemplate::String(template) => template.eval(scope)?,
            ValueTemplate::List(items) => Value::List(
                items
                    .iter()
                    .map(|i| i.eval(scope))
                    .collect::<Result<Vec<_>, _>>()?
                    .into(),
            ),
            ValueTemplate::Map(entries) => {
                let mut map = std::collections::HashMap::with_capacity(entries.len());
                for (key, item) in entries {
                    map.insert(key.clone(), item.eval(scope)?);
                }
                Value::from(map)
            }
        })
    }
}
