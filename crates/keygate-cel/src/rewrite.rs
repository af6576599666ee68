//! Compile-time rewrites of the parsed expression:
//!
//! * `==`, `!=`, `in` → `@kg_eq`, `@kg_ne`, `@kg_in` (constant-time string comparison);
//! * `matches` with a literal pattern → `@kg_matches(s, @re[n])`, the regex compiled once here
//!   (an invalid pattern is a compile error); other patterns → `@kg_matches(s, p)` (cached);
//! * `getReqHeader(n)` → `req.headers[n]`, `hasReqHeader(n)` → `n in req.headers`, likewise
//!   for `getQueryParam`/`hasQueryParam` (`req.query_params`) and `getResHeader`/`hasResHeader`;
//! * `secrets.get(v, n)` → `@secrets[v][n]`.

use std::sync::Arc;

use cel::common::ast::{
    operators, CallExpr, EntryExpr, Expr, IdedExpr, LiteralValue, SelectExpr, SourceInfo,
};
use cel::common::types::CelInt;

use crate::functions::regex::{compile, RegexVal};
use crate::functions::{EQ, IN, MATCHES, NE};
use crate::CompileError;

/// Deepest expression tree accepted: the interpreter recurses once per level, and at this
/// depth a release build evaluates well within a 2 MiB (tokio worker) stack.
pub const MAX_DEPTH: usize = 100;

/// The result of rewriting one expression.
pub(crate) struct Rewritten {
    pub(crate) regexes: Vec<RegexVal>,
    pub(crate) reads_secrets: bool,
}

struct Rewriter<'s> {
    next_id: u64,
    regexes: Vec<RegexVal>,
    reads_secrets: bool,
    info: &'s SourceInfo,
}

/// Rewrites `expr` in place.
pub(crate) fn rewrite(expr: &mut IdedExpr, info: &SourceInfo) -> Result<Rewritten, CompileError> {
    let mut rewriter = Rewriter {
        next_id: max_id(expr, 0)? + 1,
        regexes: Vec::new(),
        reads_secrets: false,
        info,
    };
    rewriter.walk(expr, 0)?;
    Ok(Rewritten {
        regexes: rewriter.regexes,
        reads_secrets: rewriter.reads_secrets,
    })
}

fn too_deep() -> CompileError {
    CompileError {
        message: format!("expression is nested more than {MAX_DEPTH} levels deep"),
        offset: None,
    }
}

/// The children of a node, for the generic walks.
fn children(expr: &mut IdedExpr) -> Vec<&mut IdedExpr> {
    match &mut expr.expr {
        Expr::Call(call) => call
            .target
            .iter_mut()
            .map(|t| t.as_mut())
            .chain(call.args.iter_mut())
            .collect(),
        Expr::Comprehension(c) => vec![
            &mut c.iter_range,
            &mut c.accu_init,
            &mut c.loop_cond,
            &mut c.loop_step,
            &mut c.result,
        ],
        Expr::List(list) => list.elements.iter_mut().collect(),
        Expr::Map(map) => map
            .entries
            .iter_mut()
            .flat_map(|entry| match &mut entry.expr {
                EntryExpr::MapEntry(e) => vec![&mut e.key, &mut e.value],
                EntryExpr::StructField(f) => vec![&mut f.value],
            })
            .collect(),
        Expr::Struct(s) => s
            .entries
            .iter_mut()
            .flat_map(|entry| match &mut entry.expr {
                EntryExpr::MapEntry(e) => vec![&mut e.key, &mut e.value],
                EntryExpr::StructField(f) => vec![&mut f.value],
            })
            .collect(),
        Expr::Select(select) => vec![select.operand.as_mut()],
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Vec::new(),
    }
}

fn max_id(expr: &mut IdedExpr, depth: usize) -> Result<u64, CompileError> {
    if depth > MAX_DEPTH {
        return Err(too_deep());
    }
    let mut max = expr.id;
    for child in children(expr) {
        max = max.max(max_id(child, depth + 1)?);
    }
    Ok(max)
}

