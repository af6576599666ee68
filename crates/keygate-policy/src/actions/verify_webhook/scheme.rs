//! The pieces provider signature schemes are made of (which header, which digest and encoding,
//! what string is signed, which timestamp) and the one HMAC check that reads them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha1::Sha1;
use sha2::{Digest as _, Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::request::Signed;
use super::Failure;

/// The hash under the HMAC.
#[derive(Debug, Clone, Copy)]
pub enum Digest {
    Sha1,
    Sha256,
    Sha512,
}

/// How the signature is written in its header.
#[derive(Debug, Clone, Copy)]
pub enum Encoding {
    Hex,
    Base64,
}

/// How the configured secret becomes the HMAC key.
#[derive(Debug, Clone, Copy)]
pub enum Key {
    /// The secret's bytes.
    Raw,
    /// Svix's `whsec_<base64>`: the bytes after the prefix, base64-decoded.
    Whsec,
    /// A base64 string (Microsoft Teams' security token), decoded.
    Base64,
}

/// Where the signature is.
#[derive(Debug, Clone, Copy)]
pub enum Signature {
    /// Every listed header present (`Box-Signature-Primary` and `-Secondary`); each value split
    /// on `separator` (several signatures during a key rotation), each entry after `prefix`.
    /// Entries without the prefix (other scheme versions) are skipped.
    Header {
        names: &'static [&'static str],
        prefix: &'static str,
        separator: Option<char>,
    },
    /// `key=value` pairs separated by commas, Stripe style (`t=...,v1=...,v1=...`): every
    /// `signature` entry, and the timestamp under `timestamp`.
    Pairs {
        name: &'static str,
        signature: &'static str,
        timestamp: &'static str,
    },
}

/// How a timestamp is written.
#[derive(Debug, Clone, Copy)]
pub enum TimeFormat {
    UnixSeconds,
    UnixMillis,
    /// RFC 3339 / ISO 8601; without an offset it is read as UTC.
    Iso8601,
}

/// Where a timestamp is.
#[derive(Debug, Clone, Copy)]
pub enum TimeSource {
    /// The first of these headers present.
    Header(&'static [&'static str]),
    /// The timestamp entry of [`Signature::Pairs`].
    Pair,
}

/// A signed timestamp and the replay window around it (seconds either side of now).
#[derive(Debug, Clone, Copy)]
pub struct Timestamp {
    pub source: TimeSource,
    pub format: TimeFormat,
    pub tolerance: u64,
}

/// One piece of the signed string, concatenated in order.
#[derive(Debug, Clone, Copy)]
pub enum Part {
    Text(&'static str),
    Body,
    /// The timestamp exactly as sent.
    Timestamp,
    /// The first of these headers present, as sent.
    Header(&'static [&'static str]),
    Method,
    /// The URL the provider called (`https://host/path?query`).
    Url,
    /// The URL with HubSpot's list of reserved characters (`:/?@!$'()*,;`) percent-decoded.
    UrlReservedDecoded,
    UrlWithoutQuery,
    /// Twilio's rule: form bodies append every parameter as `name` + `value`, sorted; any other
    /// body must match the URL's `bodySHA256` query parameter.
    FormParams,
}

/// An HMAC signature scheme.
#[derive(Debug, Clone, Copy)]
pub struct HmacScheme {
    pub digest: Digest,
    pub encoding: Encoding,
    pub key: Key,
    pub signature: Signature,
    pub timestamp: Option<Timestamp>,
    pub message: &'static [Part],
}

impl HmacScheme {
    /// Whether the signed string contains the request URL.
    pub fn signs_url(&self) -> bool {
        self.message.iter().any(|p| {
            matches!(
                p,
                Part::Url | Part::UrlReservedDecoded | Part::UrlWithoutQuery | Part::FormParams
            )
        })
    }

    /// Checks the request's signature with `secret`: the signature first, then the timestamp's
    /// age, so "stale" is only said of requests that were really signed.
    pub fn verify(&self, secret: &str, req: &Signed<'_>) -> Result<(), Failure> {
        let key = self.key.decode(secret)?;
        let (presented, pair_time) = self.signature.read(req.headers, self.encoding)?;
        let time = match self.timestamp {
            None => None,
            Some(timestamp) => Some(timestamp.read(req.headers, pair_time)?),
        };
        let urls: &[String] = if self.signs_url() { req.urls } else { &[] };
        let mut matched = false;
        // Without the URL in the message there is one message; with it, one per way of
        // writing the URL.
        for url in urls.iter().map(Some).chain(urls.is_empty().then_some(None)) {
            let tag = self.mac(
                &key,
                req,
                time.as_ref().map(|(text, _)| text.as_str()),
                url.map(String::as_str),
            )?;
            for signature in &presented {
                matched |= bool::from(tag.as_slice().ct_eq(signature));
            }
        }
        if !matched {
            return Err(Failure::Mismatch);
        }
        match (self.timestamp, time) {
            (Some(timestamp), Some((_, at))) => check_age(at, req.now, timestamp.tolerance),
            _ => Ok(()),
        }
    }

