//! Compile and evaluation errors. Evaluation messages describe types, never values, so that
//! no secret (or value derived from one) can end up in a log or a response.

use cel::{ExecutionError, ParseErrors};

/// A CEL expression or template that failed to compile. `offset` is a byte offset into the source.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct CompileError {
    pub message: String,
    pub offset: Option<usize>,
}

impl CompileError {
    /// The same error for an expression embedded at byte `start` of a larger source.
    pub(crate) fn shifted(mut self, start: usize) -> Self {
        self.offset = Some(start + self.offset.unwrap_or(0));
        self
    }

    /// The first parse error, with its line and column turned into a byte offset.
    pub(crate) fn from_parse(source: &str, errors: &ParseErrors) -> Self {
        let Some(first) = errors.errors.first() else {
            return CompileError {
                message: "invalid expression".to_owned(),
                offset: None,
            };
        };
        CompileError {
            message: first.msg.clone(),
            offset: byte_offset(source, first.pos.0, first.pos.1),
        }
    }
}

/// Byte offset of 1-based `line`, 1-based character `column`.
fn byte_offset(source: &str, line: isize, column: isize) -> Option<usize> {
    let line = usize::try_from(line).ok()?.checked_sub(1)?;
    let column = usize::try_from(column).ok()?.saturating_sub(1);
    let line_start: usize = source.split_inclusive('\n').take(line).map(str::len).sum();
    let text = source.get(line_start..)?;
    let within = text
        .char_indices()
        .nth(column)
        .map_or(text.len(), |(i, _)| i);
    Some(line_start + within)
}

/// A run-time evaluation failure. The message never contains a secret value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct EvalError {
    pub message: String,
}

impl EvalError {
    /// An evaluation failure described by `message` (also for what an action computes from an
    /// interpolated value, e.g. a pattern that does not compile).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// Describes `error` without the values it carries. When the evaluation read a secret,
    /// function messages (which may quote their input) are withheld too.
    pub(crate) fn from_execution(error: &ExecutionError, secrets_read: bool) -> Self {
        use ExecutionError as E;
        let message = match error {
            E::InvalidArgumentCount { expected, actual } => {
                format!("wrong number of arguments: expected {expected}, got {actual}")
            }
            E::UnsupportedTargetType { target } => {
                format!("unsupported argument of type {}", target.type_of())
            }
            E::NotSupportedAsMethod { method, target } => {
                format!(
                    "'{method}' cannot be called on a value of type {}",
                    target.type_of()
                )
            }
            E::UnsupportedKeyType(key) => {
                format!("a value of type {} cannot be a map key", key.type_of())
            }
            E::UnexpectedType { got, want } => format!("expected {want}, got {got}"),
            E::NoSuchKey(_) if secrets_read => "no such key".to_owned(),
            E::NoSuchKey(key) => format!("no such key: '{key}'"),
            E::NoSuchOverload(overload) => overload.to_string(),
            E::UndeclaredReference(name) if name.as_str() == "res" => {
                "'res' is only available in on_http_response".to_owned()
            }
            E::UndeclaredReference(name) if name.as_str() == "req" => {
                "'req' is not available in this phase".to_owned()
            }
            E::UndeclaredReference(name) => format!("unknown variable or function '{name}'"),
            E::MissingArgumentOrTarget => "missing argument or target".to_owned(),
            E::ValuesNotComparable(a, b) => format!(
                "values of type {} and {} cannot be compared",
                a.type_of(),
                b.type_of()
            ),
            E::UnsupportedBinaryOperator(op, a, b) => format!(
                "operator '{op}' does not apply to {} and {}",
                a.type_of(),
                b.type_of()
            ),
            E::UnsupportedIndex(a, b) => {
                format!("cannot index {} with {}", b.type_of(), a.type_of())
            }
            E::FunctionError { function, .. } if secrets_read => {
                format!("{function}() failed (details withheld: the expression reads secrets)")
            }
            E::FunctionError { function, message } => format!("{function}(): {message}"),
            E::DivisionByZero(_) => "division by zero".to_owned(),
            E::RemainderByZero(_) => "remainder by zero".to_owned(),
            E::Overflow(op, _, _) => format!("integer overflow in '{op}'"),
            E::IndexOutOfBounds(_) => "index out of bounds".to_owned(),
            E::DuplicateKey(_) => "duplicate key in map literal".to_owned(),
            E::InternalError(_) => "internal evaluation error".to_owned(),
            _ => "evaluation failed".to_owned(),
        };
        Self { message }
    }
}

#[cfg(test)]
mod tests {
    use super::byte_offset;

    #[test]
    fn byte_offset_counts_lines_and_characters() {
        assert_eq!(byte_offset("abc", 1, 1), Some(0));
        assert_eq!(byte_offset("abc", 1, 3), Some(2));
        assert_eq!(byte_offset("ab\ncd", 2, 2), Some(4));
        assert_eq!(byte_offset("é x", 1, 3), Some(3));
    }
}