impl Rewriter<'_> {
    fn node(&mut self, expr: Expr) -> IdedExpr {
        let id = self.next_id;
        self.next_id += 1;
        IdedExpr { id, expr }
    }

    fn ident(&mut self, name: &str) -> IdedExpr {
        self.node(Expr::Ident(name.to_owned()))
    }

    /// `root.a.b` as selections.
    fn path(&mut self, root: &str, fields: &[&str]) -> IdedExpr {
        let mut expr = self.ident(root);
        for field in fields {
            expr = self.node(Expr::Select(SelectExpr {
                operand: Box::new(expr),
                field: (*field).to_owned(),
                test: false,
            }));
        }
        expr
    }

    fn call(&mut self, func_name: &str, args: Vec<IdedExpr>) -> Expr {
        Expr::Call(CallExpr {
            func_name: func_name.to_owned(),
            target: None,
            args,
        })
    }

    fn index(&mut self, operand: IdedExpr, key: IdedExpr) -> IdedExpr {
        let call = self.call(operators::INDEX, vec![operand, key]);
        self.node(call)
    }

    fn walk(&mut self, expr: &mut IdedExpr, depth: usize) -> Result<(), CompileError> {
        if depth > MAX_DEPTH {
            return Err(too_deep());
        }
        for child in children(expr) {
            self.walk(child, depth + 1)?;
        }
        let id = expr.id;
        if let Expr::Call(call) = &mut expr.expr {
            if let Some(rewritten) = self.rewrite_call(call, id)? {
                expr.expr = rewritten;
            }
        }
        Ok(())
    }

    fn arity(&self, name: &str, call: &CallExpr, want: usize, id: u64) -> Result<(), CompileError> {
        if call.args.len() == want {
            return Ok(());
        }
        Err(CompileError {
            message: format!(
                "{name}() takes {want} argument{}, got {}",
                if want == 1 { "" } else { "s" },
                call.args.len()
            ),
            offset: self.offset(id),
        })
    }

    fn offset(&self, id: u64) -> Option<usize> {
        self.info
            .offset_for(id)
            .and_then(|(start, _)| usize::try_from(start).ok())
    }

    fn rewrite_call(&mut self, call: &mut CallExpr, id: u64) -> Result<Option<Expr>, CompileError> {
        let global = call.target.is_none();
        let name = call.func_name.as_str();
        let (map_root, map_field) = match name {
            "getReqHeader" | "hasReqHeader" => ("req", "headers"),
            "getQueryParam" | "hasQueryParam" => ("req", "query_params"),
            "getResHeader" | "hasResHeader" => ("res", "headers"),
            _ => ("", ""),
        };
        match name {
            operators::EQUALS if global => call.func_name = EQ.to_owned(),
            operators::NOT_EQUALS if global => call.func_name = NE.to_owned(),
            operators::IN if global => call.func_name = IN.to_owned(),
            "matches" => return self.rewrite_matches(call, id).map(Some),
            "getReqHeader" | "getQueryParam" | "getResHeader" if global => {
                let name = name.to_owned();
                self.arity(&name, call, 1, id)?;
                let map = self.path(map_root, &[map_field]);
                let key = std::mem::take(&mut call.args[0]);
                return Ok(Some(self.call(operators::INDEX, vec![map, key])));
            }
            "hasReqHeader" | "hasQueryParam" | "hasResHeader" if global => {
                let name = name.to_owned();
                self.arity(&name, call, 1, id)?;
                let map = self.path(map_root, &[map_field]);
                let key = std::mem::take(&mut call.args[0]);
                return Ok(Some(self.call(IN, vec![key, map])));
            }
            "get" if matches!(call.target.as_deref(), Some(IdedExpr { expr: Expr::Ident(n), .. }) if n == "secrets") =>
            {
                self.arity("secrets.get", call, 2, id)?;
                self.reads_secrets = true;
                let name = call.args.pop().unwrap_or_default();
                let vault = call.args.pop().unwrap_or_default();
                let secrets = self.ident("@secrets");
                let in_vault = self.index(secrets, vault);
                return Ok(Some(self.call(operators::INDEX, vec![in_vault, name])));
            }
            _ => {}
        }
        Ok(None)
    }

    fn rewrite_matches(&mut self, call: &mut CallExpr, id: u64) -> Result<Expr, CompileError> {
        let (text, pattern) = match (call.target.take(), call.args.len()) {
            (Some(target), 1) => (*target, std::mem::take(&mut call.args[0])),
            (None, 2) => {
                let pattern = call.args.pop().unwrap_or_default();
                (call.args.pop().unwrap_or_default(), pattern)
            }
            _ => {
                return Err(CompileError {
                    message: "matches() takes a string and a pattern".to_owned(),
                    offset: self.offset(id),
                })
            }
        };
        let pattern = match &pattern.expr {
            Expr::Literal(LiteralValue::String(literal)) => {
                let re = compile(literal.inner()).map_err(|e| CompileError {
                    message: format!("invalid regular expression: {e}"),
                    offset: self.offset(pattern.id),
                })?;
                let slot = i64::try_from(self.regexes.len()).unwrap_or(i64::MAX);
                self.regexes.push(RegexVal(Arc::new(re)));
                let table = self.ident("@re");
                let slot = self.node(Expr::Literal(LiteralValue::Int(CelInt::from(slot))));
                self.index(table, slot)
            }
            _ => pattern,
        };
        Ok(self.call(MATCHES, vec![text, pattern]))
    }
}
