//! Helpers for unit tests here and in crates built on the store (feature `test-support`): unique temporary
//! data directories and fixed master keys.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use secrecy::SecretString;

use crate::master_key::MasterKeySource;

/// A temporary directory removed on drop (not created: a store creates its own data directory).
pub use keygate_test_support::TempDir;

/// An inline master key made of `byte` repeated.
pub fn inline_key(byte: u8) -> MasterKeySource {
    let text = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
    MasterKeySource::Inline(SecretString::from(text.as_str()))
}

/// Every byte of every file under `dir`.
pub fn all_file_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| {
            let path = entry.expect("entry").path();
            let bytes = std::fs::read(&path).expect("read file");
            (path, bytes)
        })
        .collect()
}
