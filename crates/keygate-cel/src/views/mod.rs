//! Lazy CEL views over the borrowed request and response: header and query maps that look
//! names up case-insensitively, the string lists they yield, the parsed cookies and user agent.

pub(crate) mod cookies;
mod headers;
mod iter;
mod list;
mod query;
pub(crate) mod request;
pub(crate) mod user_agent;

pub(crate) use headers::Headers;
pub(crate) use list::StrList;
pub(crate) use query::QueryParams;

use cel::common::types::{CelInt, CelString, CelUInt};
use cel::common::value::Val;
use cel::ExecutionError;

/// The string key of a map lookup, or the error the interpreter reports as "no such overload".
fn string_key(idx: &dyn Val) -> Result<&str, ExecutionError> {
    idx.downcast_ref::<CelString>()
        .map(CelString::inner)
        .ok_or_else(|| ExecutionError::UnexpectedType {
            got: idx.get_type().name().to_owned(),
            want: "string".to_owned(),
        })
}

/// The position of a list lookup: an `int` or `uint`.
fn list_index(idx: &dyn Val) -> Result<i64, ExecutionError> {
    if let Some(i) = idx.downcast_ref::<CelInt>() {
        return Ok(*i.inner());
    }
    if let Some(u) = idx.downcast_ref::<CelUInt>() {
        return i64::try_from(*u.inner())
            .map_err(|_| ExecutionError::IndexOutOfBounds((*u.inner()).into()));
    }
    Err(ExecutionError::UnexpectedType {
        got: idx.get_type().name().to_owned(),
        want: "int".to_owned(),
    })
}
