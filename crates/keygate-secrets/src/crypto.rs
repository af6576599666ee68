//! Envelope encryption with AES-256-GCM.
//!
//! Each value is encrypted under its own random 256-bit data key; the data key is encrypted ("wrapped") under
//! the master key. Both encryptions carry associated data binding them to the record (its id, its owner's id
//! and its name), so a ciphertext copied onto another row fails authentication. A key check (the
//! encryption of 32 zero bytes under the master key with a stored nonce) tells a wrong master key apart from
//! corrupt data.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Key, KeyInit, Nonce};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{Result, StoreError};
use crate::master_key::MasterKey;

/// AES-GCM nonce length in bytes.
pub(crate) const NONCE_LEN: usize = 12;
const DATA_KEY_LEN: usize = 32;
const KEY_CHECK_AAD: &[u8] = b"keygate:key-check:v1";

/// A sealed value as stored: four columns, `key_nonce, wrapped_key, value_nonce, ciphertext` (see
/// [`SEALED_COLUMNS`]).
pub struct Sealed {
    /// Nonce of the data key's encryption.
    pub key_nonce: Vec<u8>,
    /// The data key, encrypted under the master key.
    pub wrapped_key: Vec<u8>,
    /// Nonce of the value's encryption.
    pub value_nonce: Vec<u8>,
    /// The value, encrypted under the data key.
    pub ciphertext: Vec<u8>,
}

/// The column names of a [`Sealed`] value, in its field order, for SQL statements.
pub const SEALED_COLUMNS: &str = "key_nonce, wrapped_key, value_nonce, ciphertext";

impl Sealed {
    /// Reads the four columns starting at index `first` of `row`.
    pub fn from_row(row: &keygate_store::Row, first: usize) -> keygate_store::Result<Self> {
        Ok(Self {
            key_nonce: row.get(first)?,
            wrapped_key: row.get(first + 1)?,
            value_nonce: row.get(first + 2)?,
            ciphertext: row.get(first + 3)?,
        })
    }
}

/// The record a ciphertext belongs to: its id, its owner's id and its name. Ids carry their kind as a prefix
/// (`secret_`, `aigpk_`, ...), so a ciphertext of one kind of record never opens as another.
pub struct Binding<'a> {
    /// The record's id (a secret's id).
    pub record_id: &'a str,
    /// The id of the record that owns it (a secret's vault).
    pub owner_id: &'a str,
    /// The record's name (a secret's name).
    pub name: &'a str,
}

impl Binding<'_> {
    /// Associated data for one of the two encryptions. Ids and names never contain NUL, so the encoding is
    /// unambiguous.
    fn aad(&self, purpose: &str) -> Vec<u8> {
        format!(
            "keygate:{purpose}:v1\0{}\0{}\0{}",
            self.record_id, self.owner_id, self.name
        )
        .into_bytes()
    }
}

/// Authentication failed: wrong key, or the stored bytes were modified.
#[derive(Debug)]
pub(crate) struct OpenError;

fn cipher(key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key))
}

pub(crate) fn random_nonce() -> Result<[u8; NONCE_LEN]> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce)?;
    Ok(nonce)
}

fn encrypt(key: &[u8; 32], nonce: &[u8; NONCE_LEN], msg: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
    cipher(key)
        .encrypt(Nonce::from_slice(nonce), Payload { msg, aad })
        .map_err(|_| StoreError::Invalid("value is too large to encrypt".to_owned()))
}

fn decrypt(
    key: &[u8; 32],
    nonce: &[u8],
    msg: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    if nonce.len() != NONCE_LEN {
        return Err(OpenError);
    }
    cipher(key)
        .decrypt(Nonce::from_slice(nonce), Payload { msg, aad })
        .map(Zeroizing::new)
        .map_err(|_| OpenError)
}

/// Encrypts `plaintext` under a fresh data key wrapped by `master`.
pub(crate) fn seal(master: &MasterKey, binding: &Binding<'_>, plaintext: &[u8]) -> Result<Sealed> {
    let mut data_key = Zeroizing::new([0u8; DATA_KEY_LEN]);
    getrandom::fill(data_key.as_mut())?;
    let value_nonce = random_nonce()?;
    let key_nonce = random_nonce()?;
    let ciphertext = encrypt(&data_key, &value_nonce, plaintext, &binding.aad("value"))?;
    let wrapped_key = encrypt(
        master.bytes(),
        &key_nonce,
        data_key.as_ref(),
        &binding.aad("data-key"),
    )?;
    Ok(Sealed {
        key_nonce: key_nonce.to_vec(),
        wrapped_key,
        value_nonce: value_nonce.to_vec(),
        ciphertext,
    })
}

