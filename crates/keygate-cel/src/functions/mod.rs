//! Keygate's functions on top of the CEL standard library: ngrok's macro functions (hashes,
//! encoders, CIDR checks, JSON, URL), the strings and lists extensions, and the internal
//! targets of the compile-time rewrites (`@kg_eq`, `@kg_ne`, `@kg_in`, `@kg_matches`).

mod codec;
pub(crate) mod compare;
mod hash;
mod json;
mod metadata;
mod net;
mod random;
pub(crate) mod regex;
mod text;

use cel::common::types::{CelBytes, CelString, Type, BYTES_TYPE, DYN_TYPE, STRING_TYPE};
use cel::common::value::{CowVal, Val};
use cel::{extensions, DeclarationError, Env, ExecutionError};

/// Internal function names the rewrite produces. `@` cannot start an identifier in CEL
/// source, so no expression can call them directly.
pub(crate) const EQ: &str = "@kg_eq";
pub(crate) const NE: &str = "@kg_ne";
pub(crate) const IN: &str = "@kg_in";
pub(crate) const MATCHES: &str = "@kg_matches";

/// The single argument of a one-argument function (or the receiver of a method).
pub(crate) fn one<'a, 'b, 'v>(
    args: &'a [CowVal<'b, 'v>],
) -> Result<&'a (dyn Val + 'v), ExecutionError> {
    match args {
        [a] => Ok(a.as_ref()),
        _ => Err(ExecutionError::invalid_argument_count(1, args.len())),
    }
}

/// `v` as a string, or an error naming `function`.
pub(crate) fn str_arg<'a>(function: &str, v: &'a dyn Val) -> Result<&'a str, ExecutionError> {
    v.downcast_ref::<CelString>()
        .map(CelString::inner)
        .ok_or_else(|| wrong_type(function, "string", v))
}

/// `v` as bytes: a `bytes` value, or a string's UTF-8.
pub(crate) fn bytes_arg<'a>(function: &str, v: &'a dyn Val) -> Result<&'a [u8], ExecutionError> {
    if let Some(s) = v.downcast_ref::<CelString>() {
        return Ok(s.inner().as_bytes());
    }
    v.downcast_ref::<CelBytes>()
        .map(CelBytes::inner)
        .ok_or_else(|| wrong_type(function, "string or bytes", v))
}

fn wrong_type(function: &str, want: &str, got: &dyn Val) -> ExecutionError {
    ExecutionError::function_error(
        function,
        format!("expected {want}, got {}", got.get_type().name()),
    )
}

/// Builds the environment every expression is compiled and evaluated with.
pub(crate) fn environment() -> Result<Env, DeclarationError> {
    let mut env = Env::stdlib();
    env.add_extension(extensions::strings)?;
    env.add_extension(extensions::lists)?;
    env.add_overload(EQ, "kg_eq", vec![DYN_TYPE, DYN_TYPE], compare::eq)?;
    env.add_overload(NE, "kg_ne", vec![DYN_TYPE, DYN_TYPE], compare::ne)?;
    env.add_overload(IN, "kg_in", vec![DYN_TYPE, DYN_TYPE], compare::contains)?;
    env.add_overload(
        MATCHES,
        "kg_matches",
        vec![STRING_TYPE, DYN_TYPE],
        regex::matches,
    )?;
    hash::register(&mut env)?;
    codec::register(&mut env)?;
    json::register(&mut env)?;
    metadata::register(&mut env)?;
    net::register(&mut env)?;
    random::register(&mut env)?;
    text::register(&mut env)?;
    Ok(env)
}

/// Declares `name` both as `name(args..)` and as the member `target.name(rest..)`.
fn global_and_member(
    env: &mut Env,
    global: &str,
    member: &str,
    args: &[Type],
    op: cel::common::functions::Function,
) -> Result<(), DeclarationError> {
    let id: Vec<&str> = args.iter().map(Type::name).collect();
    let id = id.join(",");
    env.add_overload(global, &format!("{global}({id})"), owned(args), op)?;
    if let Some((target, rest)) = args.split_first() {
        env.add_member_overload(
            member,
            &format!("{}.{member}({id})", target.name()),
            target.to_owned(),
            owned(rest),
            op,
        )?;
    }
    Ok(())
}

fn owned(types: &[Type]) -> Vec<Type> {
    types.iter().map(ToOwned::to_owned).collect()
}

/// The element types a function taking "string or bytes" is declared for.
const TEXT_TYPES: [Type; 2] = [STRING_TYPE, BYTES_TYPE];
