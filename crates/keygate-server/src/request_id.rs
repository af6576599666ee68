//! Request ids: the client's when it sent a sane one, otherwise a fresh random one.

use http::HeaderMap;

/// The header carrying the id both ways.
pub const HEADER: &str = "x-request-id";

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
        .map_or_else(|| format!("{:032x}", rand::random::<u128>()), str::to_owned)
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
        assert_ne!(id, for_request(&HeaderMap::new()));
    }
}
