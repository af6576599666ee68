//! ngrok's random macros: `rand.double()` in `[0, 1)` and `rand.int([min, max])`, an int in
//! `[min, max]` (default `[0, 1]`), for sampling and A/B splits.

use cel::common::types::{CelDouble, CelInt, INT_TYPE};
use cel::common::value::CowVal;
use cel::{DeclarationError, Env, ExecutionError};
use rand::Rng;

fn double<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    if !args.is_empty() {
        return Err(ExecutionError::invalid_argument_count(0, args.len()));
    }
    Ok(CowVal::owned(CelDouble::from(rand::rng().random::<f64>())))
}

fn int<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (min, max) = match args.as_slice() {
        [] => (0, 1),
        [min, max] => (int_arg(min)?, int_arg(max)?),
        _ => return Err(ExecutionError::invalid_argument_count(2, args.len())),
    };
    // ngrok documents non-negative bounds only; a reversed range has no value to pick.
    if min < 0 || min > max {
        return Err(ExecutionError::function_error(
            "rand.int",
            format!("needs 0 <= min <= max, got min {min} and max {max}"),
        ));
    }
    Ok(CowVal::owned(CelInt::from(
        rand::rng().random_range(min..=max),
    )))
}

fn int_arg(v: &CowVal<'_, '_>) -> Result<i64, ExecutionError> {
    v.as_ref()
        .downcast_ref::<CelInt>()
        .map(|i| *i.inner())
        .ok_or_else(|| {
            ExecutionError::function_error(
                "rand.int",
                format!("expected int, got {}", v.as_ref().get_type().name()),
            )
        })
}

pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_overload("rand.double", "rand.double()", vec![], double)?;
    env.add_overload("rand.int", "rand.int()", vec![], int)?;
    env.add_overload(
        "rand.int",
        "rand.int(int,int)",
        vec![INT_TYPE, INT_TYPE],
        int,
    )?;
    Ok(())
}
