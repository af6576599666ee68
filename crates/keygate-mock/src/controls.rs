//! Behaviour controls: request headers (`x-mock-*`) and words inside the API key, resolved against
//! the mock's defaults.
//!
//! Precedence: a request header wins over a word in the key, which wins over [`MockConfig`].

use std::time::Duration;

use http::{HeaderMap, StatusCode};

use crate::config::MockConfig;

/// Header that answers with this status (200-599) in the surface's error shape.
pub(crate) const STATUS_HEADER: &str = "x-mock-status";
/// Header that delays the response head by this many milliseconds.
pub(crate) const DELAY_HEADER: &str = "x-mock-delay-ms";
/// Header that sets the pause before each streamed content chunk, in milliseconds.
pub(crate) const CHUNK_DELAY_HEADER: &str = "x-mock-chunk-delay-ms";
/// Header that sets the number of streamed content chunks.
pub(crate) const CHUNKS_HEADER: &str = "x-mock-chunks";
/// Header that drops the connection or cuts the body: `before-headers`, `mid-stream`,
/// `fin-mid-stream` or `end-mid-stream`.
pub(crate) const DROP_HEADER: &str = "x-mock-drop";

/// Header that leaves token usage out of the reply (`omit`), as servers that report none do.
pub(crate) const USAGE_HEADER: &str = "x-mock-usage";
/// Header that reports this many prompt tokens read from the provider's prompt cache.
pub(crate) const CACHE_READ_HEADER: &str = "x-mock-cache-read";
/// Header that reports this many prompt tokens written to the provider's prompt cache.
pub(crate) const CACHE_WRITE_HEADER: &str = "x-mock-cache-write";

/// Largest chunk count a request may ask for.
const MAX_CHUNKS: usize = 100_000;

/// Where the mock cuts the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropPoint {
    /// Close the connection without sending a response head.
    BeforeHeaders,
    /// Send the head and part of the body, then reset the connection (TCP RST).
    MidStream,
    /// Send the head and part of the body, then close the connection (TCP FIN) with the body's
    /// HTTP framing unfinished.
    FinMidStream,
    /// Send the head and part of the body, then end the body cleanly: the stream lacks its
    /// final events (`[DONE]`, `message_stop`, ...).
    EndMidStream,
}

/// A control header whose value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {header} value '{value}': expected {expected}")]
pub(crate) struct ControlError {
    /// The header name.
    pub(crate) header: &'static str,
    /// The value received (control headers never carry secrets).
    pub(crate) value: String,
    /// What the header accepts.
    pub(crate) expected: &'static str,
}

/// Prompt-cache usage a reply reports, in tokens on top of the estimated (uncached) prompt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Cache {
    /// Tokens read from the cache (Anthropic `cache_read_input_tokens`, OpenAI `cached_tokens`).
    pub(crate) read: u64,
    /// Tokens written to the cache (Anthropic `cache_creation_input_tokens`).
    pub(crate) write: u64,
}

/// The behaviour of one request after all controls are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Behaviour {
    /// Answer with this status instead of a normal reply (errors use the surface's error shape).
    pub(crate) status: Option<StatusCode>,
    /// Pause before the response head.
    pub(crate) delay: Duration,
    /// Pause before each streamed content chunk.
    pub(crate) chunk_delay: Duration,
    /// Number of streamed content chunks.
    pub(crate) chunks: usize,
    /// Connection drop, if any.
    pub(crate) drop: Option<DropPoint>,
    /// Leave every `usage` object out of the reply.
    pub(crate) omit_usage: bool,
    /// Prompt-cache usage to report.
    pub(crate) cache: Cache,
}

/// Controls found in the request; `None` fields fall back to the next source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Overrides {
    status: Option<StatusCode>,
    delay: Option<Duration>,
    chunk_delay: Option<Duration>,
    chunks: Option<usize>,
    drop: Option<DropPoint>,
    omit_usage: Option<bool>,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
}

impl Overrides {
    fn or(self, other: Overrides) -> Overrides {
        Overrides {
            status: self.status.or(other.status),
            delay: self.delay.or(other.delay),
            chunk_delay: self.chunk_delay.or(other.chunk_delay),
            chunks: self.chunks.or(other.chunks),
            drop: self.drop.or(other.drop),
            omit_usage: self.omit_usage.or(other.omit_usage),
            cache_read: self.cache_read.or(other.cache_read),
            cache_write: self.cache_write.or(other.cache_write),
        }
    }
}

