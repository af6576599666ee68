//! String comparisons without the interpreter.
//!
//! The commonest policy test is a string comparison such as the seed guide's
//! `req.headers['authorization'][0] != 'Bearer ' + secrets.get('gateway-auth', 'access-token')`.
//! After the rewrite (see [`crate::rewrite`]) its operands are pieces the resolver answers
//! directly: string literals, the first value of a named request header and secrets with literal
//! names, joined by `+`. Such an expression is recognised once, at compile time, and evaluated
//! with plain string operations: no CEL values, no boxed closures, one small buffer at most.
//!
//! Only that shape is taken; the result is the one the interpreter gives (the same
//! constant-time comparison, the same `''` for a missing header). When an operand cannot be
//! read (a request-less scope, a secret that is missing) evaluation returns `None` and the
//! caller runs the interpreter, which words the error.

use std::borrow::Cow;
use std::sync::Arc;

use cel::common::ast::{operators, Expr, IdedExpr, LiteralValue};
use http::HeaderName;
use secrecy::{ExposeSecret, SecretString};

use crate::functions::compare::ct_str_eq;
use crate::functions::{EQ, NE};
use crate::rewrite::{HEADERS_PREFIX, SECRET_PREFIX};
use crate::Scope;

/// `left == right` (or `!=` when `negated`), both sides string pieces.
#[derive(Debug)]
pub(crate) struct StringComparison {
    negated: bool,
    left: Vec<Piece>,
    right: Vec<Piece>,
}

/// One operand of a `+` chain.
#[derive(Debug)]
enum Piece {
    Literal(String),
    /// `req.headers['name'][0]`: `None` for a name that is not a valid header name (never present).
    FirstRequestHeader(Option<HeaderName>),
    Secret {
        vault: String,
        name: String,
    },
}

/// An operand's text for one evaluation.
enum Text<'a> {
    Borrowed(Cow<'a, str>),
    Secret(Arc<SecretString>),
    /// Several pieces joined; may hold secret bytes, so it is wiped when dropped.
    Joined(SecretString),
}

impl Text<'_> {
    fn as_str(&self) -> &str {
        match self {
            Text::Borrowed(text) => text,
            Text::Secret(secret) => secret.expose_secret(),
            Text::Joined(joined) => joined.expose_secret(),
        }
    }
}

impl StringComparison {
    /// Recognises `a == b` / `a != b` over string pieces in a rewritten expression.
    pub(crate) fn recognise(expr: &IdedExpr) -> Option<Self> {
        let Expr::Call(call) = &expr.expr else {
            return None;
        };
        // The rewrite keeps the interpreter's own operators when one side is a literal.
        let negated = match call.func_name.as_str() {
            EQ | operators::EQUALS => false,
            NE | operators::NOT_EQUALS => true,
            _ => return None,
        };
        let [left, right] = call.args.as_slice() else {
            return None;
        };
        if call.target.is_some() {
            return None;
        }
        let mut comparison = Self {
            negated,
            left: Vec::new(),
            right: Vec::new(),
        };
        pieces(left, &mut comparison.left)?;
        pieces(right, &mut comparison.right)?;
        let fits = |side: &[Piece]| side.len() <= MAX_PIECES;
        (fits(&comparison.left) && fits(&comparison.right)).then_some(comparison)
    }

    /// The result, or `None` when an operand cannot be read here (the interpreter then runs).
    pub(crate) fn eval(&self, scope: &Scope<'_>) -> Option<bool> {
        let left = operand(&self.left, scope)?;
        let right = operand(&self.right, scope)?;
        let equal = ct_str_eq(left.as_str(), right.as_str());
        Some(equal != self.negated)
    }
}

/// Flattens a `+` chain of string pieces into `out`; `None` if any leaf is something else.
fn pieces(expr: &IdedExpr, out: &mut Vec<Piece>) -> Option<()> {
    match &expr.expr {
        Expr::Literal(LiteralValue::String(s)) => out.push(Piece::Literal(s.inner().to_owned())),
        Expr::Ident(name) => {
            let (vault, name) = name.strip_prefix(SECRET_PREFIX)?.split_once('/')?;
            out.push(Piece::Secret {
                vault: vault.to_owned(),
                name: name.to_owned(),
            });
        }
        Expr::Call(call) if call.target.is_none() && call.func_name == operators::ADD => {
            let [a, b] = call.args.as_slice() else {
                return None;
            };
            pieces(a, out)?;
            pieces(b, out)?;
        }
        Expr::Call(call) if call.target.is_none() && call.func_name == operators::INDEX => {
            let [list, index] = call.args.as_slice() else {
                return None;
            };
            let Expr::Literal(LiteralValue::Int(index)) = &index.expr else {
                return None;
            };
            if *index.inner() != 0 {
                return None;
            }
            let Expr::Ident(name) = &list.expr else {
                return None;
            };
            let header = name.strip_prefix("@req")?.strip_prefix(HEADERS_PREFIX)?;
            out.push(Piece::FirstRequestHeader(
                HeaderName::from_bytes(header.as_bytes()).ok(),
            ));
        }
        _ => return None,
    }
    Some(())
}

/// Most pieces one side may have (a longer chain runs in the interpreter).
const MAX_PIECES: usize = 8;

/// The text of one side: borrowed when it is a single piece, joined into one buffer of the exact
/// size otherwise (a growing buffer would leave unwiped copies of secret bytes behind).
fn operand<'a>(pieces: &'a [Piece], scope: &Scope<'a>) -> Option<Text<'a>> {
    if let [single] = pieces {
        return text(single, scope);
    }
    let mut texts: [Option<Text<'a>>; MAX_PIECES] = std::array::from_fn(|_| None);
    let mut len = 0;
    for (slot, piece) in texts.iter_mut().zip(pieces) {
        let text = text(piece, scope)?;
        len += text.as_str().len();
        *slot = Some(text);
    }
    let mut joined = String::with_capacity(len);
    for text in texts.iter().flatten() {
        joined.push_str(text.as_str());
    }
    Some(Text::Joined(SecretString::from(joined)))
}

fn text<'a>(piece: &'a Piece, scope: &Scope<'a>) -> Option<Text<'a>> {
    Some(match piece {
        Piece::Literal(s) => Text::Borrowed(Cow::Borrowed(s)),
        Piece::FirstRequestHeader(name) => {
            let headers = &scope.req?.head.headers;
            let value = name.as_ref().and_then(|name| headers.get(name));
            // As the header view reads it: a missing header is `''`, invalid UTF-8 is replaced.
            Text::Borrowed(
                value.map_or(Cow::Borrowed(""), |v| String::from_utf8_lossy(v.as_bytes())),
            )
        }
        Piece::Secret { vault, name } => Text::Secret(scope.secrets.get(vault, name).ok()?),
    })
}
