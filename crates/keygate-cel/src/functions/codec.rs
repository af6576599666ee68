//! Encoders: `base64.*`, `basic_auth.encode`, `url.*` and their string methods.

use std::collections::HashMap;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use cel::common::types::{CelBool, CelBytes, CelInt, CelMap, CelMapKey, CelString, STRING_TYPE};
use cel::common::value::{CowVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

use super::{bytes_arg, global_and_member, one, str_arg, TEXT_TYPES};

type Result<'b, 'v> = std::result::Result<CowVal<'b, 'v>, ExecutionError>;

/// Standard alphabet first, then URL-safe; padding optional.
fn decode_base64(function: &str, data: &[u8]) -> std::result::Result<Vec<u8>, ExecutionError> {
    let data = data.trim_ascii();
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(data).ok())
        .ok_or_else(|| ExecutionError::function_error(function, "invalid base64 input"))
}

/// `base64.encode(bytes|string) -> string`, `x.encodeBase64()`.
fn base64_encode<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<'b, 'v> {
    let data = bytes_arg("base64.encode", one(&args)?)?;
    Ok(CowVal::owned(CelString::from(STANDARD.encode(data))))
}

/// `base64.decode(string|bytes) -> bytes`.
fn base64_decode<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<'b, 'v> {
    let data = bytes_arg("base64.decode", one(&args)?)?;
    Ok(CowVal::owned(CelBytes::from(decode_base64(
        "base64.decode",
        data,
    )?)))
}

/// `s.decodeBase64() -> string`: the decoded text, which must be UTF-8.
fn decode_base64_text<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<'b, 'v> {
    let data = bytes_arg("decodeBase64", one(&args)?)?;
    let text = String::from_utf8(decode_base64("decodeBase64", data)?).map_err(|_| {
        ExecutionError::function_error(
            "decodeBase64",
            "decoded data is not UTF-8 text: use base64.decode",
        )
    })?;
    Ok(CowVal::owned(CelString::from(text)))
}

/// `basic_auth.encode(user, password) -> 'Basic ' + base64(user:password)`.
fn basic_auth_encode<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<'b, 'v> {
    let [user, password] = args.as_slice() else {
        return Err(ExecutionError::invalid_argument_count(2, args.len()));
    };
    let user = str_arg("basic_auth.encode", user.as_ref())?;
    let password = str_arg("basic_auth.encode", password.as_ref())?;
    let encoded = STANDARD.encode(format!("{user}:{password}"));
    Ok(CowVal::owned(CelString::from(format!("Basic {encoded}"))))
}

/// `url.escape(s)`: query-component escaping (space as `+`), like Go's `url.QueryEscape`.
fn url_escape<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<'b, 'v> {
    let text = str_arg("url.escape", one(&args)?)?;
    let escaped: String = url::form_urlencoded::byte_serialize(text.as_bytes()).collect();
    Ok(CowVal::owned(CelString::from(escaped)))
}

/// Go's `url.QueryUnescape`: `+` is a space, `%XX` must be valid.
fn unescape(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// `url.unescape(s)`.
fn url_unescape<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<'b, 'v> {
    let text = str_arg("url.unescape", one(&args)?)?;
    let plain = unescape(text)
        .ok_or_else(|| ExecutionError::function_error("url.unescape", "invalid escape sequence"))?;
    Ok(CowVal::owned(CelString::from(plain)))
}

fn entry<'v>(
    map: &mut HashMap<CelMapKey<'v>, Box<dyn Val + 'v>>,
    key: &'static str,
    value: Box<dyn Val + 'v>,
) {
    map.insert(CelMapKey::from(key), value);
}

fn text<'v>(s: &str) -> Box<dyn Val + 'v> {
    Box::new(CelString::from(s.to_owned()))
}