/// Unwraps the data key and decrypts the value; any modification of any column, or a different binding,
/// fails.
pub(crate) fn open(
    master: &MasterKey,
    binding: &Binding<'_>,
    sealed: &Sealed,
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    let unwrapped = decrypt(
        master.bytes(),
        &sealed.key_nonce,
        &sealed.wrapped_key,
        &binding.aad("data-key"),
    )?;
    let data_key: &[u8; DATA_KEY_LEN] = unwrapped.as_slice().try_into().map_err(|_| OpenError)?;
    decrypt(
        data_key,
        &sealed.value_nonce,
        &sealed.ciphertext,
        &binding.aad("value"),
    )
}

/// The key check value for `master` under `nonce`.
pub(crate) fn key_check(master: &MasterKey, nonce: &[u8; NONCE_LEN]) -> Result<Vec<u8>> {
    encrypt(master.bytes(), nonce, &[0u8; 32], KEY_CHECK_AAD)
}

/// Whether `stored` is the key check of `master`, compared in constant time.
pub(crate) fn verify_key_check(master: &MasterKey, nonce: &[u8], stored: &[u8]) -> Result<bool> {
    let Ok(nonce) = <&[u8; NONCE_LEN]>::try_from(nonce) else {
        return Ok(false);
    };
    let expected = key_check(master, nonce)?;
    Ok(bool::from(expected.as_slice().ct_eq(stored)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding() -> Binding<'static> {
        Binding {
            record_id: "secret_a",
            owner_id: "vault_a",
            name: "api-key",
        }
    }

    #[test]
    fn round_trip_and_fresh_keys_per_record() {
        let master = MasterKey::generate().unwrap();
        let one = seal(&master, &binding(), b"sk-live-value").unwrap();
        let two = seal(&master, &binding(), b"sk-live-value").unwrap();
        assert_eq!(
            open(&master, &binding(), &one).unwrap().as_slice(),
            b"sk-live-value"
        );
        assert_ne!(one.ciphertext, two.ciphertext);
        assert_ne!(one.wrapped_key, two.wrapped_key);
        assert!(!one.ciphertext.windows(13).any(|w| w == b"sk-live-value"));
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let master = MasterKey::generate().unwrap();
        let sealed = seal(&master, &binding(), b"value").unwrap();
        for column in 0..4 {
            let mut copy = Sealed {
                key_nonce: sealed.key_nonce.clone(),
                wrapped_key: sealed.wrapped_key.clone(),
                value_nonce: sealed.value_nonce.clone(),
                ciphertext: sealed.ciphertext.clone(),
            };
            match column {
                0 => copy.key_nonce[0] ^= 1,
                1 => copy.wrapped_key[5] ^= 0x80,
                2 => copy.value_nonce[11] ^= 1,
                _ => copy.ciphertext[0] ^= 1,
            }
            assert!(open(&master, &binding(), &copy).is_err(), "column {column}");
        }
    }

    #[test]
    fn ciphertexts_are_bound_to_their_record() {
        let master = MasterKey::generate().unwrap();
        let sealed = seal(&master, &binding(), b"value").unwrap();
        for other in [
            Binding {
                record_id: "secret_b",
                ..binding()
            },
            Binding {
                owner_id: "vault_b",
                ..binding()
            },
            Binding {
                name: "other",
                ..binding()
            },
        ] {
            assert!(open(&master, &other, &sealed).is_err());
        }
    }

    #[test]
    fn wrong_master_key_fails_both_open_and_key_check() {
        let master = MasterKey::generate().unwrap();
        let other = MasterKey::generate().unwrap();
        let sealed = seal(&master, &binding(), b"value").unwrap();
        assert!(open(&other, &binding(), &sealed).is_err());
        let nonce = random_nonce().unwrap();
        let check = key_check(&master, &nonce).unwrap();
        assert!(verify_key_check(&master, &nonce, &check).unwrap());
        assert!(!verify_key_check(&other, &nonce, &check).unwrap());
        assert!(!verify_key_check(&master, &nonce[..8], &check).unwrap());
    }
}
