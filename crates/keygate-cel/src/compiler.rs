//! The compiler: one shared CEL environment, expressions parsed, checked and rewritten once,
//! and evaluation against a cheap per-call context.

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use cel::common::ast::{Expr, IdedExpr};
use cel::common::types::CelBool;
use cel::{Context, Env};
use secrecy::ExposeSecret;

use crate::error::{CompileError, EvalError};
use crate::functions::regex::RegexVal;
use crate::ip_intel::{self, IpIntel, Need};
use crate::json::val_to_value;
use crate::resolver::Resolver;
use crate::rewrite::SECRET_PREFIX;
use crate::shortcut::StringComparison;
use crate::template::{stringify, Template};
use crate::{backtick, check, guard, rewrite, Scope, Value};

/// Compiles expressions and templates against Keygate's CEL environment (built once, shared).
#[derive(Clone)]
pub struct Compiler {
    env: Arc<Env>,
    ip_intel: IpIntelSetup,
}

/// Where the IP-intelligence variables get their values.
#[derive(Clone, Default)]
struct IpIntelSetup {
    /// `None`: the variables read as empty values, and their names are recorded in `unanswered`.
    source: Option<Arc<dyn IpIntel>>,
    unanswered: Arc<Mutex<BTreeSet<String>>>,
}

impl Compiler {
    /// Builds the environment: the CEL standard library, the strings and lists extensions and
    /// Keygate's functions.
    pub fn new() -> Self {
        let env = crate::functions::environment().unwrap_or_else(|error| {
            panic!("keygate-cel environment declarations conflict: {error}")
        });
        Self {
            env: Arc::new(env),
            ip_intel: IpIntelSetup::default(),
        }
    }

    /// Answers the IP-intelligence variables (`conn.geo.*`, `conn.client_ip.as.number`, ...)
    /// from `source`. An expression reading a kind of fact `source` does not provide is then a
    /// compile error naming the variable and what provides it: a deny rule on
    /// `conn.geo.country_code` must not pass silently for want of a database.
    pub fn with_ip_intel(mut self, source: Arc<dyn IpIntel>) -> Self {
        self.ip_intel.source = Some(source);
        self
    }

    /// The source given to [`Compiler::with_ip_intel`].
    pub fn ip_intel(&self) -> Option<&Arc<dyn IpIntel>> {
        self.ip_intel.source.as_ref()
    }

    /// The IP-intelligence variables read by expressions this compiler compiled without a source
    /// (they evaluate to empty values), sorted, each with what would provide it (e.g. `a
    /// GeoIP2/GeoLite2 ASN database (--ip-intel-db FILE)`).
    pub fn ip_intel_without_source(&self) -> Vec<(String, &'static str)> {
        let Ok(names) = self.ip_intel.unanswered.lock() else {
            return Vec::new();
        };
        (names.iter())
            .filter_map(|name| Some((name.clone(), ip_intel::need_of(name)?.remedy())))
            .collect()
    }

    /// Checks the IP-intelligence variables a rewritten expression reads against the source, or
    /// records them when there is none.
    fn check_ip_intel(&self, ast: &mut IdedExpr, source: &str) -> Result<(), CompileError> {
        let mut reads = Vec::new();
        ip_intel_reads(ast, &mut reads);
        let Some(intel) = &self.ip_intel.source else {
            if let Ok(mut names) = self.ip_intel.unanswered.lock() {
                names.extend(reads.into_iter().map(|(name, _)| name));
            }
            return Ok(());
        };
        let provides = intel.provides();
        match reads.into_iter().find(|(_, need)| !need.met_by(provides)) {
            Some((name, need)) => Err(CompileError {
                offset: source.find(&name),
                message: format!("{name} needs {}, and none is loaded", need.remedy()),
            }),
            None => Ok(()),
        }
    }

    /// Compiles one CEL expression.
    pub fn expression(&self, source: &str) -> Result<Expression, CompileError> {
        self.compile(source, false)
    }

