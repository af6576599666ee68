//! The values that cross the API: statement parameters ([`Param`]) and result rows ([`Row`]), the same on
//! both backends. Columns are of four kinds only: integers (SQLite `INTEGER`, PostgreSQL `BIGINT`), reals
//! (`REAL` / `DOUBLE PRECISION`), text (`TEXT`) and bytes (`BLOB` / `BYTEA`); booleans are integers 0/1.

use crate::error::{Error, Result};

/// One statement parameter, borrowed from the caller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Param<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// A Rust value usable as a statement parameter: `tx.execute("... $1, $2", &[&id, &count])`.
pub trait ToParam {
    fn to_param(&self) -> Param<'_>;
}

impl ToParam for str {
    fn to_param(&self) -> Param<'_> {
        Param::Text(self)
    }
}

impl ToParam for String {
    fn to_param(&self) -> Param<'_> {
        Param::Text(self)
    }
}

impl ToParam for [u8] {
    fn to_param(&self) -> Param<'_> {
        Param::Blob(self)
    }
}

impl ToParam for Vec<u8> {
    fn to_param(&self) -> Param<'_> {
        Param::Blob(self)
    }
}

impl ToParam for i64 {
    fn to_param(&self) -> Param<'_> {
        Param::Integer(*self)
    }
}

impl ToParam for i32 {
    fn to_param(&self) -> Param<'_> {
        Param::Integer(i64::from(*self))
    }
}

impl ToParam for u32 {
    fn to_param(&self) -> Param<'_> {
        Param::Integer(i64::from(*self))
    }
}

impl ToParam for f64 {
    fn to_param(&self) -> Param<'_> {
        Param::Real(*self)
    }
}

impl ToParam for bool {
    fn to_param(&self) -> Param<'_> {
        Param::Integer(i64::from(*self))
    }
}

impl<T: ToParam + ?Sized> ToParam for &T {
    fn to_param(&self) -> Param<'_> {
        (**self).to_param()
    }
}

impl<T: ToParam> ToParam for Option<T> {
    fn to_param(&self) -> Param<'_> {
        self.as_ref().map_or(Param::Null, ToParam::to_param)
    }
}

/// One column value of a result row, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Integer(_) => "an integer",
            Value::Real(_) => "a real",
            Value::Text(_) => "text",
            Value::Blob(_) => "bytes",
        }
    }
}

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub(crate) Vec<Value>);

impl Row {
    /// Column `index` (from 0) as `T`; [`Error::Column`] when it holds another kind of value.
    pub fn get<T: FromValue>(&self, index: usize) -> Result<T> {
        let value = self.0.get(index).ok_or(Error::Column {
            index,
            expected: T::EXPECTED,
            found: "no such column",
        })?;
        T::from_value(value).ok_or_else(|| Error::Column {
            index,
            expected: T::EXPECTED,
            found: value.kind(),
        })
    }

    /// How many columns the row has.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the row has no column.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A Rust type a column can be read as ([`Row::get`]).
pub trait FromValue: Sized {
    /// What the type reads, for [`Error::Column`].
    const EXPECTED: &'static str;
    fn from_value(value: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    const EXPECTED: &'static str = "an integer";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Integer(v) => Some(*v),
            _ => None,
        }
    }
}

impl FromValue for u64 {
    const EXPECTED: &'static str = "a non-negative integer";
    fn from_value(value: &Value) -> Option<Self> {
        i64::from_value(value).and_then(|v| u64::try_from(v).ok())
    }
}

impl FromValue for bool {
    const EXPECTED: &'static str = "a boolean (0 or 1)";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Integer(0) => Some(false),
            Value::Integer(1) => Some(true),
            _ => None,
        }
    }
}

impl FromValue for f64 {
    const EXPECTED: &'static str = "a real";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Real(v) => Some(*v),
            // SQLite stores a whole REAL as an integer when the column has no REAL affinity.
            Value::Integer(v) => Some(*v as f64),
            _ => None,
        }
    }
}

impl FromValue for String {
    const EXPECTED: &'static str = "text";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Text(v) => Some(v.clone()),
            _ => None,
        }
    }
}

impl FromValue for Vec<u8> {
    const EXPECTED: &'static str = "bytes";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Blob(v) => Some(v.clone()),
            _ => None,
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    const EXPECTED: &'static str = T::EXPECTED;
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Null => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_read_as_their_kind_and_name_a_mismatch() {
        let row = Row(vec![
            Value::Integer(-3),
            Value::Text("a".into()),
            Value::Null,
            Value::Integer(1),
        ]);
        assert_eq!(row.get::<i64>(0).unwrap(), -3);
        assert_eq!(row.get::<String>(1).unwrap(), "a");
        assert_eq!(row.get::<Option<String>>(2).unwrap(), None);
        assert!(row.get::<bool>(3).unwrap());
        let err = row.get::<u64>(0).unwrap_err().to_string();
        assert_eq!(
            err,
            "column 0: expected a non-negative integer, found an integer"
        );
        let err = row.get::<Vec<u8>>(1).unwrap_err().to_string();
        assert_eq!(err, "column 1: expected bytes, found text");
        assert!(row.get::<i64>(9).is_err());
    }

    #[test]
    fn parameters_borrow_their_values() {
        let name = String::from("n");
        let none: Option<i64> = None;
        assert_eq!(name.to_param(), Param::Text("n"));
        assert_eq!((&&name).to_param(), Param::Text("n"));
        assert_eq!(none.to_param(), Param::Null);
        assert_eq!(Some(4i64).to_param(), Param::Integer(4));
        assert_eq!(true.to_param(), Param::Integer(1));
        assert_eq!(vec![1u8].to_param(), Param::Blob(&[1]));
    }
}