/// Resolves the behaviour of a request from its headers, its API key and the mock defaults.
pub(crate) fn resolve(headers: &HeaderMap, config: &MockConfig) -> Result<Behaviour, ControlError> {
    let from_headers = header_overrides(headers)?;
    let from_key = api_key(headers)
        .map(|key| key_overrides(key, config))
        .unwrap_or_default();
    let merged = from_headers.or(from_key);
    Ok(Behaviour {
        status: merged.status,
        delay: merged.delay.unwrap_or(Duration::ZERO),
        chunk_delay: merged.chunk_delay.unwrap_or(config.chunk_delay),
        chunks: merged.chunks.unwrap_or(config.chunks).max(1),
        drop: merged.drop,
        omit_usage: merged.omit_usage.unwrap_or(false),
        cache: Cache {
            read: merged.cache_read.unwrap_or(0),
            write: merged.cache_write.unwrap_or(0),
        },
    })
}

/// The API key of a request: `Authorization: Bearer K`, `x-api-key: K` or Azure's `api-key: K`.
pub(crate) fn api_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
        });
    bearer.or_else(|| {
        ["x-api-key", "api-key"]
            .iter()
            .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
    })
}

fn header_overrides(headers: &HeaderMap) -> Result<Overrides, ControlError> {
    // Most requests carry no control header: one pass over the names instead of five lookups.
    if !headers
        .keys()
        .any(|name| name.as_str().starts_with("x-mock-"))
    {
        return Ok(Overrides::default());
    }
    let text = |name: &'static str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let mut out = Overrides::default();
    if let Some(value) = text(STATUS_HEADER) {
        out.status = Some(parse_status(value).ok_or_else(|| ControlError {
            header: STATUS_HEADER,
            value: value.to_owned(),
            expected: "a status code from 200 to 599",
        })?);
    }
    if let Some(value) = text(DELAY_HEADER) {
        out.delay = Some(parse_millis(DELAY_HEADER, value)?);
    }
    if let Some(value) = text(CHUNK_DELAY_HEADER) {
        out.chunk_delay = Some(parse_millis(CHUNK_DELAY_HEADER, value)?);
    }
    if let Some(value) = text(CHUNKS_HEADER) {
        let chunks = value
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_CHUNKS).contains(n));
        out.chunks = Some(chunks.ok_or_else(|| ControlError {
            header: CHUNKS_HEADER,
            value: value.to_owned(),
            expected: "a chunk count from 1 to 100000",
        })?);
    }
    if let Some(value) = text(DROP_HEADER) {
        out.drop = Some(match value.trim() {
            "before-headers" => DropPoint::BeforeHeaders,
            "mid-stream" => DropPoint::MidStream,
            "fin-mid-stream" => DropPoint::FinMidStream,
            "end-mid-stream" => DropPoint::EndMidStream,
            _ => {
                return Err(ControlError {
                    header: DROP_HEADER,
                    value: value.to_owned(),
                    expected: "before-headers, mid-stream, fin-mid-stream or end-mid-stream",
                })
            }
        });
    }
    if let Some(value) = text(USAGE_HEADER) {
        out.omit_usage = Some(match value.trim() {
            "omit" => true,
            "report" => false,
            _ => {
                return Err(ControlError {
                    header: USAGE_HEADER,
                    value: value.to_owned(),
                    expected: "omit or report",
                })
            }
        });
    }
    if let Some(value) = text(CACHE_READ_HEADER) {
        out.cache_read = Some(parse_tokens(CACHE_READ_HEADER, value)?);
    }
    if let Some(value) = text(CACHE_WRITE_HEADER) {
        out.cache_write = Some(parse_tokens(CACHE_WRITE_HEADER, value)?);
    }
    Ok(out)
}

fn parse_tokens(header: &'static str, value: &str) -> Result<u64, ControlError> {
    value.trim().parse::<u64>().map_err(|_| ControlError {
        header,
        value: value.to_owned(),
        expected: "a whole number of tokens",
    })
}

