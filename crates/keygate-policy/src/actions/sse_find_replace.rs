//! `sse-find-replace`: rewrites fields of each Server-Sent Event as the stream passes, in
//! `on_event_stream_message`; each replacement names its field (`data` by default). A `data`
//! field spread over several lines is matched as one text, its lines joined by `\n`, so a
//! pattern can span them.

use serde::Deserialize;

use super::find_replace::{self, ReplacementConfig, Replacements, Target};
use crate::action::{
    ready, Action, ActionError, ActionFuture, ActionKind, Flow, Phase, Termination,
};
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::exchange::Exchange;

pub const KIND: ActionKind = ActionKind {
    name: "sse-find-replace",
    result_name: "sse_find_replace",
    phases: &[Phase::OnEventStreamMessage],
    termination: Termination::Never,
    needs_config: true,
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    replacements: Vec<ReplacementConfig>,
}

struct SseFindReplace {
    replacements: Replacements,
    /// Whether anything reads `actions.ngrok.sse_find_replace` (results are built only then).
    publish: bool,
}

fn build(cx: &BuildContext<'_>) -> Result<Box<dyn Action>, Diagnostic> {
    let config: Config = cx.config()?;
    Ok(Box::new(SseFindReplace {
        replacements: Replacements::build(cx, &config.replacements, Target::Event)?,
        publish: cx.results_read(KIND.result_name),
    }))
}

impl SseFindReplace {
    fn rewrite(&self, ex: &mut Exchange) -> Result<Flow, ActionError> {
        let mut matched = Vec::new();
        for &field in self.replacements.fields() {
            let Some(value) = ex.event.as_ref().and_then(|e| e.field(field)) else {
                continue;
            };
            let rewritten = (self.replacements).apply(
                value.as_bytes(),
                Some(field),
                &ex.scope(),
                &mut matched,
            )?;
            if let (Some(bytes), Some(event)) = (rewritten, ex.event.as_mut()) {
                event.set_field(field, &String::from_utf8_lossy(&bytes));
            }
        }
        if self.publish {
            ex.results
                .set(KIND.result_name, find_replace::results(&mut matched));
        }
        Ok(Flow::Continue)
    }
}

impl Action for SseFindReplace {
    fn run<'a>(&'a self, ex: &'a mut Exchange) -> ActionFuture<'a> {
        ready(self.rewrite(ex))
    }
}
