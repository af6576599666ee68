//! `${...}` interpolation in config strings, compiled once.
//!
//! The closing `}` is found with CEL lexing in mind: braces inside string literals and nested
//! braces (map literals) don't end the expression. `$${` writes a literal `${`.

use crate::compiler::{Compiler, Expression};
use crate::error::{CompileError, EvalError};
use crate::json::{format_duration, to_json};
use crate::scan::skip_string;
use crate::{Scope, Value};

#[derive(Clone, Debug)]
enum Part {
    Text(String),
    Expr(Expression),
}

/// A compiled config string with `${...}` parts.
#[derive(Clone, Debug)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    pub(crate) fn compile(compiler: &Compiler, source: &str) -> Result<Self, CompileError> {
        let bytes = source.as_bytes();
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut i = 0;
        let mut literal_start = 0;
        while i < bytes.len() {
            if bytes[i..].starts_with(b"$${") {
                text.push_str(&source[literal_start..i]);
                text.push_str("${");
                i += 3;
                literal_start = i;
            } else if bytes[i..].starts_with(b"${") {
                text.push_str(&source[literal_start..i]);
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                let start = i + 2;
                let end = closing_brace(bytes, start).ok_or_else(|| CompileError {
                    message: "unterminated '${': missing '}'".to_owned(),
                    offset: Some(i),
                })?;
                let inner = &source[start..end];
                if inner.trim().is_empty() {
                    return Err(CompileError {
                        message: "empty '${}' interpolation".to_owned(),
                        offset: Some(i),
                    });
                }
                let expression = compiler.expression(inner).map_err(|e| e.shifted(start))?;
                parts.push(Part::Expr(expression));
                i = end + 1;
                literal_start = i;
            } else {
                i += 1;
            }
        }
        text.push_str(&source[literal_start..]);
        if !text.is_empty() || parts.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Self {
            source: source.to_owned(),
            parts,
        })
    }

    /// The source text as written in the policy.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// `Some(text)` when the template has no `${...}` at all (`$${` already unescaped).
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Text(text)] => Some(text),
            _ => None,
        }
    }

    /// Whether any interpolation calls `secrets.get` (the result is then secret-derived).
    pub fn reads_secrets(&self) -> bool {
        self.parts
            .iter()
            .any(|part| matches!(part, Part::Expr(e) if e.reads_secrets()))
    }

    /// A value that is exactly one `${...}` keeps its type; anything else is a string.
    pub fn eval(&self, scope: &Scope<'_>) -> Result<Value, EvalError> {
        match self.parts.as_slice() {
            [Part::Expr(expression)] => expression.eval(scope),
            _ => self.eval_string(scope).map(Value::from),
        }
    }

    /// Renders as a string (maps and lists as JSON, timestamps as RFC 3339).
    pub fn eval_string(&self, scope: &Scope<'_>) -> Result<String, EvalError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Expr(expression) => expression.render_into(scope, &mut out)?,
            }
        }
        Ok(out)
    }
}

/// The index of the `}` closing an interpolation whose expression starts at `start`.
fn closing_brace(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => {
                i = skip_string(bytes, i)?;
                continue;
            }
            b'{' => depth += 1,
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// How an interpolated value reads inside a larger string.
pub fn stringify(value: &Value) -> String {
    match value {
        Value::String(s) => s.as_str().to_owned(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_owned(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Timestamp(t) => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        Value::Duration(d) => format_duration(d),
        other => to_json(other).to_string(),
    }
}
