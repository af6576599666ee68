//! The request facts `req.*` and `res.*` derive from headers and the URI: host, URL parts,
//! content type, content length.

use std::borrow::Cow;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderMap, Version};

use crate::RequestView;

/// `req.version`: `HTTP/1.1`, `HTTP/2.0`, ...
pub(crate) fn version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

/// The first value of header `name`, if it is valid UTF-8.
pub(crate) fn header(headers: &HeaderMap, name: impl http::header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl<'a> RequestView<'a> {
    /// `req.host`: the URI authority (HTTP/2, absolute-form) or else the `Host` header.
    pub(crate) fn authority(&self) -> &'a str {
        self.head
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| header(&self.head.headers, HOST))
            .unwrap_or("")
    }

    /// `req.url.user_password`: the `user:password` before `@` in the authority, else `''`.
    pub(crate) fn user_password(&self) -> &'a str {
        self.authority()
            .rsplit_once('@')
            .map_or("", |(user, _)| user)
    }

    /// `req.url.host`: the authority without its port (IPv6 brackets kept).
    pub(crate) fn hostname(&self) -> &'a str {
        split_port(self.authority()).0
    }

    /// `req.url.port`: the explicit port, else the scheme's default.
    pub(crate) fn port(&self) -> i64 {
        split_port(self.authority())
            .1
            .and_then(|p| p.parse::<u16>().ok())
            .map(i64::from)
            .unwrap_or(if self.scheme.eq_ignore_ascii_case("https") {
                443
            } else {
                80
            })
    }

    /// `req.url.raw_path`: the path as received (percent-encoding kept).
    pub(crate) fn raw_path(&self) -> &'a str {
        self.head.uri.path()
    }

    /// `req.url.path`: the path, percent-decoded.
    pub(crate) fn path(&self) -> Cow<'a, str> {
        percent_encoding::percent_decode_str(self.raw_path()).decode_utf8_lossy()
    }

    /// `req.url.query`: the raw query string, without `?`.
    pub(crate) fn query(&self) -> &'a str {
        self.head.uri.query().unwrap_or("")
    }

    /// `req.url.uri`: path and query.
    pub(crate) fn uri(&self) -> &'a str {
        self.head
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/")
    }

    /// `req.url`: `scheme://authority/path?query`.
    pub(crate) fn url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority(), self.uri())
    }
}

/// Splits `host:port` (or `[v6]:port`) into host and port.
fn split_port(authority: &str) -> (&str, Option<&str>) {
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => {
                let (host, rest) = authority.split_at(end + 1);
                (host, rest.strip_prefix(':'))
            }
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
}

/// A parsed `Content-Type`: media type (lower-cased) and parameters.
pub(crate) struct ContentType<'a> {
    pub(crate) raw: &'a str,
    pub(crate) media_type: String,
    pub(crate) parameters: Vec<(String, String)>,
}

/// `*.content_type`: `None` without a (UTF-8) `Content-Type` header.
pub(crate) fn content_type(headers: &HeaderMap) -> Option<ContentType<'_>> {
    let raw = header(headers, CONTENT_TYPE)?;
    let mut parts = raw.split(';');
    let media_type = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let parameters = parts
        .filter_map(|part| {
            let (name, value) = part.split_once('=')?;
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            Some((name.trim().to_ascii_lowercase(), value.to_owned()))
        })
        .collect();
    Some(ContentType {
        raw,
        media_type,
        parameters,
    })
}

/// `*.content_length`: `None` when absent or not a number (chunked or no body).
pub(crate) fn content_length(headers: &HeaderMap) -> Option<i64> {
    header(headers, CONTENT_LENGTH)?.trim().parse::<i64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_port_handles_ipv6_and_userinfo() {
        assert_eq!(
            split_port("example.com:8080"),
            ("example.com", Some("8080"))
        );
        assert_eq!(split_port("example.com"), ("example.com", None));
        assert_eq!(split_port("[::1]:443"), ("[::1]", Some("443")));
        assert_eq!(split_port("[::1]"), ("[::1]", None));
        assert_eq!(split_port("u:p@h:1"), ("h", Some("1")));
    }

    #[test]
    fn content_type_parses_parameters() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            "Application/JSON; charset=\"utf-8\"".parse().unwrap(),
        );
        let ct = content_type(&headers).unwrap();
        assert_eq!(ct.media_type, "application/json");
        assert_eq!(
            ct.parameters,
            vec![("charset".to_owned(), "utf-8".to_owned())]
        );
        assert_eq!(ct.raw, "Application/JSON; charset=\"utf-8\"");
    }
}
