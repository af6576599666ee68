//! `custom-response`: answer the request with a fixed (or interpolated) status, headers and body.

use std::collections::BTreeMap;

use http::{HeaderValue, Response, StatusCode};
use keygate_cel::Template;
use serde::Deserialize;

use crate::action::{
    ready, Action, ActionError, ActionFuture, ActionKind, Flow, Phase, Termination,
};
use crate::actions::header_templates::HeaderTemplates;
use crate::body::{empty, full};
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::exchange::Exchange;

pub const KIND: ActionKind = ActionKind {
    name: "custom-response",
    result_name: "custom_response",
    phases: &[Phase::OnHttpRequest, Phase::OnHttpResponse],
    termination: Termination::Always,
    needs_config: false,
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    status_code: Option<i64>,
    body: Option<String>,
    /// Legacy name of `body` (renamed by ngrok in May 2025).
    content: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

struct CustomResponse {
    status: StatusCode,
    body: Option<Template>,
    headers: HeaderTemplates,
    /// Set when the config gives no content-type: inferred from the body at load, or per request.
    inferred_content_type: bool,
}

fn build(cx: &BuildContext<'_>) -> Result<Box<dyn Action>, Diagnostic> {
    let config: Config = cx.config()?;
    let status = match config.status_code {
        None => StatusCode::OK,
        Some(code) => u16::try_from(code)
            .ok()
            .filter(|c| (100..=599).contains(c))
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or_else(|| {
                cx.error(
                    "status_code",
                    format!("status_code must be 100-599, got {code}"),
                )
            })?,
    };
    let body_source = match (config.body, config.content) {
        (Some(_), Some(_)) => {
            return Err(cx.error(
                "content",
                "give either body or its legacy name content, not both",
            ))
        }
        (Some(body), None) => Some((body, "body")),
        (None, Some(content)) => {
            cx.warn("content", "'content' is deprecated; use 'body'");
            Some((content, "content"))
        }
        (None, None) => None,
    };
    if body_source.as_ref().is_some_and(|(b, _)| !b.is_empty())
        && matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
    {
        return Err(cx.error(
            "body",
            format!("status {} cannot carry a body", status.as_u16()),
        ));
    }
    let body = body_source
        .map(|(source, field)| cx.template(field, &source))
        .transpose()?;
    let headers = HeaderTemplates::build(cx, "headers", &config.headers)?;
    let inferred_content_type = !headers.contains("content-type");
    Ok(Box::new(CustomResponse {
        status,
        body,
        headers,
        inferred_content_type,
    }))
}

impl Action for CustomResponse {
    fn run<'a>(&'a self, ex: &'a mut Exchange) -> ActionFuture<'a> {
        ready(self.respond(ex).map(Flow::Respond))
    }
}

impl CustomResponse {
    fn respond(&self, ex: &Exchange) -> Result<Response<crate::body::Body>, ActionError> {
        let scope = ex.scope();
        let body = match &self.body {
            Some(template) => Some(template.eval_string(&scope)?),
            None => None,
        };
        let mut response = Response::new(match &body {
            Some(text) if !text.is_empty() => full(text.clone()),
            _ => empty(),
        });
        *response.status_mut() = self.status;
        self.headers.apply(&scope, response.headers_mut())?;
        if self.inferred_content_type {
            if let Some(text) = body.as_deref().filter(|b| !b.is_empty()) {
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static(infer_content_type(text)),
                );
            }
        }
        Ok(response)
    }
}

/// JSON-looking → `application/json`, HTML-looking → `text/html`, else plain text.
fn infer_content_type(body: &str) -> &'static str {
    let trimmed = body.trim_start();
    if (trimmed.starts_with('{') || trimmed.starts_with('['))
        && serde_json::from_str::<serde::de::IgnoredAny>(body).is_ok()
    {
        "application/json"
    } else if starts_with_ignore_case(trimmed, "<html")
        || starts_with_ignore_case(trimmed, "<!doctype")
    {
        "text/html; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    }
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests {
    use super::infer_content_type;

    #[test]
    fn content_type_inference() {
        assert_eq!(infer_content_type("{\"a\": 1}"), "application/json");
        assert_eq!(infer_content_type("{not json"), "text/plain; charset=utf-8");
        assert_eq!(
            infer_content_type("<!DOCTYPE html><p>"),
            "text/html; charset=utf-8"
        );
        assert_eq!(infer_content_type("<html>"), "text/html; charset=utf-8");
        assert_eq!(infer_content_type("hello"), "text/plain; charset=utf-8");
    }
}
