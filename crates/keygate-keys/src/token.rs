//! Access tokens: generation, the redacted display form, and the keyed hash the store keeps instead.

use std::hash::{BuildHasherDefault, Hash, Hasher};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::SecretString;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::Result;

/// Every token starts with this.
pub const TOKEN_PREFIX: &str = "kg-";
/// Random bytes in a token. The display form shows 8 of its characters (48 bits), which leaves more than 256
/// bits unknown.
const TOKEN_RANDOM_BYTES: usize = 40;
/// Length of every token in bytes: the prefix and 54 base64url characters.
pub const TOKEN_LEN: usize = TOKEN_PREFIX.len() + (TOKEN_RANDOM_BYTES * 4).div_ceil(3);
/// HKDF context of the token hashing key.
const HASH_KEY_CONTEXT: &str = "keygate:access-key-token-hash:v1";

/// A new token from the OS CSPRNG.
pub(crate) fn generate() -> Result<SecretString> {
    let mut random = Zeroizing::new([0u8; TOKEN_RANDOM_BYTES]);
    getrandom::fill(random.as_mut()).map_err(keygate_secrets::StoreError::from)?;
    let mut token = Zeroizing::new(String::with_capacity(TOKEN_LEN));
    token.push_str(TOKEN_PREFIX);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(random.as_ref(), &mut token);
    Ok(SecretString::from(token.as_str()))
}

/// The redacted form shown instead of a token: its first 7 and last 4 characters (`kg-AbCd...wxyz`).
pub(crate) fn display_name(token: &str) -> String {
    format!("{}...{}", &token[..7], &token[token.len() - 4..])
}

/// HMAC-SHA-256 under the token hashing key. The key schedule is computed once; each hash clones it on the
/// stack.
pub(crate) struct TokenHasher(Hmac<Sha256>);

impl TokenHasher {
    /// The hasher of `store`'s tokens, keyed by a key derived from its master key. Needs the master key.
    pub(crate) fn for_store(store: &keygate_secrets::Store) -> Result<Self> {
        Ok(Self::new(&*store.derive_key(HASH_KEY_CONTEXT)?))
    }

    fn new(key: &[u8; 32]) -> Self {
        Self(Hmac::new_from_slice(key).expect("HMAC takes keys of any length"))
    }

    pub(crate) fn digest(&self, token: &[u8]) -> Digest {
        let mut mac = self.0.clone();
        mac.update(token);
        Digest(mac.finalize().into_bytes().into())
    }
}

/// A token's keyed hash. Equality is constant-time, so a lookup reveals nothing about how much of a stored
/// hash a presented token matched.
#[derive(Clone, Copy)]
pub(crate) struct Digest(pub(crate) [u8; 32]);

impl PartialEq for Digest {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Digest {}

impl Hash for Digest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(first));
    }
}

/// Hash maps keyed by [`Digest`] use its first 8 bytes as the hash: HMAC outputs are uniform and clients
/// cannot compute them without the key, so they cannot steer lookups into collisions.
pub(crate) type DigestMap<V> =
    std::collections::HashMap<Digest, V, BuildHasherDefault<DigestHasher>>;

/// The [`Hasher`] behind [`DigestMap`]: passes a [`Digest`]'s `u64` through.
#[derive(Default)]
pub(crate) struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn tokens_are_random_base64url_with_the_prefix() {
        let one = generate().unwrap();
        let two = generate().unwrap();
        let text = one.expose_secret();
        assert_eq!(text.len(), TOKEN_LEN);
        assert!(text.starts_with(TOKEN_PREFIX));
        assert!(text[3..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(text, two.expose_secret());
        let shown = display_name(text);
        assert_eq!(shown.len(), 14);
        assert!(shown.starts_with(&text[..7]) && shown.ends_with(&text[text.len() - 4..]));
    }

    #[test]
    fn the_hash_is_keyed() {
        let token = b"kg-the-same-token";
        let one = TokenHasher::new(&[1; 32]);
        let other = TokenHasher::new(&[2; 32]);
        assert!(one.digest(token) == one.digest(token));
        assert!(one.digest(token) != other.digest(token));
        assert!(one.digest(token) != one.digest(b"kg-another-token"));
        let plain: [u8; 32] = <Sha256 as sha2::Digest>::digest(token).into();
        assert!(one.digest(token) != Digest(plain));
    }
}
