//! `json.encode/decode` and the methods `x.encodeJson()`, `s.decodeJson()`, `s.isJson()`.

use cel::common::types::{CelBool, CelString, DYN_TYPE, STRING_TYPE};
use cel::common::value::{CowVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

use super::{global_and_member, one, str_arg};
use crate::json::{from_json, to_json, val_to_value};

/// `json.encode(x) -> string`.
fn encode<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let value = val_to_value(one(&args)?)?;
    Ok(CowVal::owned(CelString::from(to_json(&value).to_string())))
}

/// `json.decode(s)`: maps, lists and scalars.
fn decode<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let text = str_arg("json.decode", one(&args)?)?;
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        ExecutionError::function_error(
            "json.decode",
            format!("invalid JSON at line {}, column {}", e.line(), e.column()),
        )
    })?;
    let value: Box<dyn Val> = from_json(&json).try_into()?;
    Ok(CowVal::Owned(value))
}

/// `s.isJson()`.
fn is_json<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let text = str_arg("isJson", one(&args)?)?;
    let valid = serde_json::from_str::<serde_json::Value>(text).is_ok();
    Ok(CowVal::owned(CelBool::from(valid)))
}

pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    global_and_member(env, "json.encode", "encodeJson", &[DYN_TYPE], encode)?;
    global_and_member(env, "json.decode", "decodeJson", &[STRING_TYPE], decode)?;
    env.add_member_overload("isJson", "string.isJson()", STRING_TYPE, vec![], is_json)?;
    Ok(())
}
