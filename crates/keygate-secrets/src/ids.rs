//! Record ids: a prefix (`vault_`, `secret_`, ...) followed by 26 random characters of the RFC 4648 base32
//! alphabet in lower case (`a-z`, `2-7`), i.e. 130 bits from the OS CSPRNG.

use crate::error::Result;

/// Number of random base32 characters after the prefix.
pub const ID_RANDOM_CHARS: usize = 26;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Prefix of vault ids.
pub const VAULT_PREFIX: &str = "vault_";
/// Prefix of secret ids.
pub const SECRET_PREFIX: &str = "secret_";

/// A new random id: `prefix` followed by [`ID_RANDOM_CHARS`] random base32 characters.
pub fn new_id(prefix: &str) -> Result<String> {
    let mut random = [0u8; ID_RANDOM_CHARS];
    getrandom::fill(&mut random)?;
    let mut id = String::with_capacity(prefix.len() + ID_RANDOM_CHARS);
    id.push_str(prefix);
    // 32 divides 256, so taking the low five bits of each byte is uniform.
    id.extend(
        random
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(b & 0x1f)])),
    );
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_prefix_and_26_base32_chars() {
        let id = new_id(VAULT_PREFIX).unwrap();
        let rest = id.strip_prefix(VAULT_PREFIX).unwrap();
        assert_eq!(rest.len(), ID_RANDOM_CHARS);
        assert!(rest.bytes().all(|b| ALPHABET.contains(&b)), "{id}");
        assert_ne!(
            new_id(SECRET_PREFIX).unwrap(),
            new_id(SECRET_PREFIX).unwrap()
        );
    }
}
