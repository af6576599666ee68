//! Parsing the target URL of a load run.

use http::Uri;

/// A plain-HTTP target: where to connect and what to put in the request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Value of the `host` header.
    pub authority: String,
    /// Path and query of the request line.
    pub path_and_query: String,
}

/// A URL that cannot be a load target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Not a URL.
    #[error("invalid URL '{0}'")]
    Invalid(String),
    /// Only `http://` is supported.
    #[error("unsupported URL '{0}': only http:// URLs with a host are supported")]
    Unsupported(String),
}

impl Target {
    /// Parses `http://host[:port]/path[?query]`.
    pub fn parse(url: &str) -> Result<Target, TargetError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| TargetError::Invalid(url.to_owned()))?;
        if uri.scheme_str() != Some("http") {
            return Err(TargetError::Unsupported(url.to_owned()));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| TargetError::Unsupported(url.to_owned()))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(Target {
            host,
            port: authority.port_u16().unwrap_or(80),
            authority: authority.as_str().to_owned(),
            path_and_query: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_urls() {
        let t = Target::parse("http://127.0.0.1:9999/v1/chat/completions?x=1").expect("valid");
        assert_eq!(t.host, "127.0.0.1");
        assert_eq!(t.port, 9999);
        assert_eq!(t.authority, "127.0.0.1:9999");
        assert_eq!(t.path_and_query, "/v1/chat/completions?x=1");
        let t = Target::parse("http://[::1]/").expect("valid");
        assert_eq!((t.host.as_str(), t.port), ("::1", 80));
    }

    #[test]
    fn rejects_other_urls() {
        assert!(matches!(
            Target::parse("https://a/"),
            Err(TargetError::Unsupported(_))
        ));
        assert!(matches!(
            Target::parse("/just/a/path"),
            Err(TargetError::Unsupported(_))
        ));
        assert!(matches!(
            Target::parse("http://bad host/"),
            Err(TargetError::Invalid(_))
        ));
    }
}
