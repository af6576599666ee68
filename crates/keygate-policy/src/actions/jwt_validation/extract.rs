//! Finding a token in the request: a header, or a field of a JSON or form-urlencoded body.

use bytes::Bytes;
use http::{HeaderMap, Method};

use super::token::TokenError;

/// Reads header `name` and strips `prefix` (compared case-insensitively, like auth schemes).
pub(super) fn from_header(
    headers: &HeaderMap,
    name: &str,
    prefix: Option<&str>,
) -> Result<String, TokenError> {
    let missing = || TokenError::Missing {
        location: "header",
        name: name.to_owned(),
    };
    let value = headers.get(name).ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| TokenError::Malformed)?;
    strip(value, prefix)
}

/// Whether a token may be read from this request's body (POST, PUT and PATCH only).
pub(super) fn body_allowed(method: &Method) -> Result<(), TokenError> {
    if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        Ok(())
    } else {
        Err(TokenError::BodyMethod)
    }
}

/// Reads field `name` (case-insensitive) of a JSON object or form-urlencoded body, then strips `prefix`.
pub(super) fn from_body(
    headers: &HeaderMap,
    body: &Bytes,
    name: &str,
    prefix: Option<&str>,
) -> Result<String, TokenError> {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let missing = || TokenError::Missing {
        location: "body field",
        name: name.to_owned(),
    };
    let value = if content_type == "application/json" || content_type.ends_with("+json") {
        let json: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| TokenError::BodyParse)?;
        let object = json.as_object().ok_or(TokenError::BodyParse)?;
        let field = object
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, v)| v);
        match field.ok_or_else(missing)? {
            serde_json::Value::String(text) => text.clone(),
            _ => return Err(TokenError::Malformed),
        }
    } else if content_type == "application/x-www-form-urlencoded" {
        url::form_urlencoded::parse(body)
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.into_owned())
            .ok_or_else(missing)?
    } else {
        return Err(TokenError::BodyContentType);
    };
    strip(&value, prefix)
}

fn strip(value: &str, prefix: Option<&str>) -> Result<String, TokenError> {
    let token = match prefix.filter(|p| !p.is_empty()) {
        None => value,
        Some(prefix) => value
            .get(..prefix.len())
            .filter(|head| head.eq_ignore_ascii_case(prefix))
            .map(|_| &value[prefix.len()..])
            .ok_or(TokenError::PrefixMissing)?,
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(TokenError::Malformed);
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;
    use crate::error::ErrorCode;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn header_tokens() {
        let h = headers(&[("authorization", "Bearer abc.def.ghi")]);
        assert_eq!(
            from_header(&h, "Authorization", Some("Bearer ")).unwrap(),
            "abc.def.ghi"
        );
        assert_eq!(
            from_header(
                &headers(&[("authorization", "bearer x.y.z")]),
                "authorization",
                Some("Bearer ")
            )
            .unwrap(),
            "x.y.z"
        );
        assert_eq!(
            from_header(&h, "Authorization", Some("Token ")),
            Err(TokenError::PrefixMissing)
        );
        assert_eq!(
            from_header(&h, "x-token", None).unwrap_err().code(),
            ErrorCode::JwtHeaderMissing
        );
        assert_eq!(
            from_header(
                &headers(&[("authorization", "Bearer ")]),
                "authorization",
                Some("Bearer ")
            ),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            from_header(
                &headers(&[("authorization", "B")]),
                "authorization",
                Some("Bearer ")
            ),
            Err(TokenError::PrefixMissing)
        );
        assert_eq!(
            from_header(&h, "authorization", None).unwrap(),
            "Bearer abc.def.ghi"
        );
    }

    #[test]
    fn body_tokens() {
        let json = headers(&[("content-type", "application/json; charset=utf-8")]);
        let body = Bytes::from_static(br#"{"model": "m", "Access_Token": "a.b.c"}"#);
        assert_eq!(
            from_body(&json, &body, "access_token", None).unwrap(),
            "a.b.c"
        );
        assert_eq!(
            from_body(&json, &body, "token", None).unwrap_err().code(),
            ErrorCode::JwtTokenMissing
        );
        assert_eq!(
            from_body(&json, &Bytes::from_static(b"{\"token\": 5}"), "token", None),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            from_body(&json, &Bytes::from_static(b"not json"), "token", None),
            Err(TokenError::BodyParse)
        );
        let form = headers(&[("content-type", "application/x-www-form-urlencoded")]);
        let body = Bytes::from_static(b"a=1&token=Bearer%20x.y.z");
        assert_eq!(
            from_body(&form, &body, "token", Some("Bearer ")).unwrap(),
            "x.y.z"
        );
        let text = headers(&[("content-type", "text/plain")]);
        assert_eq!(
            from_body(&text, &body, "token", None),
            Err(TokenError::BodyContentType)
        );
        assert!(body_allowed(&Method::POST).is_ok());
        assert_eq!(body_allowed(&Method::GET), Err(TokenError::BodyMethod));
    }
}
