//! Content-coding negotiation against a request's `Accept-Encoding` (RFC 9110 12.5.3).

use http::header::{HeaderMap, ACCEPT_ENCODING};

/// A content coding `compress-response` can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Gzip,
    Deflate,
    Br,
    Zstd,
}

impl Algorithm {
    /// The coding's name in `Content-Encoding` and in the policy.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Gzip => "gzip",
            Algorithm::Deflate => "deflate",
            Algorithm::Br => "br",
            Algorithm::Zstd => "zstd",
        }
    }

    fn matches(self, coding: &str) -> bool {
        coding.eq_ignore_ascii_case(self.name())
            // RFC 9110 8.4.1.3: a recipient should treat x-gzip as gzip.
            || (self == Algorithm::Gzip && coding.eq_ignore_ascii_case("x-gzip"))
    }
}

/// The algorithm to compress with: the highest-weighted one of `preference` the client accepts,
/// ties going to the earlier entry of `preference`. `None` without an `Accept-Encoding` header,
/// when nothing offered is acceptable (`q=0`, or `*;q=0`), or when the client weights
/// `identity` above every offered coding.
pub fn negotiate(headers: &HeaderMap, preference: &[Algorithm]) -> Option<Algorithm> {
    let mut values = headers.get_all(ACCEPT_ENCODING).iter().peekable();
    values.peek()?;
    let mut entries = Vec::new();
    for value in values {
        // An unreadable header offers nothing.
        let text = value.to_str().ok()?;
        entries.extend(text.split(',').filter_map(parse_entry));
    }
    let weight_of = |name: &str| {
        entries
            .iter()
            .find(|(coding, _)| coding.eq_ignore_ascii_case(name))
            .map(|&(_, q)| q)
    };
    let wildcard = weight_of("*");
    let mut best: Option<(Algorithm, u16)> = None;
    for &algorithm in preference {
        let q = entries
            .iter()
            .find(|(coding, _)| algorithm.matches(coding))
            .map(|&(_, q)| q)
            .or(wildcard)
            .unwrap_or(0);
        if q > 0 && best.is_none_or(|(_, best_q)| q > best_q) {
            best = Some((algorithm, q));
        }
    }
    let (algorithm, q) = best?;
    // Only an explicit identity weight competes: unlisted, it is merely acceptable.
    match weight_of("identity") {
        Some(identity) if identity > q => None,
        _ => Some(algorithm),
    }
}

/// `coding[;q=weight]` as (coding, weight in thousandths); `None` for an empty or malformed entry
/// (an invalid weight makes the whole entry void rather than guessing one).
fn parse_entry(entry: &str) -> Option<(&str, u16)> {
    let mut parts = entry.split(';');
    let coding = parts.next()?.trim();
    if coding.is_empty() {
        return None;
    }
    let mut q = 1000;
    for param in parts {
        let (name, value) = param.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("q") {
            q = parse_weight(value.trim())?;
        }
    }
    Some((coding, q))
}

/// An RFC 9110 `weight` (`0`, `0.5`, `1.000`: at most three decimals, at most 1) in thousandths.
fn parse_weight(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = format!("{fraction:0<3}");
    match whole {
        "0" => digits.parse().ok(),
        "1" if digits == "000" => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::Algorithm::{self, Br, Deflate, Gzip, Zstd};
    use super::*;

    const ALL: &[Algorithm] = &[Br, Zstd, Gzip, Deflate];

    fn pick(accept: Option<&str>, preference: &[Algorithm]) -> Option<&'static str> {
        let mut headers = HeaderMap::new();
        if let Some(accept) = accept {
            headers.insert(ACCEPT_ENCODING, HeaderValue::from_str(accept).unwrap());
        }
        negotiate(&headers, preference).map(Algorithm::name)
    }

    #[test]
    fn negotiation_table() {
        let cases: &[(Option<&str>, &[Algorithm], Option<&str>)] = &[
            // No header, or an empty one: the client asked for nothing.
            (None, ALL, None),
            (Some(""), ALL, None),
            // Equal weights: the policy's order decides.
            (Some("gzip, deflate, br, zstd"), ALL, Some("br")),
            (Some("gzip, deflate, br, zstd"), &[Gzip, Br], Some("gzip")),
            (Some("deflate, gzip"), &[Br, Zstd], None),
            // Weights beat the policy's order.
            (Some("br;q=0.5, gzip;q=0.8"), ALL, Some("gzip")),
            (Some("br;q=0.5, gzip"), ALL, Some("gzip")),
            (Some("br;q=1.0, gzip;q=1"), ALL, Some("br")),
            (Some("zstd;q=0.001, gzip;q=0"), ALL, Some("zstd")),
            // q=0 refuses a coding.
            (Some("br;q=0, gzip"), ALL, Some("gzip")),
            (Some("gzip;q=0"), ALL, None),
            (Some("gzip;q=0.000"), ALL, None),
            // `*` covers codings not listed; listed ones keep their own weight.
            (Some("*"), ALL, Some("br")),
            (Some("*;q=0.5, gzip"), ALL, Some("gzip")),
            (Some("br;q=0, *"), ALL, Some("zstd")),
            (Some("*;q=0"), ALL, None),
            (Some("gzip, *;q=0"), ALL, Some("gzip")),
            // identity only competes when weighted explicitly.
            (Some("identity"), ALL, None),
            (Some("gzip;q=0.5"), ALL, Some("gzip")),
            (Some("gzip;q=0.5, identity"), ALL, None),
            (Some("gzip, identity;q=0.5"), ALL, Some("gzip")),
            (Some("gzip, identity"), ALL, Some("gzip")),
            // Case, whitespace, x-gzip, other parameters.
            (Some(" GZip ; Q=0.7 , BR;q=0.6"), ALL, Some("gzip")),
            (Some("x-gzip"), ALL, Some("gzip")),
            (Some("gzip;level=9"), ALL, Some("gzip")),
            // Malformed weights void their entry only.
            (Some("br;q=2, gzip"), ALL, Some("gzip")),
            (Some("br;q=0.5000, gzip;q=0.1"), ALL, Some("gzip")),
            (Some("br;q=abc"), ALL, None),
            (Some("br;q"), ALL, None),
            (Some(",,gzip,,"), ALL, Some("gzip")),
            // Codings Keygate never produces.
            (Some("compress, lz4"), ALL, None),
        ];
        for (accept, preference, expected) in cases {
            assert_eq!(
                pick(*accept, preference),
                *expected,
                "Accept-Encoding: {accept:?}, preference {preference:?}"
            );
        }
    }

    #[test]
    fn repeated_headers_are_one_list() {
        let mut headers = HeaderMap::new();
        headers.append(ACCEPT_ENCODING, HeaderValue::from_static("br;q=0.2"));
        headers.append(ACCEPT_ENCODING, HeaderValue::from_static("gzip;q=0.9"));
        assert_eq!(negotiate(&headers, ALL), Some(Gzip));
    }

    #[test]
    fn weights() {
        assert_eq!(parse_weight("0"), Some(0));
        assert_eq!(parse_weight("0.5"), Some(500));
        assert_eq!(parse_weight("0.125"), Some(125));
        assert_eq!(parse_weight("1"), Some(1000));
        assert_eq!(parse_weight("1.000"), Some(1000));
        assert_eq!(parse_weight("1.001"), None);
        assert_eq!(parse_weight(".5"), None);
        assert_eq!(parse_weight("0.1234"), None);
        assert_eq!(parse_weight("-0"), None);
    }
}
