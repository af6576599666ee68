//! Hop-by-hop headers (RFC 9110 7.6.1): they describe one connection, so no proxy forwards them,
//! in either direction.

use http::header::{self, HeaderMap, HeaderName};

/// Headers that belong to one hop, whatever `Connection` says.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes the hop-by-hop headers and every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the (few) headers present; most messages carry none of these.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&listed) {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn the_fixed_list_is_removed() {
        let mut headers = map(&[
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authenticate", "Basic"),
            ("proxy-authorization", "Basic eA=="),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("content-type", "application/json"),
        ]);
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("content-type"));
    }

    #[test]
    fn headers_named_in_connection_are_removed() {
        let mut headers = map(&[
            ("connection", "X-Hop, x-other ,close"),
            ("connection", "x-third"),
            ("x-hop", "1"),
            ("x-other", "2"),
            ("x-third", "3"),
            ("x-kept", "4"),
        ]);
        strip_hop_by_hop(&mut headers);
        let names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn a_message_without_hop_headers_is_untouched() {
        let mut headers = map(&[("x-a", "1"), ("x-a", "2"), ("accept", "*/*")]);
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 3);
    }

    #[test]
    fn an_unparsable_connection_token_is_ignored() {
        let mut headers = map(&[("connection", "bad token, x-hop"), ("x-hop", "1")]);
        strip_hop_by_hop(&mut headers);
        assert!(headers.is_empty());
    }
}
