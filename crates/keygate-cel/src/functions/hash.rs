//! `hash.{crc32, crc64, md5, sha1, sha256, sha512, xxhash64}(s [, 'hex'|'base64'])` and the
//! same as string (and bytes) methods: `s.sha256()`, `s.md5('base64')`.

use base64::Engine as _;
use cel::common::types::{CelString, STRING_TYPE};
use cel::common::value::CowVal;
use cel::{DeclarationError, Env, ExecutionError};
use sha2::Digest as _;

use super::{bytes_arg, global_and_member, str_arg, TEXT_TYPES};

/// The algorithms, in the order of the `ALGO` const parameter of [`hash`].
const ALGORITHMS: [&str; 7] = [
    "crc32", "crc64", "md5", "sha1", "sha256", "sha512", "xxhash64",
];

const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_GO_ISO);

fn digest(algo: usize, data: &[u8]) -> Vec<u8> {
    match algo {
        0 => crc32fast::hash(data).to_be_bytes().to_vec(),
        1 => CRC64.checksum(data).to_be_bytes().to_vec(),
        2 => md5::Md5::digest(data).to_vec(),
        3 => sha1::Sha1::digest(data).to_vec(),
        4 => sha2::Sha256::digest(data).to_vec(),
        5 => sha2::Sha512::digest(data).to_vec(),
        _ => xxhash_rust::xxh64::xxh64(data, 0).to_be_bytes().to_vec(),
    }
}

/// `hash.<ALGO>(data[, encoding])`, receiver first for the member form.
fn hash<'b, 'v, const ALGO: usize>(
    args: Vec<CowVal<'b, 'v>>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let name = ALGORITHMS[ALGO];
    let (data, encoding) = match args.as_slice() {
        [data] => (bytes_arg(name, data.as_ref())?, "hex"),
        [data, encoding] => (
            bytes_arg(name, data.as_ref())?,
            str_arg(name, encoding.as_ref())?,
        ),
        _ => return Err(ExecutionError::invalid_argument_count(1, args.len())),
    };
    let raw = digest(ALGO, data);
    let text = match encoding {
        "hex" => hex::encode(raw),
        "base64" => base64::engine::general_purpose::STANDARD.encode(raw),
        other => {
            return Err(ExecutionError::function_error(
                name,
                format!("unknown encoding '{other}': use 'hex' or 'base64'"),
            ))
        }
    };
    Ok(CowVal::owned(CelString::from(text)))
}

fn register_one(
    env: &mut Env,
    algo: &str,
    op: cel::common::functions::Function,
) -> Result<(), DeclarationError> {
    let global = format!("hash.{algo}");
    for data in TEXT_TYPES {
        global_and_member(env, &global, algo, &[data.to_owned()], op)?;
        global_and_member(env, &global, algo, &[data, STRING_TYPE], op)?;
    }
    Ok(())
}

pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    register_one(env, ALGORITHMS[0], hash::<0>)?;
    register_one(env, ALGORITHMS[1], hash::<1>)?;
    register_one(env, ALGORITHMS[2], hash::<2>)?;
    register_one(env, ALGORITHMS[3], hash::<3>)?;
    register_one(env, ALGORITHMS[4], hash::<4>)?;
    register_one(env, ALGORITHMS[5], hash::<5>)?;
    register_one(env, ALGORITHMS[6], hash::<6>)?;
    Ok(())
}
