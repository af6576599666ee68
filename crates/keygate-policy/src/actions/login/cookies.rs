//! Sealed cookies: serde values encrypted and authenticated with AES-256-GCM under a key derived
//! (HKDF-SHA-256) from the gateway's session key, bound to the cookie's name so one cookie's value
//! never opens as another's. Also reading `Cookie` and writing `Set-Cookie`.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Key, KeyInit, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{HeaderMap, HeaderValue};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::build::SessionKey;

const NONCE_LEN: usize = 12;

/// Seals and opens cookie values for one login action.
pub(super) struct Sealer {
    cipher: Aes256Gcm,
}

impl Sealer {
    /// A sealer whose key is derived from `key` for `purpose` (the identity provider), so that
    /// sessions of one provider never open under another's action.
    pub fn new(key: &SessionKey, purpose: &str) -> Self {
        let mut derived = zeroize::Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<sha2::Sha256>::new(None, key.bytes())
            .expand(
                format!("keygate login cookie|{purpose}").as_bytes(),
                derived.as_mut(),
            )
            .expect("32 bytes is a valid HKDF-SHA-256 output length");
        Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(derived.as_ref())),
        }
    }

    /// `value` as JSON, encrypted with a random nonce; `name` is authenticated with it.
    pub fn seal<T: Serialize>(&self, name: &str, value: &T) -> String {
        let plain = serde_json::to_vec(value).expect("cookie values serialize");
        let nonce: [u8; NONCE_LEN] = random_bytes();
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: name.as_bytes(),
                },
            )
            .expect("AES-GCM encrypts any message this size");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The value sealed as cookie `name`, or `None` when it was altered, sealed under another key
    /// or name, or is not a `T`.
    pub fn open<T: DeserializeOwned>(&self, name: &str, text: &str) -> Option<T> {
        let raw = URL_SAFE_NO_PAD.decode(text).ok()?;
        if raw.len() <= NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: name.as_bytes(),
                },
            )
            .ok()?;
        serde_json::from_slice(&plain).ok()
    }

    /// The first cookie `name` in `headers` that opens.
    pub fn open_cookie<T: DeserializeOwned>(&self, headers: &HeaderMap, name: &str) -> Option<T> {
        cookie_values(headers, name).find_map(|value| self.open(name, value))
    }
}

/// Every value of cookie `name` in the request's `Cookie` headers.
fn cookie_values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(move |pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then(|| value.trim_matches('"'))
        })
}

/// Where and how a cookie is set.
pub(super) struct CookieAttrs<'a> {
    /// `Secure` (the request came over https).
    pub secure: bool,
    /// `auth_cookie_domain`.
    pub domain: Option<&'a str>,
}

impl CookieAttrs<'_> {
    /// `Set-Cookie` for `name=value`, HttpOnly, SameSite=Lax, Path=/, expiring after `max_age`
    /// seconds (when given). Lax, not Strict: the identity provider's redirect back is a
    /// cross-site navigation that must carry the login cookie.
    pub fn set(&self, name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
        let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
        if self.secure {
            cookie.push_str("; Secure");
        }
        if let Some(domain) = self.domain {
            cookie.push_str("; Domain=");
            cookie.push_str(domain);
        }
        if let Some(age) = max_age {
            cookie.push_str(&format!("; Max-Age={age}"));
        }
        HeaderValue::from_str(&cookie).expect("cookie names, values and domains are checked")
    }

    /// `Set-Cookie` that removes cookie `name`.
    pub fn clear(&self, name: &str) -> HeaderValue {
        self.set(name, "", Some(0))
    }
}

/// `N` bytes from the OS random source.
pub(super) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    bytes
}

/// 32 random bytes, base64url: a state, nonce or PKCE verifier (43 characters).
pub(super) fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Value {
        who: String,
    }

    fn value() -> Value {
        Value { who: "ada".into() }
    }

    #[test]
    fn sealed_values_open_only_unaltered_under_their_key_and_name() {
        let key = SessionKey::random();
        let sealer = Sealer::new(&key, "oidc:https://idp.test");
        let sealed = sealer.seal("kg_session", &value());
        assert_eq!(sealer.open::<Value>("kg_session", &sealed), Some(value()));
        assert!(sealer.open::<Value>("kg_login", &sealed).is_none());
        assert!(Sealer::new(&key, "oauth:github")
            .open::<Value>("kg_session", &sealed)
            .is_none());
        assert!(Sealer::new(&SessionKey::random(), "oidc:https://idp.test")
            .open::<Value>("kg_session", &sealed)
            .is_none());
        let mut raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert!(sealer
            .open::<Value>("kg_session", &URL_SAFE_NO_PAD.encode(raw))
            .is_none());
        assert!(sealer.open::<Value>("kg_session", "not base64!").is_none());
        assert!(sealer.open::<Value>("kg_session", "").is_none());
    }

    #[test]
    fn cookies_are_found_among_others() {
        let sealer = Sealer::new(&SessionKey::random(), "p");
        let sealed = sealer.seal("kg", &value());
        let mut headers = HeaderMap::new();
        headers.append("cookie", HeaderValue::from_static("a=1; kg=forged"));
        headers.append(
            "cookie",
            HeaderValue::from_str(&format!("b=2; kg={sealed}")).unwrap(),
        );
        assert_eq!(sealer.open_cookie::<Value>(&headers, "kg"), Some(value()));
        assert!(sealer.open_cookie::<Value>(&headers, "a").is_none());
    }

    #[test]
    fn set_cookie_attributes() {
        let attrs = CookieAttrs {
            secure: true,
            domain: Some("example.com"),
        };
        assert_eq!(
            attrs.set("kg", "v", Some(60)),
            "kg=v; Path=/; HttpOnly; SameSite=Lax; Secure; Domain=example.com; Max-Age=60"
        );
        let plain = CookieAttrs {
            secure: false,
            domain: None,
        };
        assert_eq!(
            plain.clear("kg"),
            "kg=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"
        );
    }
}
