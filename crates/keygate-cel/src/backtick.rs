//! Backtick-quoted field selection, as cel-spec defines it: ``m.`content-type` `` selects the
//! field `content-type` (names may hold letters, digits, `_`, `.`, `-`, `/` and spaces).
//!
//! The `cel` 0.15 lexer refuses backticks, so before parsing each quoted name after a `.` is
//! replaced by a placeholder identifier **of the same length** (error offsets stay exact), and
//! after parsing the selections of placeholders get their real names back. A backtick anywhere
//! else is left for the parser to refuse.

use cel::common::ast::{EntryExpr, Expr, IdedExpr};

use crate::scan::skip_string;

/// Quoted field names and the placeholders standing for them.
#[derive(Default)]
pub(crate) struct Quoted {
    names: Vec<(String, String)>,
}

fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/' | b' ')
}

const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// A placeholder `_q<n>___` exactly `len` bytes long that does not occur in `source`.
fn placeholder(source: &str, len: usize, taken: &[(String, String)]) -> Option<String> {
    let free = |p: &str| !source.contains(p) && taken.iter().all(|(q, _)| q != p);
    for first in DIGITS {
        for second in DIGITS {
            let mut p = String::from("_q");
            p.push(char::from(*first));
            if len > 3 {
                p.push(char::from(*second));
            }
            while p.len() < len {
                p.push('_');
            }
            if p.len() == len && free(&p) {
                return Some(p);
            }
            if len <= 3 {
                break;
            }
        }
    }
    None
}

/// Replaces each ``.`name` `` by `.placeholder`; `None` when there is no quoted field.
pub(crate) fn replace(source: &str) -> Option<(String, Quoted)> {
    if !source.contains('`') {
        return None;
    }
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len());
    let mut quoted = Quoted::default();
    let mut last = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => {
                i = skip_string(bytes, i).unwrap_or(bytes.len());
                continue;
            }
            b'`' => {
                let after_dot = source[..i].trim_end().ends_with('.');
                let end = bytes[i + 1..]
                    .iter()
                    .position(|b| !allowed(*b))
                    .map(|n| i + 1 + n)
                    .filter(|&e| bytes[e] == b'`' && e > i + 1);
                if let (true, Some(end)) = (after_dot, end) {
                    let name = &source[i + 1..end];
                    let existing = quoted.names.iter().find(|(_, n)| n == name);
                    let p = match existing {
                        Some((p, _)) => Some(p.clone()),
                        None => placeholder(source, end + 1 - i, &quoted.names),
                    };
                    if let Some(p) = p {
                        if existing.is_none() {
                            quoted.names.push((p.clone(), name.to_owned()));
                        }
                        out.push_str(&source[last..i]);
                        out.push_str(&p);
                        last = end + 1;
                        i = end + 1;
                        continue;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    if quoted.names.is_empty() {
        return None;
    }
    out.push_str(&source[last..]);
    Some((out, quoted))
}

impl Quoted {
    /// Gives selections of placeholders their real names back.
    pub(crate) fn restore(&self, expr: &mut IdedExpr) {
        match &mut expr.expr {
            Expr::Select(select) => {
                if let Some((_, name)) = self.names.iter().find(|(p, _)| *p == select.field) {
                    select.field = name.clone();
                }
                self.restore(&mut select.operand);
            }
            Expr::Call(call) => {
                if let Some(target) = &mut call.target {
                    self.restore(target);
                }
                call.args.iter_mut().for_each(|a| self.restore(a));
            }
            Expr::Comprehension(c) => {
                for e in [
                    &mut c.iter_range,
                    &mut c.accu_init,
                    &mut c.loop_cond,
                    &mut c.loop_step,
                    &mut c.result,
                ] {
                    self.restore(e);
                }
            }
            Expr::List(list) => list.elements.iter_mut().for_each(|e| self.restore(e)),
            Expr::Map(map) => map
                .entries
                .iter_mut()
                .for_each(|entry| match &mut entry.expr {
                    EntryExpr::MapEntry(e) => {
                        self.restore(&mut e.key);
                        self.restore(&mut e.value);
                    }
                    EntryExpr::StructField(f) => self.restore(&mut f.value),
                }),
            Expr::Struct(_) | Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
}
