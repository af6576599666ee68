//! The `from`/`to` URL rewriting shared by `url-rewrite` and `redirect`: patterns over the full
//! request URL, interpolated first, compiled at load when they hold no `${...}`.

use keygate_cel::{EvalError, Scope, Template, Value};
use regex::Regex;

use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::exchange::Exchange;

/// A compiled `from` pattern.
pub enum Pattern {
    Static(Regex),
    Dynamic(Template),
}

impl Pattern {
    /// Compiles `source` (a regex, possibly with `${...}`) found at `field`.
    pub fn build(cx: &BuildContext<'_>, field: &str, source: &str) -> Result<Self, Diagnostic> {
        let template = cx.template(field, source)?;
        match template.as_literal() {
            Some(literal) => Regex::new(literal)
                .map(Pattern::Static)
                .map_err(|err| cx.error(field, format!("invalid regular expression: {err}"))),
            None => Ok(Pattern::Dynamic(template)),
        }
    }

    /// The regex for this request (interpolated patterns are compiled now).
    pub fn regex(&self, scope: &Scope<'_>) -> Result<std::borrow::Cow<'_, Regex>, EvalError> {
        match self {
            Pattern::Static(regex) => Ok(std::borrow::Cow::Borrowed(regex)),
            Pattern::Dynamic(template) => {
                let source = template.eval_string(scope)?;
                Regex::new(&source)
                    .map(std::borrow::Cow::Owned)
                    .map_err(|err| EvalError {
                        message: format!("interpolated pattern is not a valid regex: {err}"),
                    })
            }
        }
    }
}

/// The full request URL: `scheme://authority/path?query`.
pub fn request_url(ex: &Exchange) -> String {
    let authority = ex
        .request
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            ex.request
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let path_and_query = ex
        .request
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str());
    format!("{}://{authority}{path_and_query}", ex.scheme)
}

/// Applies `from`/`to` to `url`. Returns the new URL and the capture groups of every match
/// (`all` replaces every match; otherwise only the first).
pub fn rewrite(
    from: Option<&Pattern>,
    to: &Template,
    url: &str,
    scope: &Scope<'_>,
    all: bool,
) -> Result<(String, Vec<Value>), EvalError> {
    let to = to.eval_string(scope)?;
    let Some(from) = from else {
        return Ok((to, Vec::new()));
    };
    let regex = from.regex(scope)?;
    let mut matches = Vec::new();
    for captures in regex
        .captures_iter(url)
        .take(if all { usize::MAX } else { 1 })
    {
        matches.extend(
            captures
                .iter()
                .map(|m| Value::from(m.map_or("", |m| m.as_str()).to_owned())),
        );
    }
    let rewritten = if all {
        regex.replace_all(url, to.as_str())
    } else {
        regex.replace(url, to.as_str())
    };
    Ok((rewritten.into_owned(), matches))
}
