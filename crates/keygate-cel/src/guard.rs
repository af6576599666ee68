//! Input limits checked before parsing: the CEL parser recurses on nesting, so a huge or
//! deeply nested source is rejected up front instead of risking the stack.

use crate::scan::skip_string;
use crate::CompileError;

/// Longest expression source accepted, in bytes.
pub const MAX_SOURCE_LEN: usize = 16 * 1024;
/// Deepest nesting of brackets and prefix operators accepted.
pub const MAX_NESTING: usize = 64;
/// Most binary operators accepted in one expression (each nests the parse tree one level).
pub const MAX_OPERATORS: usize = 512;

/// Rejects sources over [`MAX_SOURCE_LEN`], nested deeper than [`MAX_NESTING`] or with more
/// than [`MAX_OPERATORS`] operators.
pub(crate) fn check(source: &str) -> Result<(), CompileError> {
    if source.len() > MAX_SOURCE_LEN {
        return Err(CompileError {
            message: format!(
                "expression is {} bytes long; the limit is {MAX_SOURCE_LEN}",
                source.len()
            ),
            offset: Some(MAX_SOURCE_LEN),
        });
    }
    let bytes = source.as_bytes();
    let mut depth = 0usize;
    let mut prefix_run = 0usize;
    let mut operators = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\'' | b'"' => {
                // An unterminated string is left for the parser to report.
                i = skip_string(bytes, i).unwrap_or(bytes.len());
                prefix_run = 0;
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'!' | b'-' => {
                prefix_run += 1;
                operators += 1;
            }
            b'+' | b'*' | b'/' | b'%' | b'<' | b'>' | b'=' | b'&' | b'|' | b'?' | b'.' => {
                operators += 1;
            }
            _ => {}
        }
        if !matches!(b, b'!' | b'-' | b' ' | b'\t' | b'\n' | b'\r') {
            prefix_run = 0;
        }
        if depth + prefix_run > MAX_NESTING {
            return Err(CompileError {
                message: format!("expression is nested more than {MAX_NESTING} levels deep"),
                offset: Some(i),
            });
        }
        if operators > MAX_OPERATORS {
            return Err(CompileError {
                message: format!("expression has more than {MAX_OPERATORS} operators"),
                offset: Some(i),
            });
        }
        i += 1;
    }
    Ok(())
}
