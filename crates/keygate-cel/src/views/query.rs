//! `QueryParams`: `map(string, list(string))` over a request's query string.

use std::borrow::Cow;
use std::sync::OnceLock;

use cel::common::traits::{Container, Indexer, Iterable, Sizer};
use cel::common::types::{CelInt, CelString, Type, MAP_TYPE};
use cel::common::value::{CowVal, Val};
use cel::ExecutionError;

use super::iter::SliceIter;
use super::{string_key, StrList};

static MAP: Type = MAP_TYPE;

/// `req.url.query_params`: decoded `name=value` pairs, borrowed from the URI where no decoding
/// was needed. Names are looked up case-insensitively; a missing one is an empty list.
#[derive(Debug)]
pub(crate) struct QueryParams<'a> {
    pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    names: OnceLock<Vec<CelString<'a>>>,
}

impl<'a> QueryParams<'a> {
    pub(crate) fn parse(query: &'a str) -> Self {
        Self {
            pairs: url::form_urlencoded::parse(query.as_bytes()).collect(),
            names: OnceLock::new(),
        }
    }

    fn values(&self, name: &str) -> StrList<'a> {
        StrList::new(
            self.pairs
                .iter()
                .filter(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| CelString::from(value.clone()))
                .collect(),
        )
    }
}

impl Clone for QueryParams<'_> {
    fn clone(&self) -> Self {
        Self {
            pairs: self.pairs.clone(),
            names: OnceLock::new(),
        }
    }
}

impl Indexer for QueryParams<'_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        Ok(CowVal::owned(self.values(string_key(idx)?)))
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

impl Container for QueryParams<'_> {
    fn contains(&self, value: &dyn Val) -> Result<bool, ExecutionError> {
        Ok(value.downcast_ref::<CelString>().is_some_and(|name| {
            self.pairs
                .iter()
                .any(|(key, _)| key.eq_ignore_ascii_case(name.inner()))
        }))
    }
}

impl QueryParams<'_> {
    fn distinct_names(&self) -> Vec<CelString<'_>> {
        let mut names: Vec<&str> = Vec::new();
        for (key, _) in &self.pairs {
            if !names.iter().any(|n| n.eq_ignore_ascii_case(key)) {
                names.push(key);
            }
        }
        names.into_iter().map(CelString::from).collect()
    }
}

impl Sizer for QueryParams<'_> {
    fn size(&self) -> CelInt {
        CelInt::from(i64::try_from(self.distinct_names().len()).unwrap_or(i64::MAX))
    }
}

impl Iterable for QueryParams<'_> {
    fn iter<'b, 'v>(&'b self) -> Box<dyn cel::common::traits::Iterator<'b, 'v> + 'b>
    where
        Self: 'v,
    {
        let names = self.names.get_or_init(|| {
            self.distinct_names()
                .into_iter()
                .map(|n| CelString::from(n.inner().to_owned()))
                .collect()
        });
        Box::new(SliceIter(names.iter()))
    }
}

indexed_val! {
    QueryParams<'_>, MAP;
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
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(self.clone())
    }
}
