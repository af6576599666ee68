//! `request-body-find-replace`: rewrites the request body (read whole, at most
//! `--max-body-bytes`) before it is forwarded; `Content-Length` follows the new length.

use super::find_replace::{self, Replacements};
use crate::action::{Action, ActionFuture, ActionKind, Flow, Phase, Termination};
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::exchange::{Exchange, RequestBody};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::HeaderValue;

pub const KIND: ActionKind = ActionKind {
    name: "request-body-find-replace",
    result_name: "request_body_find_replace",
    phases: &[Phase::OnHttpRequest],
    termination: Termination::Never,
    needs_config: true,
    build,
};

struct RequestBodyFindReplace {
    replacements: Replacements,
}

fn build(cx: &BuildContext<'_>) -> Result<Box<dyn Action>, Diagnostic> {
    Ok(Box::new(RequestBodyFindReplace {
        replacements: Replacements::from_body_config(cx)?,
    }))
}

impl Action for RequestBodyFindReplace {
    fn run<'a>(&'a self, ex: &'a mut Exchange) -> ActionFuture<'a> {
        Box::pin(async move {
            let body = ex.buffer_body().await?;
            let mut matched = Vec::new();
            let rewritten = (self.replacements).apply(&body, None, &ex.scope(), &mut matched)?;
            if let Some(bytes) = rewritten {
                let headers = &mut ex.request.headers;
                headers.remove(TRANSFER_ENCODING);
                headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                ex.body = RequestBody::Buffered(bytes.into());
            }
            ex.results
                .set(KIND.result_name, find_replace::results(&mut matched));
            Ok(Flow::Continue)
        })
    }
}
