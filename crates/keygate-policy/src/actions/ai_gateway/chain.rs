//! Splits a model-selection strategy into its outer call chain so that ngrok's AI collection
//! methods (`only`, `onlyProviders`, `sortBy('price')`, `random()`, ...), which are not CEL
//! functions, can run in Rust between plain-CEL steps.
//!
//! `ai.models.filter(m, m.known).onlyProviders(['openai']).random()` becomes the CEL base
//! `ai.models.filter(m, m.known)`, then `onlyProviders(['openai'])` and `random()`. Plain-CEL
//! segments after an AI method become expressions over the variable `_kg_cur`.

/// The AI collection methods handled outside CEL.
const AI_METHODS: [&str; 13] = [
    "only",
    "ignore",
    "onlyProviders",
    "ignoreProviders",
    "onlyAuthors",
    "ignoreAuthors",
    "underCost",
    "inRegion",
    "inCountryCode",
    "sortBy",
    "random",
    "randomize",
    "get",
];

/// One piece of a strategy's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// CEL source: the base (first piece) or a suffix to apply to `_kg_cur` (`.filter(...)`, `[0]`).
    Cel(&'a str),
    /// An AI method and its argument sources.
    Method { name: &'a str, args: Vec<&'a str> },
}

/// Splits `source`; a strategy without AI methods is one [`Piece::Cel`].
pub fn split(source: &str) -> Result<Vec<Piece<'_>>, String> {
    let bytes = source.as_bytes();
    let mut starts = Vec::new();
    let mut depth = 0usize;
    let mut top_level_operator = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\'' | b'"' => {
                i = skip_string(bytes, i);
                continue;
            }
            b'(' | b'[' | b'{' => {
                if depth == 0 && b == b'[' && i > 0 {
                    starts.push(i);
                }
                depth += 1;
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'.' if depth == 0 => {
                let prev_digit = i > 0 && bytes[i - 1].is_ascii_digit();
                let next_ident = bytes
                    .get(i + 1)
                    .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_');
                if next_ident && !prev_digit {
                    starts.push(i);
                }
            }
            b'?' | b':' | b'+' | b'-' | b'*' | b'/' | b'%' | b'<' | b'>' | b'=' | b'!' | b'&'
            | b'|' | b','
                if depth == 0 =>
            {
                top_level_operator = true
            }
            b' ' | b'\t' | b'\n' | b'\r' if depth == 0 => {
                let rest = &source[i..].trim_start();
                if rest.starts_with("in ") {
                    top_level_operator = true;
                }
            }
            _ => {}
        }
        i += 1;
    }
    let mut segments: Vec<&str> = Vec::new();
    let first = starts.first().copied().unwrap_or(bytes.len());
    let base = &source[..first];
    for (n, start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(bytes.len());
        segments.push(&source[*start..end]);
    }
    let mut pieces: Vec<Piece<'_>> = Vec::new();
    let mut cel_start: Option<usize> = Some(0);
    let mut offset = base.len();
    let mut previous = base;
    for segment in segments {
        let method =
            parse_method(segment).filter(|(name, args)| is_ai_method(name, args, previous));
        match method {
            Some((name, args)) => {
                if let Some(start) = cel_start.take() {
                    pieces.push(Piece::Cel(source[start..offset].trim()));
                }
                pieces.push(Piece::Method { name, args });
            }
            None => {
                if cel_start.is_none() {
                    cel_start = Some(offset);
                }
            }
        }
        previous = segment;
        offset += segment.len();
    }
    if let Some(start) = cel_start {
        pieces.push(Piece::Cel(source[start..].trim()));
    }
    let has_methods = pieces.iter().any(|p| matches!(p, Piece::Method { .. }));
    let nested = !has_methods && mentions_ai_method(source);
    if (has_methods && top_level_operator) || nested {
        return Err("AI collection methods (only, onlyProviders, sortBy('price'), random, ...) must form the outer call chain of a strategy".into());
    }
    if !has_methods {
        return Ok(vec![Piece::Cel(source.trim())]);
    }
    Ok(pieces)
}

/// Whether an unambiguous AI method (`.only(`, `.random(`, ...) appears anywhere outside strings.
fn mentions_ai_method(source: &str) -> bool {
    let bytes = source.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => {
                i = skip_string(bytes, i);
                continue;
            }
            b'.' => {
                let rest = &source[i + 1..];
                let name_len = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                let (name, after) = rest.split_at(name_len);
                if after.starts_with('(')
                    && AI_METHODS.contains(&name)
                    && name != "sortBy"
                    && name != "get"
                {
                    return true;
                }
            }
            _ => {}
        }
        i += 1;
    }
    false
}