/// `url.parse(s)`: `{scheme, opaque, user, host, hostname, port, path, raw_path, raw_query,
/// query_params, fragment}` (Go `net/url` fields, snake_case).
fn url_parse<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<'b, 'v> {
    let source = str_arg("url.parse", one(&args)?)?;
    let parsed =
        url::Url::parse(source).map_err(|e| ExecutionError::function_error("url.parse", e))?;
    let mut map = HashMap::new();
    entry(&mut map, "scheme", text(parsed.scheme()));
    let opaque = if parsed.cannot_be_a_base() {
        parsed.path()
    } else {
        ""
    };
    entry(&mut map, "opaque", text(opaque));
    let user = match parsed.password() {
        Some(password) => format!("{}:{password}", parsed.username()),
        None => parsed.username().to_owned(),
    };
    entry(&mut map, "user", text(&user));
    let hostname = parsed.host_str().unwrap_or("");
    let host = match parsed.port() {
        Some(port) => format!("{hostname}:{port}"),
        None => hostname.to_owned(),
    };
    entry(&mut map, "host", text(&host));
    entry(&mut map, "hostname", text(hostname));
    let port = parsed.port_or_known_default().map_or(0, i64::from);
    entry(&mut map, "port", Box::new(CelInt::from(port)));
    let raw_path = if parsed.cannot_be_a_base() {
        ""
    } else {
        parsed.path()
    };
    let path = percent_encoding::percent_decode_str(raw_path).decode_utf8_lossy();
    entry(&mut map, "path", text(&path));
    entry(&mut map, "raw_path", text(raw_path));
    entry(&mut map, "raw_query", text(parsed.query().unwrap_or("")));
    let mut params: HashMap<CelMapKey<'v>, Vec<Box<dyn Val + 'v>>> = HashMap::new();
    for (key, value) in parsed.query_pairs() {
        params
            .entry(CelMapKey::from(key.into_owned()))
            .or_default()
            .push(text(&value));
    }
    let params: HashMap<CelMapKey<'v>, Box<dyn Val + 'v>> = params
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                Box::new(cel::common::types::CelList::from(v)) as Box<dyn Val + 'v>,
            )
        })
        .collect();
    entry(&mut map, "query_params", Box::new(CelMap::from(params)));
    entry(&mut map, "fragment", text(parsed.fragment().unwrap_or("")));
    Ok(CowVal::owned(CelMap::from(map)))
}

/// `s.isURL()`: an absolute URL with a scheme.
fn is_url<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<'b, 'v> {
    let source = str_arg("isURL", one(&args)?)?;
    Ok(CowVal::owned(CelBool::from(
        url::Url::parse(source).is_ok(),
    )))
}

pub(super) fn register(env: &mut Env) -> std::result::Result<(), DeclarationError> {
    for data in TEXT_TYPES {
        global_and_member(
            env,
            "base64.encode",
            "encodeBase64",
            &[data.to_owned()],
            base64_encode,
        )?;
        env.add_overload(
            "base64.decode",
            &format!("base64.decode({})", data.name()),
            vec![data.to_owned()],
            base64_decode,
        )?;
        env.add_member_overload(
            "decodeBase64",
            &format!("{}.decodeBase64()", data.name()),
            data,
            vec![],
            decode_base64_text,
        )?;
    }
    env.add_overload(
        "basic_auth.encode",
        "basic_auth.encode(string,string)",
        vec![STRING_TYPE, STRING_TYPE],
        basic_auth_encode,
    )?;
    global_and_member(env, "url.escape", "escapeUrl", &[STRING_TYPE], url_escape)?;
    global_and_member(
        env,
        "url.unescape",
        "unescapeUrl",
        &[STRING_TYPE],
        url_unescape,
    )?;
    global_and_member(env, "url.parse", "parseUrl", &[STRING_TYPE], url_parse)?;
    env.add_member_overload("isURL", "string.isURL()", STRING_TYPE, vec![], is_url)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn unescape_follows_go_query_unescape() {
        assert_eq!(unescape("a+b%20c").as_deref(), Some("a b c"));
        assert_eq!(unescape("%zz"), None);
        assert_eq!(unescape("%4"), None);
        assert_eq!(unescape("caf%C3%A9").as_deref(), Some("café"));
    }
}
