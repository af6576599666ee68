//! Where values lie in JSON text, found without building a tree, so that the few fields a text
//! delta lives in can be rewritten in place and every other byte of the event kept as it came.
//! Only what is looked up is checked; a document that is not JSON where it is walked yields
//! `None`.

use std::ops::Range;

/// The value starting at `at` (after whitespace): its range.
pub(super) fn value(json: &[u8], at: usize) -> Option<Range<usize>> {
    let start = skip_space(json, at);
    let end = match json.get(start)? {
        b'"' => string_end(json, start)?,
        b'{' | b'[' => container_end(json, start)?,
        _ => {
            let len = json[start..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace())
                .unwrap_or(json.len() - start);
            (len > 0).then_some(start + len)?
        }
    };
    Some(start..end)
}

/// The values of `keys` in the object opening at `at` (after whitespace), walked once: for
/// each key its last entry, the one JSON parsers (serde_json, Python, JavaScript) keep, so a
/// duplicate cannot smuggle text past. `None` when it is not an object.
pub(super) fn object<const N: usize>(
    json: &[u8],
    at: usize,
    keys: [&str; N],
) -> Option<[Option<Range<usize>>; N]> {
    let mut found = [const { None }; N];
    members(json, at, |key, value| {
        if let Some(i) = key_index(&json[key], &keys) {
            found[i] = Some(value);
        }
    })?;
    Some(found)
}

/// Calls `each` with the range of every member's key (a JSON string, quotes included) and value
/// in the object opening at `at` (after whitespace). `None` when it is not an object.
pub(super) fn members(
    json: &[u8],
    at: usize,
    mut each: impl FnMut(Range<usize>, Range<usize>),
) -> Option<()> {
    entries(json, skip_space(json, at), b'{', |key| {
        let colon = skip_space(json, key.end);
        if json.get(colon) != Some(&b':') {
            return None;
        }
        let value = value(json, colon + 1)?;
        let end = value.end;
        each(key.clone(), value);
        Some(end)
    })
}

/// The elements of the array at `array`.
pub(super) fn elements(json: &[u8], array: &Range<usize>) -> Option<Vec<Range<usize>>> {
    let mut all = Vec::new();
    entries(json, array.start, b'[', |entry| {
        all.push(entry.clone());
        Some(entry.end)
    })?;
    Some(all)
}

/// The string at `range`, unescaped (`None` if it is not a string).
pub(super) fn string(json: &[u8], range: &Range<usize>) -> Option<String> {
    if json.get(range.start) != Some(&b'"') {
        return None;
    }
    serde_json::from_slice(&json[range.clone()]).ok()
}

/// The number at `range`, if it is a non-negative integer.
pub(super) fn number(json: &[u8], range: &Range<usize>) -> Option<u64> {
    std::str::from_utf8(&json[range.clone()]).ok()?.parse().ok()
}

/// Whether the value at `range` is present and not `null`.
pub(super) fn is_set(json: &[u8], range: Option<&Range<usize>>) -> bool {
    range.is_some_and(|range| &json[range.clone()] != b"null")
}

/// `text` as a JSON string.
pub(super) fn encode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 2);
    // Into a `Vec` a string always serializes.
    serde_json::to_writer(&mut out, text).expect("a string written into a Vec");
    out
}

/// Calls `each` with the range starting each entry of the container opening (with `open`) at
/// `start`: for an object the key, for an array the element. `each` returns where the entry
/// ends.
fn entries(
    json: &[u8],
    start: usize,
    open: u8,
    mut each: impl FnMut(&Range<usize>) -> Option<usize>,
) -> Option<()> {
    let close = if open == b'{' { b'}' } else { b']' };
    if json.get(start) != Some(&open) {
        return None;
    }
    let mut at = skip_space(json, start + 1);
    if json.get(at) == Some(&close) {
        return Some(());
    }
    loop {
        let entry = if open == b'{' {
            at..string_end(json, at)?
        } else {
            value(json, at)?
        };
        at = skip_space(json, each(&entry)?);
        match json.get(at)? {
            b',' => at = skip_space(json, at + 1),
            b if *b == close => return Some(()),
            _ => return None,
        }
    }
}

