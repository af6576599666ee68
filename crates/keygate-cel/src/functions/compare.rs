//! `==`, `!=` and `in`, rewritten at compile time to these functions so that every string
//! comparison runs in constant time (secrets are strings like any other, and a value derived
//! from one may sit on either side), and so that the lazy request views compare equal to
//! built-in values from either side.

use cel::common::types::{CelBool, CelString, Kind};
use cel::common::value::{CowVal, Val};
use cel::ExecutionError;
use subtle::ConstantTimeEq;

/// Constant-time string equality (only the lengths may leak).
pub(crate) fn ct_str_eq(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// CEL equality, constant-time for strings and symmetric for the lazy views.
pub(crate) fn values_equal(a: &dyn Val, b: &dyn Val) -> bool {
    if let (Some(a), Some(b)) = (a.downcast_ref::<CelString>(), b.downcast_ref::<CelString>()) {
        return ct_str_eq(a.inner(), b.inner());
    }
    if a.get_type().kind() == Kind::List && b.get_type().kind() == Kind::List {
        return list_equals(a, b);
    }
    a.equals(b) || b.equals(a)
}

/// Element-wise equality of two lists, for the custom list types.
pub(crate) fn list_equals(this: &dyn Val, other: &dyn Val) -> bool {
    if other.get_type().kind() != Kind::List {
        return false;
    }
    let (Some(left), Some(right)) = (this.as_iterable(), other.as_iterable()) else {
        return false;
    };
    let (mut left, mut right) = (left.iter(), right.iter());
    loop {
        match (left.next(), right.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if values_equal(a, b) => {}
            _ => return false,
        }
    }
}

fn two<'a, 'b, 'v>(
    args: &'a [CowVal<'b, 'v>],
) -> Result<(&'a (dyn Val + 'v), &'a (dyn Val + 'v)), ExecutionError> {
    match args {
        [a, b] => Ok((a.as_ref(), b.as_ref())),
        _ => Err(ExecutionError::invalid_argument_count(2, args.len())),
    }
}

static TRUE: CelBool = CelBool::TRUE;
static FALSE: CelBool = CelBool::FALSE;

/// A bool result borrowed from a static: no allocation.
fn boolean<'b, 'v>(value: bool) -> CowVal<'b, 'v> {
    CowVal::Borrowed(if value { &TRUE } else { &FALSE })
}

/// `a == b`.
pub(crate) fn eq<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (a, b) = two(&args)?;
    Ok(boolean(values_equal(a, b)))
}

/// `a != b`.
pub(crate) fn ne<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (a, b) = two(&args)?;
    Ok(boolean(!values_equal(a, b)))
}

/// `a in b`: for a list, every element is compared (no early exit); a map or view answers
/// for its keys.
pub(crate) fn contains<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (needle, haystack) = two(&args)?;
    if haystack.get_type().kind() == Kind::List {
        if let Some(items) = haystack.as_iterable() {
            let mut items = items.iter();
            let mut found = false;
            while let Some(item) = items.next() {
                found |= values_equal(needle, item);
            }
            return Ok(boolean(found));
        }
    }
    let container = haystack.as_container().ok_or_else(|| {
        ExecutionError::no_such_overload(
            "@in",
            vec![
                needle.get_type().name().to_owned(),
                haystack.get_type().name().to_owned(),
            ],
        )
    })?;
    container.contains(needle).map(boolean)
}
