//! Compile-time rewrites of the parsed expression:
//!
//! * `==`, `!=`, `in` → `@kg_eq`, `@kg_ne`, `@kg_in` (constant-time string comparison);
//! * `matches` with a literal pattern → `@kg_matches(s, @re[n])`, the regex compiled once here
//!   (an invalid pattern is a compile error); other patterns → `@kg_matches(s, p)` (cached);
//! * `getReqHeader(n)` → `req.headers[n]`, `hasReqHeader(n)` → `n in req.headers`, likewise
//!   for `getQueryParam`/`hasQueryParam` (`req.query_params`) and `getResHeader`/`hasResHeader`;
//! * `getReqCookie(n)` → `req.cookies[n][0]`, `hasReqCookie(n)` → `n in req.cookies`, likewise
//!   `getResCookie`/`hasResCookie` (`res.cookies`);
//! * `secrets.get(v, n)` → `@secrets[v][n]`, or `@secret/v/n` when both names are literals;
//! * `req.headers['name']` → `@req.headers/name` (likewise `res`);
//! * `has(req.headers.x)` → `'x' in req.headers` (likewise the query maps);
//! * known variable paths (`req.url.path`, `vars.x`) → one identifier, resolved in one lookup.

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
    /// How many enclosing comprehensions bind a variable named like a root.
    shadowed: usize,
    info: &'s SourceInfo,
}

/// Rewrites `expr` in place.
pub(crate) fn rewrite(expr: &mut IdedExpr, info: &SourceInfo) -> Result<Rewritten, CompileError> {
    let mut rewriter = Rewriter {
        next_id: max_id(expr, 0)? + 1,
        regexes: Vec::new(),
        reads_secrets: false,
        shadowed: 0,
        info,
    };
    rewriter.walk(expr, 0)?;
    Ok(Rewritten {
        regexes: rewriter.regexes,
        reads_secrets: rewriter.reads_secrets,
    })
}

/// `@secret/<vault>/<name>`: `secrets.get` with literal names, read by the resolver directly.
pub(crate) const SECRET_PREFIX: &str = "@secret/";
/// `@req.headers/<name>` (and `@res.`): `req.headers['<name>']` with a literal name.
pub(crate) const HEADERS_PREFIX: &str = ".headers/";

fn string_literal(expr: &IdedExpr) -> Option<&str> {
    match &expr.expr {
        Expr::Literal(LiteralValue::String(s)) => Some(s.inner()),
        _ => None,
    }
}

fn is_scalar_literal(expr: &IdedExpr) -> bool {
    matches!(expr.expr, Expr::Literal(_))
}

fn is_literal_list(expr: &IdedExpr) -> bool {
    matches!(&expr.expr, Expr::List(list) if list.elements.iter().all(is_scalar_literal))
}

/// `req.headers['name']` / `res.headers['name']` → the resolver's `@req.headers/name`, which
/// skips building the map view.
fn literal_header_lookup(expr: &Expr) -> Option<String> {
    let Expr::Call(call) = expr else { return None };
    if call.func_name != operators::INDEX || call.target.is_some() {
        return None;
    }
    let [map, key] = call.args.as_slice() else {
        return None;
    };
    let root = match dotted(&map.expr)?.as_str() {
        "req.headers" => "req",
        "res.headers" => "res",
        _ => return None,
    };
    string_literal(key).map(|name| format!("@{root}{HEADERS_PREFIX}{name}"))
}

/// Roots whose fixed paths are collapsed into one identifier, see [`collapsed_path`].
const ROOTS: [&str; 6] = ["req", "res", "conn", "time", "vars", "actions"];

/// `req.url.path` (selections) → the identifier `req.url.path`, which the resolver answers in
/// one lookup instead of the interpreter joining the segments on every evaluation.
fn collapsed_path(expr: &Expr) -> Option<String> {
    if !matches!(expr, Expr::Select(select) if !select.test) {
        return None;
    }
    let path = dotted(expr)?;
    let known = crate::VARIABLES.contains(&path.as_str())
        || path
            .strip_prefix("vars.")
            .is_some_and(|name| !name.contains('.'))
        || path
            .strip_prefix("actions.ngrok.")
            .is_some_and(|name| !name.contains('.'));
    known.then_some(path)
}

/// The dotted name an expression spells (identifiers may already be collapsed paths).
fn dotted(expr: &Expr) -> Option<String> {
    path_segments(expr).map(|segments| segments.join("."))
}

