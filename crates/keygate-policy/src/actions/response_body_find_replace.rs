//! `response-body-find-replace`: rewrites the response body (read whole, at most
//! `--max-body-bytes`) before it goes to the client; `Content-Length` follows the new length.
//!
//! Event streams are left alone (use `sse-find-replace`, which does not hold the stream back), and
//! so are compressed bodies, whose bytes no pattern can match.

use super::find_replace::{self, Replacements};
use crate::action::{Action, ActionFuture, ActionKind, Flow, Phase, Termination};
use crate::body::full;
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::error::{ErrorCode, GatewayError};
use crate::exchange::{collect_limited, CollectError, Exchange};
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use http::HeaderValue;

pub const KIND: ActionKind = ActionKind {
    name: "response-body-find-replace",
    result_name: "response_body_find_replace",
    phases: &[Phase::OnHttpResponse],
    termination: Termination::Never,
    needs_config: true,
    build,
};

struct ResponseBodyFindReplace {
    replacements: Replacements,
}

fn build(cx: &BuildContext<'_>) -> Result<Box<dyn Action>, Diagnostic> {
    Ok(Box::new(ResponseBodyFindReplace {
        replacements: Replacements::from_body_config(cx)?,
    }))
}

/// Whether the body can be rewritten: not an event stream, not compressed.
fn rewritable(head: &http::response::Parts) -> bool {
    let header = |name| head.headers.get(name).and_then(|v| v.to_str().ok());
    let streaming = header(CONTENT_TYPE).is_some_and(|v| v.starts_with("text/event-stream"));
    let encoded = header(CONTENT_ENCODING).is_some_and(|v| !v.eq_ignore_ascii_case("identity"));
    !streaming && !encoded
}

impl Action for ResponseBodyFindReplace {
    fn run<'a>(&'a self, ex: &'a mut Exchange) -> ActionFuture<'a> {
        Box::pin(async move {
            let (Some(head), Some(mut body)) = (ex.response.as_ref(), ex.response_body.take())
            else {
                return Ok(Flow::Continue);
            };
            if !rewritable(head) {
                ex.response_body = Some(body);
                return Ok(Flow::Continue);
            }
            let limit = ex.max_body_bytes;
            let bytes = collect_limited(&mut body, limit).await.map_err(|err| {
                let reason = match err {
                    CollectError::TooLarge => format!("it is over {limit} bytes"),
                    CollectError::Read(err) => format!("reading it failed: {err}"),
                };
                GatewayError::new(
                    ErrorCode::ResponseBodyUnreadable,
                    format!("the response body could not be rewritten: {reason}"),
                )
            })?;
            let mut matched = Vec::new();
            let rewritten = (self.replacements).apply(&bytes, None, &ex.scope(), &mut matched)?;
            let bytes = rewritten.map_or(bytes, Into::into);
            if let Some(head) = ex.response.as_mut() {
                head.headers.remove(TRANSFER_ENCODING);
                head.headers
                    .insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            }
            ex.response_body = Some(full(bytes));
            ex.results
                .set(KIND.result_name, find_replace::results(&mut matched));
            Ok(Flow::Continue)
        })
    }
}
