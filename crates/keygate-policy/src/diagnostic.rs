//! Load-time errors and warnings, located by line, column and field path.

use std::fmt;

use crate::document::Position;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in a policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub pos: Position,
    /// Field path, e.g. `on_http_request[1].actions[0].config.capacity`.
    pub path: String,
    pub message: String,
}

impl Diagnostic {
    pub fn error(pos: Position, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            pos,
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn warning(pos: Position, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            pos,
            path: path.into(),
            message: message.into(),
        }
    }

    /// `FILE:LINE:COL: PATH: message`, the form `keygate policy check` prints.
    pub fn in_file<'a>(&'a self, file: &'a str) -> impl fmt::Display + 'a {
        InFile {
            file,
            diagnostic: self,
        }
    }
}

struct InFile<'a> {
    file: &'a str,
    diagnostic: &'a Diagnostic,
}

impl fmt::Display for InFile<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.diagnostic;
        let warning = if d.severity == Severity::Warning {
            "warning: "
        } else {
            ""
        };
        if d.path.is_empty() {
            write!(
                f,
                "{}:{}:{}: {warning}{}",
                self.file, d.pos.line, d.pos.col, d.message
            )
        } else {
            write!(
                f,
                "{}:{}:{}: {}: {warning}{}",
                self.file, d.pos.line, d.pos.col, d.path, d.message
            )
        }
    }
}

/// Where byte `offset` of `value` is written, `value` being a string scalar found at `pos` in
/// `source`: exact when the scalar sits on one line, plain or quoted without escapes; else `pos`.
pub(crate) fn position_in_scalar(
    source: &str,
    pos: Position,
    value: &str,
    offset: Option<usize>,
) -> Position {
    let Some(offset) = offset.filter(|o| *o <= value.len() && value.is_char_boundary(*o)) else {
        return pos;
    };
    let Some(line) = source.lines().nth(pos.line.saturating_sub(1)) else {
        return pos;
    };
    let Some((start, _)) = line.char_indices().nth(pos.col.saturating_sub(1)) else {
        return pos;
    };
    let written = &line[start..];
    let quote = written.chars().next().filter(|c| matches!(c, '"' | '\''));
    let inner = match quote {
        Some(q) if !value.contains(q) && (q == '\'' || !value.contains('\\')) => &written[1..],
        Some(_) => return pos,
        None => written,
    };
    if value.contains('\n') || !inner.starts_with(value) {
        return pos;
    }
    let skipped = usize::from(quote.is_some()) + value[..offset].chars().count();
    Position {
        line: pos.line,
        col: pos.col + skipped,
    }
}

/// A policy that failed to load: every error found (and any warnings).
#[derive(Debug, Clone)]
pub struct PolicyError {
    pub file: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .enumerate()
        {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}", d.in_file(&self.file))?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}
