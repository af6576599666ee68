//! Joining a provider's base URL with the surface path (ngrok's rule: a base URL that ends in a version keeps it) and query parameters.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::Surface;

/// Characters left unescaped in query keys and values (RFC 3986 unreserved).
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The upstream URL for `surface`.
///
/// A base URL with a path (`https://api.openai.com/v1`, an Azure deployment URL) gets the surface
/// suffix (`/chat/completions`); a bare origin (`http://127.0.0.1:11434`) gets the client path
/// (`/v1/chat/completions`). The query is the base URL's own, then the client's, then `extra`.
pub fn upstream_url(
    base_url: &str,
    surface: Surface,
    client_query: Option<&str>,
    extra: &[(String, String)],
) -> String {
    let (base, base_query) = base_url
        .split_once('?')
        .map_or((base_url, None), |(b, q)| (b, Some(q)));
    let base = base.trim_end_matches('/');
    let after_scheme = base.split_once("://").map_or(base, |(_, rest)| rest);
    let has_path = after_scheme.contains('/');
    let mut url = String::with_capacity(base.len() + 32);
    url.push_str(base);
    url.push_str(if has_path {
        surface.suffix()
    } else {
        surface.client_path()
    });
    let mut parts: Vec<String> = Vec::new();
    parts.extend(base_query.filter(|q| !q.is_empty()).map(str::to_owned));
    parts.extend(client_query.filter(|q| !q.is_empty()).map(str::to_owned));
    for (key, value) in extra {
        parts.push(format!(
            "{}={}",
            utf8_percent_encode(key, QUERY),
            utf8_percent_encode(value, QUERY)
        ));
    }
    if !parts.is_empty() {
        url.push('?');
        url.push_str(&parts.join("&"));
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_bases_get_the_suffix() {
        assert_eq!(
            upstream_url(
                "https://api.openai.com/v1",
                Surface::ChatCompletions,
                None,
                &[]
            ),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            upstream_url(
                "https://api.anthropic.com/v1/",
                Surface::CountTokens,
                None,
                &[]
            ),
            "https://api.anthropic.com/v1/messages/count_tokens"
        );
        assert_eq!(
            upstream_url(
                "https://generativelanguage.googleapis.com/v1beta/openai",
                Surface::Embeddings,
                None,
                &[]
            ),
            "https://generativelanguage.googleapis.com/v1beta/openai/embeddings"
        );
    }

    #[test]
    fn bare_origins_get_the_client_path() {
        assert_eq!(
            upstream_url(
                "http://127.0.0.1:11434",
                Surface::ChatCompletions,
                None,
                &[]
            ),
            "http://127.0.0.1:11434/v1/chat/completions"
        );
        assert_eq!(
            upstream_url("http://127.0.0.1:11434/", Surface::Messages, None, &[]),
            "http://127.0.0.1:11434/v1/messages"
        );
    }

    #[test]
    fn azure_deployments_and_queries() {
        let base = "https://res.openai.azure.com/openai/deployments/gpt4o?api-version=2024-10-21";
        assert_eq!(
            upstream_url(base, Surface::ChatCompletions, Some("beta=true"), &[("x y".into(), "a&b".into())]),
            "https://res.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21&beta=true&x%20y=a%26b"
        );
        assert_eq!(
            upstream_url("https://res.openai.azure.com/openai/deployments/d", Surface::ChatCompletions, None, &[("api-version".into(), "2024-10-21".into())]),
            "https://res.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-10-21"
        );
    }
}
