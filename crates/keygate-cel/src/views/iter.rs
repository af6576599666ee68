//! A lending iterator over a slice of CEL values.

use cel::common::traits;
use cel::common::value::Val;

/// Iterates a slice of values, lending each as `&dyn Val`.
pub(crate) struct SliceIter<'b, T>(pub(crate) std::slice::Iter<'b, T>);

impl<'b, 'v, T: Val + 'v> traits::Iterator<'b, 'v> for SliceIter<'b, T> {
    fn next(&mut self) -> Option<&'b (dyn Val + 'v)> {
        self.0.next().map(|v| v as &dyn Val)
    }
}