fn parse_status(value: &str) -> Option<StatusCode> {
    let code = value.trim().parse::<u16>().ok()?;
    if (200..=599).contains(&code) {
        StatusCode::from_u16(code).ok()
    } else {
        None
    }
}

fn parse_millis(header: &'static str, value: &str) -> Result<Duration, ControlError> {
    value
        .trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| ControlError {
            header,
            value: value.to_owned(),
            expected: "a whole number of milliseconds",
        })
}

/// Reads the words `fail<NNN>`, `slow[<ms>]`, `drop-before`, `drop-mid`, `fin-mid`, `end-mid`,
/// `nousage`, `cacheread<N>` and `cachewrite<N>` inside a key.
fn key_overrides(key: &str, config: &MockConfig) -> Overrides {
    let key = key.to_ascii_lowercase();
    let mut out = Overrides::default();
    if let Some(digits) = digits_after(&key, "fail") {
        out.status = digits
            .get(..3)
            .filter(|_| digits.len() >= 3)
            .and_then(parse_status);
    }
    if let Some(digits) = digits_after(&key, "slow") {
        out.delay = Some(match digits.parse::<u64>() {
            Ok(ms) => Duration::from_millis(ms),
            Err(_) => config.slow_delay,
        });
    }
    let words = [
        ("drop-before", "dropbefore", DropPoint::BeforeHeaders),
        ("drop-mid", "dropmid", DropPoint::MidStream),
        ("fin-mid", "finmid", DropPoint::FinMidStream),
        ("end-mid", "endmid", DropPoint::EndMidStream),
    ];
    out.drop = words.into_iter().find_map(|(word, joined, point)| {
        (key.contains(word) || key.contains(joined)).then_some(point)
    });
    out.omit_usage = key.contains("nousage").then_some(true);
    let tokens = |words: [&str; 2]| {
        words
            .iter()
            .find_map(|word| digits_after(&key, word).and_then(|d| d.parse::<u64>().ok()))
    };
    out.cache_read = tokens(["cacheread", "cache-read"]);
    out.cache_write = tokens(["cachewrite", "cache-write"]);
    out
}

