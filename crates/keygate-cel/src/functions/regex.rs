//! `matches` without recompiling: literal patterns are compiled once when the expression is
//! compiled (the call is rewritten to `@kg_matches(s, @re[n])`), other patterns go through a
//! small bounded cache.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use cel::common::traits::Indexer;
use cel::common::types::{CelBool, Type};
use cel::common::value::{CowVal, StaticVal, Val};
use cel::ExecutionError;
use regex::Regex;

/// Most patterns compiled at run time that are kept; the cache is emptied when full.
const DYNAMIC_CACHE_SIZE: usize = 64;
/// Compiled-program size limit, so a pattern cannot use unbounded memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

static REGEX_TYPE: Type = Type::new_unspecified_type("keygate.regex");
static TABLE_TYPE: Type = Type::new_unspecified_type("keygate.regex_table");

/// Compiles `pattern` (RE2 syntax) with a size limit.
pub(crate) fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// A compiled regex as a CEL value.
#[derive(Debug, Clone)]
pub(crate) struct RegexVal(pub(crate) Arc<Regex>);

impl Val for RegexVal {
    fn get_type(&self) -> &Type {
        &REGEX_TYPE
    }
    fn cel_type() -> &'static Type {
        &REGEX_TYPE
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}
impl StaticVal for RegexVal {}

/// `@re`: the regexes of one expression, indexed by the rewrite's numbers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RegexTable<'a>(pub(crate) &'a [RegexVal]);

impl Indexer for RegexTable<'_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let slot = idx
            .downcast_ref::<cel::common::types::CelInt>()
            .and_then(|i| usize::try_from(*i.inner()).ok())
            .and_then(|i| self.0.get(i));
        match slot {
            Some(re) => Ok(CowVal::Borrowed(re)),
            None => Err(ExecutionError::InternalError(
                "unknown regex slot".to_owned(),
            )),
        }
    }
    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

indexed_val! {
    RegexTable<'_>, TABLE_TYPE;
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(*self)
    }
}

static DYNAMIC: Mutex<Option<HashMap<String, Arc<Regex>>>> = Mutex::new(None);

/// A pattern only known at run time, compiled once per distinct pattern (bounded cache).
fn dynamic(pattern: &str) -> Result<Arc<Regex>, ExecutionError> {
    let mut cache = DYNAMIC.lock().unwrap_or_else(PoisonError::into_inner);
    let cache = cache.get_or_insert_with(HashMap::new);
    if let Some(re) = cache.get(pattern) {
        return Ok(Arc::clone(re));
    }
    let re = Arc::new(compile(pattern).map_err(|e| ExecutionError::function_error("matches", e))?);
    if cache.len() >= DYNAMIC_CACHE_SIZE {
        cache.clear();
    }
    cache.insert(pattern.to_owned(), Arc::clone(&re));
    Ok(re)
}

/// `@kg_matches(string, regex | string)`.
pub(crate) fn matches<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [text, pattern] = args.as_slice() else {
        return Err(ExecutionError::invalid_argument_count(2, args.len()));
    };
    let text = super::str_arg("matches", text.as_ref())?;
    let found = if let Some(re) = pattern.downcast_ref::<RegexVal>() {
        re.0.is_match(text)
    } else {
        dynamic(super::str_arg("matches", pattern.as_ref())?)?.is_match(text)
    };
    Ok(CowVal::owned(CelBool::from(found)))
}

#[cfg(test)]
pub(crate) fn dynamic_cache_len() -> usize {
    DYNAMIC
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map_or(0, HashMap::len)
}
