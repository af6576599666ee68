//! `StrList`: the values of one header or query parameter, as a CEL `list(string)`.

use cel::common::traits::{Container, Indexer, Iterable, Sizer};
use cel::common::types::{CelInt, CelString, Type, LIST_TYPE};
use cel::common::value::{CowVal, Val};
use cel::ExecutionError;

use super::iter::SliceIter;
use super::list_index;
use crate::functions::compare::ct_str_eq;

static LIST: Type = LIST_TYPE;

/// The values of a header (or query parameter), borrowed from the request where they are
/// valid UTF-8. Reading past the end yields `''`, so `req.headers['x'][0]` of a missing header is
/// the empty string rather than an error.
#[derive(Debug, Clone, Default)]
pub(crate) struct StrList<'a> {
    items: Vec<CelString<'a>>,
}

impl<'a> StrList<'a> {
    pub(crate) fn new(items: Vec<CelString<'a>>) -> Self {
        Self { items }
    }
}

impl Indexer for StrList<'_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let i = list_index(idx)?;
        let Ok(pos) = usize::try_from(i) else {
            return Err(ExecutionError::IndexOutOfBounds(i.into()));
        };
        Ok(match self.items.get(pos) {
            Some(item) => CowVal::Borrowed(item),
            None => CowVal::owned(CelString::from("")),
        })
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

impl Iterable for StrList<'_> {
    fn iter<'b, 'v>(&'b self) -> Box<dyn cel::common::traits::Iterator<'b, 'v> + 'b>
    where
        Self: 'v,
    {
        Box::new(SliceIter(self.items.iter()))
    }
}

impl Sizer for StrList<'_> {
    fn size(&self) -> CelInt {
        CelInt::from(i64::try_from(self.items.len()).unwrap_or(i64::MAX))
    }
}

impl Container for StrList<'_> {
    fn contains(&self, value: &dyn Val) -> Result<bool, ExecutionError> {
        let Some(needle) = value.downcast_ref::<CelString>() else {
            return Ok(false);
        };
        // Every element is compared, in constant time each: no early exit on a match.
        Ok(self.items.iter().fold(false, |found, item| {
            found | ct_str_eq(item.inner(), needle.inner())
        }))
    }
}

indexed_val! {
    StrList<'_>, LIST;
    fn as_iterable<'b, 'v>(&'b self) -> Option<&'b (dyn Iterable + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }
    fn as_sizer(&self) -> Option<&dyn Sizer> {
        Some(self)
    }
    fn as_container(&self) -> Option<&dyn Container> {
        Some(self)
    }
    fn equals(&self, other: &dyn Val) -> bool {
        crate::functions::compare::list_equals(self, other)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(self.clone())
    }
}