/// The dotted name an identifier-and-selections expression spells, root first.
fn path_segments(expr: &Expr) -> Option<Vec<&str>> {
    match expr {
        Expr::Ident(name) => Some(vec![name.as_str()]),
        Expr::Select(select) if !select.test => {
            let mut path = path_segments(&select.operand.expr)?;
            path.push(select.field.as_str());
            Some(path)
        }
        _ => None,
    }
}

fn too_deep() -> CompileError {
    CompileError {
        message: format!("expression is nested more than {MAX_DEPTH} levels deep"),
        offset: None,
    }
}

/// The children of a node, for the generic walks.
pub(crate) fn children(expr: &mut IdedExpr) -> Vec<&mut IdedExpr> {
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
        // A comprehension variable named like a root (`[..].map(req, req.x)`) shadows it:
        // paths under it are left to the interpreter.
        let shadows = matches!(&expr.expr, Expr::Comprehension(c)
            if ROOTS.contains(&c.iter_var.as_str())
                || c.iter_var2.as_deref().is_some_and(|v| ROOTS.contains(&v)));
        self.shadowed += usize::from(shadows);
        for child in children(expr) {
            self.walk(child, depth + 1)?;
        }
        self.shadowed -= usize::from(shadows);
        if self.shadowed == 0 {
            if let Some(path) = collapsed_path(&expr.expr) {
                expr.expr = Expr::Ident(path);
                return Ok(());
            }
        }
        let id = expr.id;
        if let Expr::Call(call) = &mut expr.expr {
            if let Some(rewritten) = self.rewrite_call(call, id)? {
                expr.expr = rewritten;
            }
        }
        if let Some(name) = literal_header_lookup(&expr.expr) {
            expr.expr = Expr::Ident(name);
        }
        if let Some(presence) = self.map_presence_test(&mut expr.expr) {
            expr.expr = presence;
        }
        Ok(())
    }

    /// `has(req.headers.x)` → `'x' in req.headers` (also `res.headers`, the query maps): the
    /// views answer every name with a (maybe empty) list, so a field test would always hold.
    fn map_presence_test(&mut self, expr: &mut Expr) -> Option<Expr> {
        let Expr::Select(select) = expr else {
            return None;
        };
        let is_view = matches!(
            dotted(&select.operand.expr)?.as_str(),
            "req.headers" | "res.headers" | "req.query_params" | "req.url.query_params"
        );
        if !select.test || !is_view {
            return None;
        }
        let key = self.node(Expr::Literal(LiteralValue::String(
            select.field.clone().into(),
        )));
        let map = std::mem::take(select.operand.as_mut());
        Some(self.call(IN, vec![key, map]))
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
            "getReqCookie" | "hasReqCookie" => ("req", "cookies"),
            "getResCookie" | "hasResCookie" => ("res", "cookies"),
            "getQueryParam" | "hasQueryParam" => ("req", "query_params"),
            "getResHeader" | "hasResHeader" => ("res", "headers"),
            _ => ("", ""),
        };
        // With a literal on one side no secret meets input the client controls, so the
        // interpreter's own (faster) operators are kept.
        let literal_operand = call.args.iter().any(is_scalar_literal);
        match name {
            operators::EQUALS if global && !literal_operand => call.func_name = EQ.to_owned(),
            operators::NOT_EQUALS if global && !literal_operand => call.func_name = NE.to_owned(),
            operators::IN if global && !call.args.get(1).is_some_and(is_literal_list) => {
                call.func_name = IN.to_owned()
            }
            "matches" => return self.rewrite_matches(call, id).map(Some),
            "getReqHeader" | "getQueryParam" | "getResHeader" if global => {
                let name = name.to_owned();
                self.arity(&name, call, 1, id)?;
                let map = self.path(map_root, &[map_field]);
                let key = std::mem::take(&mut call.args[0]);
                return Ok(Some(self.call(operators::INDEX, vec![map, key])));
            }
            "getReqCookie" | "getResCookie" if global => {
                let name = name.to_owned();
                self.arity(&name, call, 1, id)?;
                let map = self.path(map_root, &[map_field]);
                let key = std::mem::take(&mut call.args[0]);
                let same_name = self.index(map, key);
                let first = self.node(Expr::Literal(LiteralValue::Int(CelInt::from(0))));
                return Ok(Some(self.call(operators::INDEX, vec![same_name, first])));
            }
            "hasReqHeader" | "hasQueryParam" | "hasResHeader" | "hasReqCookie" | "hasResCookie"
                if global =>
            {
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
                if let [Some(vault), Some(name)] =
                    [&call.args[0], &call.args[1]].map(string_literal)
                {
                    if !vault.contains('/') {
                        return Ok(Some(Expr::Ident(format!("{SECRET_PREFIX}{vault}/{name}"))));
                    }
                }
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
