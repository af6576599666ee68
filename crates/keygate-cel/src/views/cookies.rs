//! Cookies in ngrok's shape: a map of cookie name to the list of cookies of that name.
//!
//! * `req.cookies` from the `Cookie` headers: `{name, value}`, in header order, so
//!   `getReqCookie(n)` (= `req.cookies[n][0]`) is the first one sent.
//! * `res.cookies` from the `Set-Cookie` headers: `{name, value, domain, path, expires,
//!   max_age, http_only, secure, same_site, unparsed_attributes}`, longest `path` first, so
//!   `getResCookie(n)` is the most specific one. `expires` and `max_age` are absent when the
//!   attribute is missing or unreadable.

use std::collections::HashMap;

use cel::common::types::{
    CelBool, CelDuration, CelList, CelMap, CelMapKey, CelString, CelTimestamp,
};
use cel::common::value::Val;
use chrono::{DateTime, NaiveDateTime};

type Fields<'v> = HashMap<CelMapKey<'v>, Box<dyn Val + 'v>>;
/// Cookies of one name, each with the length of its `Path` (the sort key).
type ByPath<'v> = Vec<(usize, Box<dyn Val + 'v>)>;

/// Parses every `Cookie` header of `headers` (HTTP/2 may split one into several).
pub(crate) fn parse<'v>(headers: &http::HeaderMap) -> CelMap<'v> {
    let mut by_name: HashMap<String, Vec<Box<dyn Val + 'v>>> = HashMap::new();
    let pairs = headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.split_once('='));
    for (name, value) in pairs {
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        let value = unquote(value.trim());
        by_name
            .entry(name.to_owned())
            .or_default()
            .push(Box::new(cookie(name, value)));
    }
    by_name_map(by_name)
}

/// Parses every `Set-Cookie` header of `headers`.
pub(crate) fn parse_set_cookies<'v>(headers: &http::HeaderMap) -> CelMap<'v> {
    let mut by_name: HashMap<String, ByPath<'v>> = HashMap::new();
    let lines = headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok());
    for line in lines {
        if let Some((name, path_len, cookie)) = set_cookie(line) {
            by_name
                .entry(name)
                .or_default()
                .push((path_len, Box::new(cookie)));
        }
    }
    by_name_map(
        by_name
            .into_iter()
            .map(|(name, mut list)| {
                // Stable: same-length paths keep header order.
                list.sort_by_key(|(path_len, _)| std::cmp::Reverse(*path_len));
                (name, list.into_iter().map(|(_, c)| c).collect())
            })
            .collect(),
    )
}

/// One `Set-Cookie` line: its name, the length of its path, and the cookie map.
fn set_cookie<'v>(line: &str) -> Option<(String, usize, CelMap<'v>)> {
    let mut parts = line.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let mut fields = Fields::new();
    put_text(&mut fields, "name", name);
    put_text(&mut fields, "value", unquote(value.trim()));
    let (mut domain, mut path, mut same_site) = ("", "", "");
    let (mut http_only, mut secure) = (false, false);
    let mut unparsed = Fields::new();
    for attribute in parts {
        let (key, val) = attribute
            .split_once('=')
            .map_or((attribute.trim(), ""), |(k, v)| (k.trim(), v.trim()));
        match key.to_ascii_lowercase().as_str() {
            "" => {}
            "domain" => domain = val,
            "path" => path = val,
            "samesite" => same_site = val,
            "httponly" => http_only = true,
            "secure" => secure = true,
            "expires" => {
                if let Some(t) = expires(val) {
                    fields.insert(CelMapKey::from("expires".to_owned()), Box::new(t));
                }
            }
            "max-age" => {
                if let Ok(seconds) = val.parse::<i64>() {
                    let age = CelDuration::from(chrono::Duration::seconds(seconds));
                    fields.insert(CelMapKey::from("max_age".to_owned()), Box::new(age));
                }
            }
            _ => put_text(&mut unparsed, key, val),
        }
    }
    put_text(&mut fields, "domain", domain);
    put_text(&mut fields, "path", path);
    put_text(&mut fields, "same_site", same_site);
    fields.insert(
        CelMapKey::from("http_only".to_owned()),
        Box::new(CelBool::from(http_only)),
    );
    fields.insert(
        CelMapKey::from("secure".to_owned()),
        Box::new(CelBool::from(secure)),
    );
    fields.insert(
        CelMapKey::from("unparsed_attributes".to_owned()),
        Box::new(CelMap::from(unparsed)),
    );
    Some((name.to_owned(), path.len(), CelMap::from(fields)))
}

/// An `Expires` date: RFC 1123 (`Wed, 21 Oct 2015 07:28:00 GMT`) or the dashed Netscape form.
fn expires(value: &str) -> Option<CelTimestamp> {
    if let Ok(t) = DateTime::parse_from_rfc2822(value) {
        return Some(CelTimestamp::from(t));
    }
    let trimmed = value.strip_suffix(" GMT")?;
    NaiveDateTime::parse_from_str(trimmed, "%a, %d-%b-%Y %H:%M:%S")
        .ok()
        .map(|t| CelTimestamp::from(t.and_utc().fixed_offset()))
}

fn by_name_map<'v>(by_name: HashMap<String, Vec<Box<dyn Val + 'v>>>) -> CelMap<'v> {
    let map: Fields<'v> = by_name
        .into_iter()
        .map(|(name, list)| {
            (
                CelMapKey::from(name),
                Box::new(CelList::from(list)) as Box<dyn Val + 'v>,
            )
        })
        .collect();
    CelMap::from(map)
}

fn cookie<'v>(name: &str, value: &str) -> CelMap<'v> {
    let mut fields = Fields::new();
    put_text(&mut fields, "name", name);
    put_text(&mut fields, "value", value);
    CelMap::from(fields)
}

fn put_text(fields: &mut Fields<'_>, key: &str, value: &str) {
    fields.insert(
        CelMapKey::from(key.to_owned()),
        Box::new(CelString::from(value.to_owned())),
    );
}

/// RFC 6265 allows a value in double quotes; the quotes are not part of it.
fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}
