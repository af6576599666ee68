//! `Headers`: a lazy `map(string, list(string))` over a borrowed `http::HeaderMap`.

use std::sync::OnceLock;

use cel::common::traits::{Container, Indexer, Iterable, Sizer};
use cel::common::types::{CelInt, CelString, Type, MAP_TYPE};
use cel::common::value::{CowVal, Val};
use cel::ExecutionError;
use http::HeaderMap;

use super::iter::SliceIter;
use super::{string_key, StrList};

static MAP: Type = MAP_TYPE;

/// `req.headers` / `res.headers`: names are looked up case-insensitively, a missing header is
/// an empty [`StrList`]. Nothing is copied until a header is read; only iterating the map
/// (e.g. `req.headers.exists(...)`) lists the names, once.
#[derive(Debug)]
pub(crate) struct Headers<'a> {
    map: &'a HeaderMap,
    names: OnceLock<Vec<CelString<'a>>>,
}

impl<'a> Headers<'a> {
    pub(crate) fn new(map: &'a HeaderMap) -> Self {
        Self {
            map,
            names: OnceLock::new(),
        }
    }

    /// The values of header `name` (any case); invalid names have none.
    pub(crate) fn values(&self, name: &str) -> StrList<'a> {
        StrList::new(
            self.map
                .get_all(name)
                .iter()
                .map(|value| match value.to_str() {
                    Ok(text) => CelString::from(text),
                    Err(_) => {
                        CelString::from(String::from_utf8_lossy(value.as_bytes()).into_owned())
                    }
                })
                .collect(),
        )
    }
}

impl Clone for Headers<'_> {
    fn clone(&self) -> Self {
        Self::new(self.map)
    }
}

impl Indexer for Headers<'_> {
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

impl Container for Headers<'_> {
    fn contains(&self, value: &dyn Val) -> Result<bool, ExecutionError> {
        Ok(value
            .downcast_ref::<CelString>()
            .is_some_and(|name| self.map.contains_key(name.inner())))
    }
}

impl Sizer for Headers<'_> {
    fn size(&self) -> CelInt {
        CelInt::from(i64::try_from(self.map.keys_len()).unwrap_or(i64::MAX))
    }
}

impl Iterable for Headers<'_> {
    fn iter<'b, 'v>(&'b self) -> Box<dyn cel::common::traits::Iterator<'b, 'v> + 'b>
    where
        Self: 'v,
    {
        let names = self.names.get_or_init(|| {
            self.map
                .keys()
                .map(|k| CelString::from(k.as_str()))
                .collect()
        });
        Box::new(SliceIter(names.iter()))
    }
}

indexed_val! {
    Headers<'_>, MAP;
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
