//! Unicode case mapping: `s.lower()`, `s.upper()` (the strings extension only has the ASCII
//! `lowerAscii`/`upperAscii`).

use cel::common::types::{CelString, STRING_TYPE};
use cel::common::value::CowVal;
use cel::{DeclarationError, Env, ExecutionError};

use super::str_arg;

fn lower<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [text] = args.as_slice() else {
        return Err(ExecutionError::invalid_argument_count(1, args.len()));
    };
    let text = str_arg("lower", text.as_ref())?;
    Ok(CowVal::owned(CelString::from(text.to_lowercase())))
}

fn upper<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [text] = args.as_slice() else {
        return Err(ExecutionError::invalid_argument_count(1, args.len()));
    };
    let text = str_arg("upper", text.as_ref())?;
    Ok(CowVal::owned(CelString::from(text.to_uppercase())))
}

pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_member_overload("lower", "string.lower()", STRING_TYPE, vec![], lower)?;
    env.add_member_overload("upper", "string.upper()", STRING_TYPE, vec![], upper)?;
    Ok(())
}
