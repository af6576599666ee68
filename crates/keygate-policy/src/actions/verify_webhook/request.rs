//! What a signature is checked against: the request's method, headers, body and URL.

use http::HeaderMap;

/// The parts of one request a scheme may sign.
pub struct Signed<'a> {
    pub method: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// The ways of writing the URL the provider called (see [`urls`]); empty unless the
    /// scheme signs the URL.
    pub urls: &'a [String],
    /// Unix seconds.
    pub now: i64,
}

/// The URL the provider called, as it may have written it: `scheme://host/path?query` from
/// `X-Forwarded-Proto` / `X-Forwarded-Host` when a proxy in front set them, else from the
/// connection and `Host`; then the same with the default port added or removed (Twilio's own
/// libraries try both, since providers differ on writing `:443`).
pub fn urls(scheme: &str, head: &http::request::Parts) -> Vec<String> {
    let header = |name: &str| {
        head.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let scheme = header("x-forwarded-proto")
        .unwrap_or(scheme)
        .to_ascii_lowercase();
    let Some(host) = header("x-forwarded-host")
        .or_else(|| header("host"))
        .or_else(|| head.uri.authority().map(|a| a.as_str()))
    else {
        return Vec::new();
    };
    let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    // `[::1]` has colons of its own: a port follows the closing bracket.
    let has_port = host.rsplit(']').next().unwrap_or(host).contains(':');
    let other_host = match host.strip_suffix(default_port) {
        Some(bare) => Some(bare.to_owned()),
        None if !has_port => Some(format!("{host}{default_port}")),
        None => None,
    };
    std::iter::once(host.to_owned())
        .chain(other_host)
        .map(|host| format!("{scheme}://{host}{path}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::urls;

    fn head(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut builder = http::Request::builder().uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_url_with_and_without_the_default_port() {
        assert_eq!(
            urls("http", &head("/sms?a=1", &[("host", "example.com")])),
            [
                "http://example.com/sms?a=1",
                "http://example.com:80/sms?a=1"
            ]
        );
        assert_eq!(
            urls(
                "http",
                &head(
                    "/sms",
                    &[
                        ("host", "127.0.0.1:8080"),
                        ("x-forwarded-proto", "https"),
                        ("x-forwarded-host", "hooks.example.com:443")
                    ]
                )
            ),
            [
                "https://hooks.example.com:443/sms",
                "https://hooks.example.com/sms"
            ]
        );
        assert_eq!(
            urls("http", &head("/", &[("host", "127.0.0.1:8080")])),
            ["http://127.0.0.1:8080/"]
        );
        assert_eq!(
            urls("http", &head("/", &[("host", "[::1]")])),
            ["http://[::1]/", "http://[::1]:80/"]
        );
    }
}