    fn mac(
        &self,
        key: &[u8],
        req: &Signed<'_>,
        time: Option<&str>,
        url: Option<&str>,
    ) -> Result<Vec<u8>, Failure> {
        let mut mac = AnyMac::new(self.digest, key);
        for part in self.message {
            match part {
                Part::Text(text) => mac.update(text.as_bytes()),
                Part::Body => mac.update(req.body),
                Part::Timestamp => mac.update(time.unwrap_or_default().as_bytes()),
                Part::Header(names) => mac.update(first_header(req.headers, names)?.as_bytes()),
                Part::Method => mac.update(req.method.as_bytes()),
                Part::Url => mac.update(url.unwrap_or_default().as_bytes()),
                Part::UrlReservedDecoded => {
                    mac.update(decode_reserved(url.unwrap_or_default()).as_bytes())
                }
                Part::UrlWithoutQuery => {
                    let url = url.unwrap_or_default();
                    mac.update(url.split_once('?').map_or(url, |(base, _)| base).as_bytes());
                }
                Part::FormParams => form_params(req, url.unwrap_or_default(), &mut mac)?,
            }
        }
        Ok(mac.finalize())
    }
}

impl Key {
    fn decode(self, secret: &str) -> Result<Vec<u8>, Failure> {
        match self {
            Key::Raw => Ok(secret.as_bytes().to_vec()),
            Key::Whsec => STANDARD
                .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
                .map_err(|_| Failure::Secret("a whsec_ secret followed by base64")),
            Key::Base64 => STANDARD
                .decode(secret)
                .map_err(|_| Failure::Secret("a base64 security token")),
        }
    }
}

impl Signature {
    /// The decoded signatures presented, and the pair timestamp if the scheme has one.
    fn read(
        self,
        headers: &HeaderMap,
        encoding: Encoding,
    ) -> Result<(Vec<Vec<u8>>, Option<String>), Failure> {
        let mut found = Vec::new();
        let mut time = None;
        let mut any = false;
        match self {
            Signature::Header {
                names,
                prefix,
                separator,
            } => {
                for name in names {
                    for value in headers.get_all(*name) {
                        any = true;
                        let value = value.to_str().map_err(|_| Failure::Malformed(names[0]))?;
                        let entries: Vec<&str> = match separator {
                            Some(separator) => value.split(separator).collect(),
                            None => vec![value],
                        };
                        found.extend(
                            entries
                                .into_iter()
                                .filter_map(|e| e.trim().strip_prefix(prefix))
                                .filter_map(|e| encoding.decode(e)),
                        );
                    }
                }
                if !any {
                    return Err(Failure::MissingHeader(names[0]));
                }
                if found.is_empty() {
                    return Err(Failure::Malformed(names[0]));
                }
            }
            Signature::Pairs {
                name,
                signature,
                timestamp,
            } => {
                let value = headers.get(name).ok_or(Failure::MissingHeader(name))?;
                let value = value.to_str().map_err(|_| Failure::Malformed(name))?;
                for (key, item) in value.split(',').filter_map(|p| p.trim().split_once('=')) {
                    if key == signature {
                        found.extend(encoding.decode(item));
                    } else if key == timestamp {
                        time = Some(item.to_owned());
                    }
                }
                if found.is_empty() || time.is_none() {
                    return Err(Failure::Malformed(name));
                }
            }
        }
        Ok((found, time))
    }
}

impl Encoding {
    fn decode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Encoding::Hex => hex::decode(text).ok(),
            Encoding::Base64 => STANDARD.decode(text).ok(),
        }
    }
}

impl Timestamp {
    /// The timestamp as sent and as Unix seconds.
    fn read(self, headers: &HeaderMap, pair: Option<String>) -> Result<(String, i64), Failure> {
        let (text, name) = match self.source {
            TimeSource::Pair => (pair.unwrap_or_default(), "timestamp"),
            TimeSource::Header(names) => (first_header(headers, names)?.to_owned(), names[0]),
        };
        let at = self.format.parse(&text).ok_or(Failure::Malformed(name))?;
        Ok((text, at))
    }
}