    /// Compiles a rule condition: like [`Compiler::expression`], and a result that is
    /// statically not a bool (a literal, arithmetic, a string variable) is a compile error.
    pub fn condition(&self, source: &str) -> Result<Expression, CompileError> {
        self.compile(source, true)
    }

    fn compile(&self, source: &str, condition: bool) -> Result<Expression, CompileError> {
        guard::check(source)?;
        let (ast, rewritten) = on_parse_stack(|| self.parse(source, condition))?;
        let variable = match &ast.expr {
            Expr::Ident(name) => Some(name.clone()),
            _ => None,
        };
        Ok(Expression {
            inner: Arc::new(Compiled {
                source: source.to_owned(),
                secret: variable
                    .as_deref()
                    .and_then(|name| name.strip_prefix(SECRET_PREFIX))
                    .and_then(|path| path.split_once('/'))
                    .map(|(vault, name)| (vault.to_owned(), name.to_owned())),
                variable,
                comparison: StringComparison::recognise(&ast),
                ast,
                regexes: rewritten.regexes,
                reads_secrets: rewritten.reads_secrets,
                env: Arc::clone(&self.env),
                ip_intel: self.ip_intel.source.clone(),
            }),
        })
    }

    /// Parses and rewrites `source`; the parser recurses deeply, see [`on_parse_stack`].
    fn parse(
        &self,
        source: &str,
        condition: bool,
    ) -> Result<(IdedExpr, rewrite::Rewritten), CompileError> {
        let quoted = backtick::replace(source);
        let text = quoted.as_ref().map_or(source, |(text, _)| text.as_str());
        let parsed = std::panic::catch_unwind(AssertUnwindSafe(|| {
            self.env.parser().parse_with_source_info(text)
        }))
        .map_err(|_| CompileError {
            message: "the expression could not be parsed".to_owned(),
            offset: None,
        })?;
        let (mut ast, info) = parsed.map_err(|errors| CompileError::from_parse(text, &errors))?;
        if let Some((_, quoted)) = &quoted {
            quoted.restore(&mut ast);
        }
        check::check(&ast, &info, text, condition)?;
        let rewritten = rewrite::rewrite(&mut ast, &info)?;
        self.check_ip_intel(&mut ast, text)?;
        Ok((ast, rewritten))
    }

    /// Compiles a config string that may contain `${...}` interpolations.
    pub fn template(&self, source: &str) -> Result<Template, CompileError> {
        Template::compile(self, source)
    }
}

impl Default for Compiler {
    fn default() -> Self {
        Self::new()
    }
}

/// The IP-intelligence variables in a rewritten expression (the rewrite collapses known paths
/// into one identifier), each with the kind of fact it reads.
fn ip_intel_reads(expr: &mut IdedExpr, out: &mut Vec<(String, Need)>) {
    if let Expr::Ident(name) = &expr.expr {
        if let Some(need) = ip_intel::need_of(name) {
            out.push((name.clone(), need));
        }
    }
    for child in rewrite::children(expr) {
        ip_intel_reads(child, out);
    }
}

/// Stack for parsing: the generated parser recurses about ten frames per nesting level.
const PARSE_STACK_SIZE: usize = 64 * 1024 * 1024;

/// Runs `parse` on a thread with a large stack (only touched pages are committed), so that
/// nesting up to the guard's limits parses on any caller's thread.
fn on_parse_stack<T: Send>(
    parse: impl FnOnce() -> Result<T, CompileError> + Send,
) -> Result<T, CompileError> {
    let failed = |what: &str| CompileError {
        message: format!("the expression could not be parsed ({what})"),
        offset: None,
    };
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("keygate-cel-parse".to_owned())
            .stack_size(PARSE_STACK_SIZE)
            .spawn_scoped(scope, parse)
            .map_err(|_| failed("no parser thread"))?
            .join()
            .map_err(|_| failed("parser failed"))?
    })
}

