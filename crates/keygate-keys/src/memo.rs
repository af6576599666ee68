//! A per-thread memo of the digests of tokens that matched a key, so a client's every request
//! does not pay the keyed hash (HMAC-SHA-256) again.
//!
//! - Only tokens that matched a key are remembered: presenting random tokens neither fills the
//!   memo nor skips the hash.
//! - It maps a token to its digest, not to a key. The digest is still looked up in the current
//!   key set, so a deleted, disabled or expired key is refused exactly as before.
//! - A remembered token stays in memory until it leaves the memo (then it is wiped), as the
//!   decrypted provider keys stay in the cache. At most [`CAPACITY`] per thread; a full memo
//!   starts over.
//! - The map hashes tokens with a random SipHash key of its own, so a client cannot aim a
//!   token at the bucket of one it does not know, and only a whole-token match is a hit.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use zeroize::Zeroize;

use crate::token::Digest;

/// Tokens remembered per thread.
const CAPACITY: usize = 1024;

/// A remembered token, wiped when dropped.
struct Token(Box<[u8]>);

impl Borrow<[u8]> for Token {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl PartialEq for Token {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Token {}

impl Hash for Token {
    // As `[u8]` hashes, so that lookups by `&[u8]` find it.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The digests one thread remembers, for one key cache (`owner`).
#[derive(Default)]
struct Memo {
    owner: u64,
    digests: HashMap<Token, Digest>,
}

thread_local! {
    static MEMO: RefCell<Memo> = RefCell::new(Memo::default());
}

/// The remembered digest of `token` for key cache `owner`.
pub(crate) fn recall(owner: u64, token: &[u8]) -> Option<Digest> {
    MEMO.with_borrow(|memo| {
        (memo.owner == owner)
            .then(|| memo.digests.get(token).copied())
            .flatten()
    })
}

/// Remembers the digest of a token that matched a key of key cache `owner`.
pub(crate) fn remember(owner: u64, token: &[u8], digest: Digest) {
    MEMO.with_borrow_mut(|memo| {
        if memo.owner != owner || memo.digests.len() >= CAPACITY {
            memo.digests.clear();
            memo.owner = owner;
        }
        memo.digests.insert(Token(token.into()), digest);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_per_owner_and_starts_over_when_full() {
        let digest = Digest([7; 32]);
        assert!(recall(1, b"kg-a").is_none());
        remember(1, b"kg-a", digest);
        assert!(recall(1, b"kg-a") == Some(digest));
        assert!(
            recall(1, b"kg-b").is_none(),
            "only the whole token is a hit"
        );
        assert!(
            recall(2, b"kg-a").is_none(),
            "another cache's tokens are not its own"
        );
        remember(2, b"kg-c", digest);
        assert!(recall(1, b"kg-a").is_none(), "a new owner starts over");
        for i in 0..CAPACITY {
            remember(2, format!("kg-{i}").as_bytes(), digest);
        }
        assert!(recall(2, b"kg-c").is_none(), "a full memo starts over");
        assert!(recall(2, format!("kg-{}", CAPACITY - 1).as_bytes()).is_some());
    }
}
