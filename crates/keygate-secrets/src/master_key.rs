//! The master key: 32 random bytes, kept as base64 in a 0600 file or passed in `KEYGATE_MASTER_KEY`.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::error::{Result, StoreError};

/// Length of the master key in bytes (AES-256).
pub const MASTER_KEY_LEN: usize = 32;
/// File name of the default key file inside the data directory.
pub const DEFAULT_KEY_FILE: &str = "master.key";
/// Environment variable that may carry the base64 key itself.
pub const MASTER_KEY_ENV: &str = "KEYGATE_MASTER_KEY";

/// Standard base64 alphabet; padding optional when decoding.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Largest key file we read: 44 base64 characters plus generous whitespace.
const MAX_KEY_FILE_BYTES: u64 = 256;

/// The 32-byte master key. Zeroized on drop; its `Debug` output is redacted.
pub struct MasterKey(Zeroizing<[u8; MASTER_KEY_LEN]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

impl MasterKey {
    /// A new key from the OS CSPRNG.
    pub(crate) fn generate() -> Result<Self> {
        let mut key = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        getrandom::fill(key.as_mut())?;
        Ok(Self(key))
    }

    /// Decodes base64 text (surrounding whitespace ignored); `origin` names where it came from for errors.
    pub fn from_base64(text: &str, origin: &str) -> Result<Self> {
        let malformed = || StoreError::MalformedMasterKey(origin.to_owned());
        let decoded = Zeroizing::new(LENIENT.decode(text.trim()).map_err(|_| malformed())?);
        let bytes: &[u8; MASTER_KEY_LEN] =
            decoded.as_slice().try_into().map_err(|_| malformed())?;
        Ok(Self(Zeroizing::new(*bytes)))
    }

    /// The raw key bytes.
    pub(crate) fn bytes(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.0
    }

    /// A 256-bit key for one purpose, derived with HKDF-SHA-256 (`context` is the HKDF info string), so no
    /// use of a derived key can reveal the master key or another derived key.
    pub(crate) fn derive(&self, context: &str) -> Zeroizing<[u8; MASTER_KEY_LEN]> {
        let mut out = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        hkdf::Hkdf::<sha2::Sha256>::new(None, self.0.as_ref())
            .expand(context.as_bytes(), out.as_mut())
            .expect("32 bytes is a valid HKDF-SHA-256 output length");
        out
    }

    fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.0.as_ref()))
    }
}

/// Where the master key comes from.
#[derive(Debug)]
pub enum MasterKeySource {
    /// The base64 key itself (the value of `KEYGATE_MASTER_KEY`). Never written to disk.
    Inline(SecretString),
    /// A key file, created (mode 0600) on first use when absent.
    File(PathBuf),
    /// `DATA_DIR/master.key`, created (mode 0600) on first use when absent.
    DefaultFile,
}

impl MasterKeySource {
    /// Chooses between an inline key and a key file; giving both is an error, giving neither means the default
    /// file.
    pub fn select(inline: Option<SecretString>, file: Option<PathBuf>) -> Result<Self> {
        match (inline, file) {
            (Some(_), Some(_)) => Err(StoreError::AmbiguousMasterKey),
            (Some(key), None) => Ok(Self::Inline(key)),
            (None, Some(path)) => Ok(Self::File(path)),
            (None, None) => Ok(Self::DefaultFile),
        }
    }

    /// [`MasterKeySource::select`] with the inline key read from `KEYGATE_MASTER_KEY` (ignored when empty).
    pub fn from_env(file: Option<PathBuf>) -> Result<Self> {
        let inline = std::env::var(MASTER_KEY_ENV)
            .ok()
            .map(|value| SecretString::from(Zeroizing::new(value).as_str()))
            .filter(|key| !key.expose_secret().is_empty());
        Self::select(inline, file)
    }

    /// Resolves the key. A missing key file is created only when `may_create` (the data directory holds no
    /// key check yet); otherwise it is an error, since a fresh key could never decrypt the existing data.
    pub(crate) fn resolve(&self, data_dir: &Path, may_create: bool) -> Result<MasterKey> {
        let path = match self {
            Self::Inline(text) => {
                return MasterKey::from_base64(text.expose_secret(), MASTER_KEY_ENV)
            }
            Self::File(path) => path.clone(),
            Self::DefaultFile => data_dir.join(DEFAULT_KEY_FILE),
        };
        match read_key_file(&path) {
            Err(StoreError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                if may_create {
                    create_key_file(&path)
                } else {
                    Err(StoreError::MasterKeyMissing {
                        file: path,
                        dir: data_dir.to_path_buf(),
                    })
                }
            }
            other => other,
        }
    }
}