/// Which of `keys` the raw key `raw` (a JSON string, quotes included) is.
fn key_index(raw: &[u8], keys: &[&str]) -> Option<usize> {
    let inner = &raw[1..raw.len() - 1];
    if inner.contains(&b'\\') {
        let key: String = serde_json::from_slice(raw).ok()?;
        return keys.iter().position(|k| *k == key);
    }
    keys.iter().position(|k| k.as_bytes() == inner)
}

fn skip_space(json: &[u8], at: usize) -> usize {
    at + json.get(at..).map_or(0, |rest| {
        rest.iter().take_while(|b| b.is_ascii_whitespace()).count()
    })
}

/// The end (past the closing quote) of the string whose opening quote is at `start` (a byte
/// loop: an event's strings are shorter than a vectorized search's setup).
fn string_end(json: &[u8], start: usize) -> Option<usize> {
    if json.get(start) != Some(&b'"') {
        return None;
    }
    let mut at = start + 1;
    loop {
        match json.get(at)? {
            b'"' => return Some(at + 1),
            b'\\' => at += 2,
            _ => at += 1,
        }
    }
}

/// The end of the object or array opening at `start` (strings inside skipped whole).
fn container_end(json: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut at = start;
    loop {
        at += json
            .get(at..)?
            .iter()
            .position(|b| matches!(b, b'"' | b'{' | b'}' | b'[' | b']'))?;
        match json[at] {
            b'"' => {
                at = string_end(json, at)?;
                continue;
            }
            b'{' | b'[' => depth += 1,
            _ => {
                depth -= 1;
                if depth == 0 {
                    return Some(at + 1);
                }
            }
        }
        at += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_fields_elements_and_strings_with_escapes_and_nesting() {
        let json =
            br#" { "a" : [1, {"b": "x\"}]"}, null ] , "k\u0065y": "v\\" ,"n":-12e3, "t":true} "#;
        assert_eq!(value(json, 0).unwrap().end, json.len() - 1);
        let [a, key, n, t, missing] = object(json, 0, ["a", "key", "n", "t", "missing"]).unwrap();
        let items = elements(json, &a.unwrap()).unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(&json[items[0].clone()], b"1");
        let [b] = object(json, items[1].start, ["b"]).unwrap();
        assert_eq!(string(json, &b.unwrap()).as_deref(), Some("x\"}]"));
        assert!(!is_set(json, Some(&items[2])));
        assert_eq!(string(json, &key.unwrap()).as_deref(), Some("v\\"));
        assert_eq!(&json[n.unwrap()], b"-12e3");
        assert_eq!(&json[t.unwrap()], b"true");
        assert_eq!(missing, None);
        let twice = br#"{"a":"first","a":"last"}"#;
        let [a] = object(twice, 0, ["a"]).unwrap();
        assert_eq!(string(twice, &a.unwrap()).as_deref(), Some("last"));
        assert_eq!(elements(b"[]", &value(b"[]", 0).unwrap()), Some(vec![]));
        assert_eq!(object(b"{}", 0, ["a"]), Some([None]));
    }

    #[test]
    fn what_is_not_json_where_it_is_walked_is_none() {
        for bad in [
            &b"{\"a\" 1}"[..],
            b"{\"a\":1",
            b"[1 2]",
            b"{\"a\":\"open}",
            b"{a:1}",
        ] {
            let text = String::from_utf8_lossy(bad);
            assert_eq!(object(bad, 0, ["a"]), None, "{text}");
        }
        assert_eq!(elements(b"[1 2]", &(0..5)), None);
        assert_eq!(value(b"   ", 0), None);
        assert_eq!(number(b"-1", &(0..2)), None);
        assert_eq!(string(b"12", &(0..2)), None);
    }
}