/// Refuses a timestamp `at` more than `tolerance` seconds from `now`, either way.
pub fn check_age(at: i64, now: i64, tolerance: u64) -> Result<(), Failure> {
    if now.abs_diff(at) > tolerance {
        return Err(Failure::Stale { tolerance });
    }
    Ok(())
}

impl TimeFormat {
    /// Unix seconds.
    pub fn parse(self, text: &str) -> Option<i64> {
        let text = text.trim();
        match self {
            TimeFormat::UnixSeconds => text.parse().ok(),
            TimeFormat::UnixMillis => text.parse::<i64>().ok().map(|ms| ms.div_euclid(1000)),
            TimeFormat::Iso8601 => chrono::DateTime::parse_from_rfc3339(text)
                .map(|at| at.timestamp())
                .or_else(|_| {
                    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                        .map(|at| at.and_utc().timestamp())
                })
                .ok(),
        }
    }
}

/// The first of `names` present, as text.
pub fn first_header<'h>(
    headers: &'h HeaderMap,
    names: &[&'static str],
) -> Result<&'h str, Failure> {
    let (name, value) = names
        .iter()
        .find_map(|name| headers.get(*name).map(|value| (*name, value)))
        .ok_or(Failure::MissingHeader(names[0]))?;
    value.to_str().map_err(|_| Failure::Malformed(name))
}

/// `url` with `%3A`, `%2F`, `%3F`, `%40`, `%21`, `%24`, `%27`, `%28`, `%29`, `%2A`, `%2C` and
/// `%3B` decoded (any case), the escapes HubSpot decodes before signing; others stay encoded.
fn decode_reserved(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at + 1..at + 3);
        let decoded = escape
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .map(char::from)
            .filter(|c| ":/?@!$'()*,;".contains(*c));
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[at + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Twilio's body rule (see [`Part::FormParams`]).
fn form_params(req: &Signed<'_>, url: &str, mac: &mut AnyMac) -> Result<(), Failure> {
    let is_form = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if is_form {
        let mut params: Vec<_> = url::form_urlencoded::parse(req.body).collect();
        params.sort();
        for (name, value) in params {
            mac.update(name.as_bytes());
            mac.update(value.as_bytes());
        }
        return Ok(());
    }
    let query = url.split_once('?').map_or("", |(_, query)| query);
    let declared = url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "bodySHA256")
        .map(|(_, value)| value);
    match declared {
        Some(declared) if declared.eq_ignore_ascii_case(&hex::encode(Sha256::digest(req.body))) => {
            Ok(())
        }
        Some(_) => Err(Failure::Mismatch),
        // Nothing in the body to vouch for.
        None if req.body.is_empty() => Ok(()),
        None => Err(Failure::Body(
            "a body that is not a form needs the bodySHA256 query parameter",
        )),
    }
}

/// An HMAC over one of the supported digests.
pub enum AnyMac {
    Sha1(Hmac<Sha1>),
    Sha256(Hmac<Sha256>),
    Sha512(Hmac<Sha512>),
}

impl AnyMac {
    pub fn new(digest: Digest, key: &[u8]) -> Self {
        // HMAC takes keys of any length: `new_from_slice` cannot fail.
        match digest {
            Digest::Sha1 => AnyMac::Sha1(Hmac::new_from_slice(key).expect("any key length")),
            Digest::Sha256 => AnyMac::Sha256(Hmac::new_from_slice(key).expect("any key length")),
            Digest::Sha512 => AnyMac::Sha512(Hmac::new_from_slice(key).expect("any key length")),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            AnyMac::Sha1(mac) => mac.update(data),
            AnyMac::Sha256(mac) => mac.update(data),
            AnyMac::Sha512(mac) => mac.update(data),
        }
    }

    pub fn finalize(self) -> Vec<u8> {
        match self {
            AnyMac::Sha1(mac) => mac.finalize().into_bytes().to_vec(),
            AnyMac::Sha256(mac) => mac.finalize().into_bytes().to_vec(),
            AnyMac::Sha512(mac) => mac.finalize().into_bytes().to_vec(),
        }
    }
}

/// HMAC-SHA256 of `data` under `key` (handshake answers).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = AnyMac::new(Digest::Sha256, key);
    mac.update(data);
    mac.finalize()
}

#[cfg(test)]
mod tests {
    use super::decode_reserved;

    #[test]
    fn hubspot_decodes_only_its_reserved_escapes() {
        assert_eq!(
            decode_reserved("https://h.example/p?redirect=https%3a%2F%2Fx%40y&q=a%20b%2"),
            "https://h.example/p?redirect=https://x@y&q=a%20b%2"
        );
    }
}
