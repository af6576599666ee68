//! Lexical helpers shared by the size guard and the template splitter: skipping CEL string
//! literals (quotes, triple quotes, raw and bytes prefixes, escapes).

/// If a string literal starts at `i` (at its opening quote), the index just past its closing
/// quote, or `None` when it is unterminated. The caller checks `bytes[i]` is a quote.
pub(crate) fn skip_string(bytes: &[u8], i: usize) -> Option<usize> {
    let quote = bytes[i];
    let raw = is_raw_prefix(bytes, i);
    let triple = bytes.get(i..i + 3) == Some(&[quote, quote, quote][..]);
    let mut j = if triple { i + 3 } else { i + 1 };
    while j < bytes.len() {
        let b = bytes[j];
        if b == b'\\' && !raw {
            j += 2;
            continue;
        }
        if b == quote {
            if !triple {
                return Some(j + 1);
            }
            if bytes.get(j..j + 3) == Some(&[quote, quote, quote][..]) {
                return Some(j + 3);
            }
        } else if b == b'\n' && !triple {
            return None;
        }
        j += 1;
    }
    None
}

/// Whether the quote at `i` follows an `r`/`R` prefix (`r'..'`, `br'..'`, `rb'..'`).
fn is_raw_prefix(bytes: &[u8], i: usize) -> bool {
    let prefix_start = |len: usize| i.checked_sub(len);
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let standalone = |start: usize| start == 0 || !is_ident(bytes[start - 1]);
    match (
        prefix_start(1).map(|p| bytes[p].to_ascii_lowercase()),
        prefix_start(2).map(|p| bytes[p].to_ascii_lowercase()),
    ) {
        (Some(b'r'), Some(b'b')) => prefix_start(2).is_some_and(standalone),
        (Some(b'b'), Some(b'r')) => prefix_start(2).is_some_and(standalone),
        (Some(b'r'), _) => prefix_start(1).is_some_and(standalone),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::skip_string;

    #[test]
    fn skips_quoted_strings_with_escapes_and_triples() {
        let s = br#"'a\'b' x"#;
        assert_eq!(skip_string(s, 0), Some(6));
        let s = br#""""a"b""" x"#;
        assert_eq!(skip_string(s, 0), Some(9));
        let s = br"r'\' x";
        assert_eq!(skip_string(s, 1), Some(4));
        assert_eq!(skip_string(b"'open", 0), None);
    }
}