/// The digits right after `word` in `key`: from the first occurrence followed by a digit, else
/// `""` when `word` occurs without digits, else `None`.
fn digits_after<'a>(key: &'a str, word: &str) -> Option<&'a str> {
    let runs = key.match_indices(word).map(|(i, _)| {
        let rest = &key[i + word.len()..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        &rest[..end]
    });
    let mut found = None;
    for run in runs {
        if !run.is_empty() {
            return Some(run);
        }
        found = Some(run);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().expect("valid header value"));
        }
        map
    }

    #[test]
    fn defaults_come_from_config() {
        let config = MockConfig::default()
            .with_chunks(7)
            .with_chunk_delay(Duration::from_millis(3));
        let b = resolve(&HeaderMap::new(), &config).expect("no controls");
        assert_eq!(b.status, None);
        assert_eq!(b.delay, Duration::ZERO);
        assert_eq!(b.chunk_delay, Duration::from_millis(3));
        assert_eq!(b.chunks, 7);
        assert_eq!(b.drop, None);
    }

    #[test]
    fn headers_set_every_control() {
        let h = headers(&[
            ("x-mock-status", "503"),
            ("x-mock-delay-ms", "25"),
            ("x-mock-chunk-delay-ms", "4"),
            ("x-mock-chunks", "9"),
            ("x-mock-drop", "mid-stream"),
        ]);
        let b = resolve(&h, &MockConfig::default()).expect("valid controls");
        assert_eq!(b.status, Some(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(b.delay, Duration::from_millis(25));
        assert_eq!(b.chunk_delay, Duration::from_millis(4));
        assert_eq!(b.chunks, 9);
        assert_eq!(b.drop, Some(DropPoint::MidStream));
    }

    #[test]
    fn bad_header_values_are_errors() {
        for (name, value) in [
            ("x-mock-status", "abc"),
            ("x-mock-status", "999"),
            ("x-mock-status", "101"),
            ("x-mock-delay-ms", "-1"),
            ("x-mock-chunks", "0"),
            ("x-mock-drop", "sometimes"),
        ] {
            let err = resolve(&headers(&[(name, value)]), &MockConfig::default())
                .expect_err("must be rejected");
            assert_eq!(err.header, name);
        }
    }

    #[test]
    fn key_words_apply_from_bearer_and_x_api_key() {
        let config = MockConfig::default().with_slow_delay(Duration::from_millis(111));
        let bearer = headers(&[("authorization", "Bearer sk-test-fail429-x")]);
        let b = resolve(&bearer, &config).expect("valid");
        assert_eq!(b.status, Some(StatusCode::TOO_MANY_REQUESTS));

        let x_api_key = headers(&[("x-api-key", "key-FAIL500")]);
        let b = resolve(&x_api_key, &config).expect("valid");
        assert_eq!(b.status, Some(StatusCode::INTERNAL_SERVER_ERROR));

        let slow = headers(&[("authorization", "Bearer k-slow")]);
        assert_eq!(
            resolve(&slow, &config).expect("valid").delay,
            Duration::from_millis(111)
        );
        let slow_ms = headers(&[("authorization", "Bearer k-slow250")]);
        assert_eq!(
            resolve(&slow_ms, &config).expect("valid").delay,
            Duration::from_millis(250)
        );
        let drop = headers(&[("x-api-key", "k-drop-before")]);
        assert_eq!(
            resolve(&drop, &config).expect("valid").drop,
            Some(DropPoint::BeforeHeaders)
        );
        for (key, point) in [
            ("k-dropmid", DropPoint::MidStream),
            ("k-fin-mid", DropPoint::FinMidStream),
            ("k-ENDMID", DropPoint::EndMidStream),
        ] {
            let h = headers(&[("api-key", key)]);
            assert_eq!(resolve(&h, &config).expect("valid").drop, Some(point));
        }
    }

    #[test]
    fn header_beats_key_and_incomplete_fail_is_ignored() {
        let h = headers(&[
            ("authorization", "Bearer k-fail401"),
            ("x-mock-status", "200"),
        ]);
        assert_eq!(
            resolve(&h, &MockConfig::default()).expect("valid").status,
            Some(StatusCode::OK)
        );
        let h = headers(&[("authorization", "Bearer k-fail42")]);
        assert_eq!(
            resolve(&h, &MockConfig::default()).expect("valid").status,
            None
        );
        let h = headers(&[("authorization", "Bearer failover-key")]);
        assert_eq!(
            resolve(&h, &MockConfig::default()).expect("valid").status,
            None
        );
    }

    #[test]
    fn cache_tokens_from_headers_and_key_words() {
        let config = MockConfig::default();
        assert_eq!(
            resolve(&HeaderMap::new(), &config).expect("valid").cache,
            Cache::default()
        );
        let h = headers(&[("x-mock-cache-read", "120"), ("x-mock-cache-write", " 30 ")]);
        assert_eq!(
            resolve(&h, &config).expect("valid").cache,
            Cache {
                read: 120,
                write: 30
            }
        );
        let key = headers(&[("x-api-key", "sk-CacheRead900-cache-write40")]);
        assert_eq!(
            resolve(&key, &config).expect("valid").cache,
            Cache {
                read: 900,
                write: 40
            }
        );
        let both = headers(&[
            ("authorization", "Bearer k-cacheread900"),
            ("x-mock-cache-read", "5"),
        ]);
        assert_eq!(resolve(&both, &config).expect("valid").cache.read, 5);
        let bare = headers(&[("authorization", "Bearer k-cacheread")]);
        assert_eq!(resolve(&bare, &config).expect("valid").cache.read, 0);
        for name in ["x-mock-cache-read", "x-mock-cache-write"] {
            let err = resolve(&headers(&[(name, "-3")]), &config).expect_err("rejected");
            assert_eq!(err.header, name);
        }
    }

    #[test]
    fn api_key_sources() {
        assert_eq!(
            api_key(&headers(&[("authorization", "bearer abc")])),
            Some("abc")
        );
        assert_eq!(api_key(&headers(&[("authorization", "Basic abc")])), None);
        assert_eq!(api_key(&headers(&[("x-api-key", "xyz")])), Some("xyz"));
        assert_eq!(api_key(&HeaderMap::new()), None);
    }
}
