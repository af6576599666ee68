//! Header maps whose values may interpolate `${...}`: validated and compiled at load.

use std::collections::BTreeMap;

use http::{HeaderMap, HeaderName, HeaderValue};
use keygate_cel::{EvalError, Scope, Template};

use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;

/// At most this many headers per action (ngrok's limit).
const MAX_HEADERS: usize = 10;

/// Compiled `name: value-template` pairs.
pub struct HeaderTemplates {
    entries: Vec<(HeaderName, Template)>,
}

impl HeaderTemplates {
    /// Validates names (lower-cased) and compiles values of the map found at `field`.
    pub fn build(
        cx: &BuildContext<'_>,
        field: &str,
        map: &BTreeMap<String, String>,
    ) -> Result<Self, Diagnostic> {
        if map.len() > MAX_HEADERS {
            return Err(cx.error(
                field,
                format!("at most {MAX_HEADERS} headers, got {}", map.len()),
            ));
        }
        let mut entries = Vec::with_capacity(map.len());
        for (name, value) in map {
            let at = format!("{field}.{name}");
            let header = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| cx.error(&at, format!("invalid header name '{name}'")))?;
            if entries.iter().any(|(n, _)| *n == header) {
                return Err(cx.error(
                    &at,
                    format!("header '{name}' is given twice with different casing"),
                ));
            }
            let template = cx.template(&at, value)?;
            if let Some(literal) = template.as_literal() {
                HeaderValue::from_str(literal)
                    .map_err(|_| cx.error(&at, "invalid header value"))?;
            }
            entries.push((header, template));
        }
        Ok(Self { entries })
    }

    /// Whether a header of this (lower-case) name is configured.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.iter().any(|(n, _)| n.as_str() == name)
    }

    /// Whether the value of header `name` interpolates a secret.
    pub fn reads_secrets(&self, name: &HeaderName) -> bool {
        self.entries
            .iter()
            .any(|(n, template)| n == name && template.reads_secrets())
    }

    /// Renders every value.
    pub fn render(&self, scope: &Scope<'_>) -> Result<Vec<(HeaderName, HeaderValue)>, EvalError> {
        self.entries
            .iter()
            .map(|(name, template)| {
                let text = template.eval_string(scope)?;
                let value = HeaderValue::from_str(&text).map_err(|_| EvalError {
                    message: format!(
                        "header '{name}' rendered to a value that is not a valid header"
                    ),
                })?;
                Ok((name.clone(), value))
            })
            .collect()
    }

    /// Renders and appends every header to `headers`.
    pub fn apply(&self, scope: &Scope<'_>, headers: &mut HeaderMap) -> Result<(), EvalError> {
        for (name, value) in self.render(scope)? {
            headers.append(name, value);
        }
        Ok(())
    }
}
