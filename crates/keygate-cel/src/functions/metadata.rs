//! `m.getMetadata('a.b')`: ngrok's lookup into an AI model's `metadata` by a dotted path, for
//! `model_selection` strategies. A missing part gives `null` rather than an error, so a
//! strategy such as `ai.models.filter(m, m.getMetadata('region') == 'eu')` runs over models
//! that carry no such metadata.

use cel::common::types::{CelNull, CelString, DYN_TYPE, STRING_TYPE};
use cel::common::value::{CowVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

use super::str_arg;

fn get_metadata<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [model, path] = args.as_slice() else {
        return Err(ExecutionError::invalid_argument_count(2, args.len()));
    };
    let path = str_arg("getMetadata", path.as_ref())?;
    let mut current: Box<dyn Val + 'v> = model.as_ref().clone_as_boxed();
    for key in std::iter::once("metadata").chain(path.split('.')) {
        let Some(indexer) = current.as_indexer() else {
            return Ok(CowVal::owned(CelNull));
        };
        match indexer.get(&CelString::from(key)) {
            Ok(value) => current = value.into_owned(),
            Err(ExecutionError::NoSuchKey(_)) => return Ok(CowVal::owned(CelNull)),
            Err(err) => return Err(err),
        }
    }
    Ok(CowVal::Owned(current))
}

pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_member_overload(
        "getMetadata",
        "dyn.getMetadata(string)",
        DYN_TYPE,
        vec![STRING_TYPE],
        get_metadata,
    )
}
