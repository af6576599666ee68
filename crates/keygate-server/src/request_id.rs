//! Request ids: the client's when it sent a sane one, otherwise a fresh random one.

use http::{HeaderMap, HeaderName};

/// The header carrying the id both ways.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The client's `x-request-id` if it is 1-128 of `[A-Za-z0-9._:-]`, else a new 32-hex-digit id.
pub fn for_request(headers: &HeaderMap) -> String {
    headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            (1..=128).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
        })
        .map_or_else(new_id, str::to_owned)
}

/// 32 random hex digits.
fn new_id() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bits = rand::random::<u128>();
    (0..32)
        .rev()
        .map(|nibble| char::from(HEX[((bits >> (nibble * 4)) & 0xf) as usize]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_valid_ids_and_replaces_others() {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER, "abc-123".parse().unwrap());
        assert_eq!(for_request(&headers), "abc-123");
        headers.insert(HEADER, "bad id with spaces".parse().unwrap());
        let id = for_request(&headers);
        assert_eq!(id.len(), 32);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(id, for_request(&HeaderMap::new()));
    }
}