/// `.name(args)` → (name, top-level argument sources).
fn parse_method(segment: &str) -> Option<(&str, Vec<&str>)> {
    let rest = segment.strip_prefix('.')?;
    let open = rest.find('(')?;
    let name = &rest[..open];
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    let inner = rest[open + 1..].trim_end().strip_suffix(')')?;
    Some((name, split_args(inner)))
}

/// Whether `.name(args)` is an AI method rather than a CEL one of the same name.
fn is_ai_method(name: &str, args: &[&str], previous: &str) -> bool {
    if !AI_METHODS.contains(&name) {
        return false;
    }
    match name {
        // `sortBy(m, key)` is the CEL lists macro; `sortBy('price')` is ngrok's.
        "sortBy" => args.len() == 1,
        // `secrets.get(vault, name)` stays CEL.
        "get" => !previous.ends_with("secrets"),
        _ => true,
    }
}

/// Splits at top-level commas; an empty argument list gives no arguments.
fn split_args(inner: &str) -> Vec<&str> {
    if inner.trim().is_empty() {
        return Vec::new();
    }
    let bytes = inner.as_bytes();
    let mut args = Vec::new();
    let (mut depth, mut start, mut i) = (0usize, 0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => {
                i = skip_string(bytes, i);
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 0 => {
                args.push(inner[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    args.push(inner[start..].trim());
    args
}

/// The index just past the string literal starting at `start` (single, double or triple quoted).
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let triple = bytes.get(start + 1) == Some(&quote) && bytes.get(start + 2) == Some(&quote);
    let mut i = start + if triple { 3 } else { 1 };
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            if !triple {
                return i + 1;
            }
            if bytes.get(i + 1) == Some(&quote) && bytes.get(i + 2) == Some(&quote) {
                return i + 3;
            }
        }
        i += 1;
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method<'a>(name: &'a str, args: &[&'a str]) -> Piece<'a> {
        Piece::Method {
            name,
            args: args.to_vec(),
        }
    }

    #[test]
    fn plain_cel_is_one_piece() {
        assert_eq!(
            split("ai.models.filter(m, m.provider_id == 'openai')").unwrap(),
            [Piece::Cel("ai.models.filter(m, m.provider_id == 'openai')")]
        );
        assert_eq!(
            split("ai.models.sortBy(m, m.pricing.input)[0]").unwrap(),
            [Piece::Cel("ai.models.sortBy(m, m.pricing.input)[0]")]
        );
        assert_eq!(
            split("size(ai.models) > 0 ? ai.models : []").unwrap().len(),
            1
        );
    }

    #[test]
    fn ai_methods_split_the_chain() {
        assert_eq!(
            split("ai.models.filter(m, m.known).onlyProviders(['openai', 'anthropic']).sortBy('price')").unwrap(),
            [Piece::Cel("ai.models.filter(m, m.known)"), method("onlyProviders", &["['openai', 'anthropic']"]), method("sortBy", &["'price'"])]
        );
        assert_eq!(
            split("ai.models.randomize().filter(m, m.id.contains('.')).random()").unwrap(),
            [
                Piece::Cel("ai.models"),
                method("randomize", &[]),
                Piece::Cel(".filter(m, m.id.contains('.'))"),
                method("random", &[])
            ]
        );
        assert_eq!(
            split("ai.models.underCost('text.input', 1.5)[0]").unwrap(),
            [
                Piece::Cel("ai.models"),
                method("underCost", &["'text.input'", "1.5"]),
                Piece::Cel("[0]")
            ]
        );
        assert_eq!(
            split("ai.models.get('openai', 'gpt-4o')").unwrap()[1],
            method("get", &["'openai'", "'gpt-4o'"])
        );
    }

    #[test]
    fn ai_methods_inside_operators_are_refused() {
        assert!(split("true ? ai.models.random() : ai.models").is_err());
        assert!(split("ai.models.only(['a']) + ai.models").is_err());
    }

    #[test]
    fn strings_hide_dots_and_parens() {
        assert_eq!(
            split("ai.models.only(['a.b(', \"x'y\"]).random()").unwrap(),
            [
                Piece::Cel("ai.models"),
                method("only", &["['a.b(', \"x'y\"]"]),
                method("random", &[])
            ]
        );
    }
}