fn read_key_file(path: &Path) -> Result<MasterKey> {
    let file =
        fs::File::open(path).map_err(|e| StoreError::io("cannot read master key file", path, e))?;
    let mut text = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_BYTES as usize + 1));
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| StoreError::io("cannot read master key file", path, e))?;
    let origin = path.display().to_string();
    if text.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(StoreError::MalformedMasterKey(origin));
    }
    let text =
        std::str::from_utf8(&text).map_err(|_| StoreError::MalformedMasterKey(origin.clone()))?;
    MasterKey::from_base64(text, &origin)
}

/// Writes a new key to a private temporary file, then hard-links it into place, which fails if another
/// process got there first; in that case the winner's key is read and used.
fn create_key_file(path: &Path) -> Result<MasterKey> {
    let key = MasterKey::generate()?;
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| DEFAULT_KEY_FILE.to_owned());
    let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", u64::from_le_bytes(suffix)));
    let written = write_private(&tmp, &key);
    let linked = written.and_then(|()| {
        fs::hard_link(&tmp, path)
            .map_err(|e| StoreError::io("cannot create master key file", path, e))
    });
    // Best effort: the temporary file holds the key, so never leave it behind.
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(key),
        Err(StoreError::Io { source, .. }) if source.kind() == ErrorKind::AlreadyExists => {
            read_key_file(path)
        }
        Err(err) => Err(err),
    }
}

fn write_private(path: &Path, key: &MasterKey) -> Result<()> {
    let err = |e| StoreError::io("cannot create master key file", path, e);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    let mut line = key.to_base64();
    line.push('\n');
    file.write_all(line.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(tag: &str) -> TempDir {
        let dir = TempDir::new(tag);
        fs::create_dir_all(dir.path()).unwrap();
        dir
    }

    #[test]
    fn key_file_is_created_0600_and_read_back() {
        let dir = temp_dir("mk-create");
        let source = MasterKeySource::DefaultFile;
        let first = source.resolve(dir.path(), true).unwrap();
        let path = dir.path().join(DEFAULT_KEY_FILE);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = source.resolve(dir.path(), false).unwrap();
        assert_eq!(first.bytes(), second.bytes());
        // Only the key file remains: no temporary file with the key is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn racing_creators_all_end_up_with_the_same_key() {
        let dir = temp_dir("mk-race");
        let path = dir.path().join("racy.key");
        let keys: Vec<[u8; MASTER_KEY_LEN]> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let source = MasterKeySource::File(path.clone());
                    scope.spawn(move || *source.resolve(Path::new("."), true).unwrap().bytes())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| k == &keys[0]));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn missing_file_is_an_error_when_creation_is_not_allowed() {
        let dir = temp_dir("mk-missing");
        let err = MasterKeySource::DefaultFile
            .resolve(dir.path(), false)
            .unwrap_err();
        assert!(matches!(err, StoreError::MasterKeyMissing { .. }), "{err}");
    }

    #[test]
    fn inline_keys_must_be_32_bytes_of_base64() {
        let good = STANDARD.encode([7u8; 32]);
        let key = MasterKeySource::Inline(SecretString::from(good.as_str()))
            .resolve(Path::new("."), false);
        assert_eq!(key.unwrap().bytes(), &[7u8; 32]);
        let unpadded = good.trim_end_matches('=');
        assert!(MasterKey::from_base64(unpadded, "test").is_ok());
        for bad in ["", "not base64!", &STANDARD.encode([1u8; 16])] {
            let err = MasterKey::from_base64(bad, "KEYGATE_MASTER_KEY").unwrap_err();
            assert_eq!(
                err.to_string(),
                "invalid master key in KEYGATE_MASTER_KEY: expected 32 bytes encoded as base64"
            );
        }
    }

    #[test]
    fn derived_keys_depend_on_key_and_context() {
        let key = MasterKey::generate().unwrap();
        let other = MasterKey::generate().unwrap();
        assert_eq!(*key.derive("a"), *key.derive("a"));
        assert_ne!(*key.derive("a"), *key.derive("b"));
        assert_ne!(*key.derive("a"), *other.derive("a"));
        assert_ne!(&*key.derive("a"), key.bytes());
    }

    #[test]
    fn both_sources_at_once_is_refused() {
        let err = MasterKeySource::select(Some(SecretString::from("k")), Some(PathBuf::from("f")))
            .unwrap_err();
        assert!(matches!(err, StoreError::AmbiguousMasterKey));
        assert!(format!("{:?}", MasterKey::generate().unwrap()).contains("REDACTED"));
    }
}