struct Compiled {
    source: String,
    /// The variable the whole (rewritten) expression is, e.g. `@req.headers/authorization` for
    /// `req.headers['authorization']` or `@secret/v/n` for `secrets.get('v', 'n')`: read from the
    /// resolver without running the interpreter.
    variable: Option<String>,
    /// `(vault, name)` when the whole expression is a `secrets.get` with literal names.
    secret: Option<(String, String)>,
    /// A string comparison evaluated without the interpreter (see [`crate::shortcut`]).
    comparison: Option<StringComparison>,
    ast: IdedExpr,
    regexes: Vec<RegexVal>,
    reads_secrets: bool,
    env: Arc<Env>,
    ip_intel: Option<Arc<dyn IpIntel>>,
}

/// A compiled CEL expression.
#[derive(Clone)]
pub struct Expression {
    inner: Arc<Compiled>,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expression")
            .field(&self.inner.source)
            .finish()
    }
}

impl Expression {
    /// The source text as written in the policy.
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// Whether the expression calls `secrets.get` (its result may then be secret-derived).
    pub fn reads_secrets(&self) -> bool {
        self.inner.reads_secrets
    }

    /// Whether the expression is a string comparison evaluated without the interpreter.
    #[cfg(test)]
    pub(crate) fn compares_strings_directly(&self) -> bool {
        self.inner.comparison.is_some()
    }

    /// How many regexes were compiled ahead of evaluation (literal `matches` patterns).
    pub fn precompiled_regexes(&self) -> usize {
        self.inner.regexes.len()
    }

    /// Evaluates and hands the raw CEL result to `f`, converting errors.
    fn run<T>(
        &self,
        scope: &Scope<'_>,
        f: impl FnOnce(&dyn cel::common::value::Val) -> Result<T, EvalError>,
    ) -> Result<T, EvalError> {
        let compiled = &*self.inner;
        if let Some(equal) = compiled.comparison.as_ref().and_then(|c| c.eval(scope)) {
            return f(&CelBool::from(equal));
        }
        let resolver = Resolver::new(scope, &compiled.regexes, compiled.ip_intel.as_deref());
        if let Some(value) = compiled
            .variable
            .as_deref()
            .and_then(|name| resolver.lookup(name))
        {
            return f(value.as_ref());
        }
        // Everything else, and a variable that is missing (the interpreter words the error).
        let mut context = Context::with_env(Arc::clone(&compiled.env));
        context.set_variable_resolver(&resolver);
        let outcome = match Value::resolve_val(&compiled.ast, &context) {
            Ok(value) => f(value.as_ref()),
            Err(error) => Err(resolver.eval_error(&error)),
        };
        outcome
    }

    /// Appends the value as a `${...}` reads inside a string (see [`stringify`]). A
    /// `secrets.get` with literal names is copied straight from the store, without a CEL value.
    pub(crate) fn render_into(&self, scope: &Scope<'_>, out: &mut String) -> Result<(), EvalError> {
        let secret = (self.inner.secret.as_ref())
            .and_then(|(vault, name)| scope.secrets.get(vault, name).ok());
        match secret {
            Some(secret) => out.push_str(secret.expose_secret()),
            // Everything else, and a secret that cannot be read (the evaluation words the error).
            None => out.push_str(&stringify(&self.eval(scope)?)),
        }
        Ok(())
    }

    /// Evaluates to an owned value.
    pub fn eval(&self, scope: &Scope<'_>) -> Result<Value, EvalError> {
        self.run(scope, |value| {
            val_to_value(value).map_err(|e| EvalError::from_execution(&e, true))
        })
    }

    /// Evaluates and requires a bool result.
    pub fn eval_bool(&self, scope: &Scope<'_>) -> Result<bool, EvalError> {
        self.run(scope, |value| {
            value
                .downcast_ref::<CelBool>()
                .map(|b| *b.inner())
                .ok_or_else(|| {
                    EvalError::new(format!(
                        "expression must evaluate to a bool, got {}",
                        value.get_type().name()
                    ))
                })
        })
    }
}
