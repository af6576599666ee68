//! Input rules: names, descriptions and secret values.

use crate::error::{Result, StoreError};

/// Longest vault or secret name, in characters.
pub const MAX_NAME_LEN: usize = 64;
/// Largest secret value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Longest description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;

/// Checks a vault or secret name against `[A-Za-z0-9_.-]{1,64}`; `kind` is "vault" or "secret".
pub fn check_name(kind: &str, name: &str) -> Result<()> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if name.is_empty() || name.len() > MAX_NAME_LEN || !valid_chars {
        return Err(StoreError::Invalid(format!(
            "invalid {kind} name '{}': names are 1 to {MAX_NAME_LEN} characters from A-Z, a-z, 0-9, '_', '.' and '-'",
            name.escape_debug()
        )));
    }
    Ok(())
}

/// Checks a description: at most 1024 bytes, no control characters other than tab and newline.
pub fn check_description(description: &str) -> Result<()> {
    if description.len() > MAX_DESCRIPTION_BYTES {
        return Err(StoreError::Invalid(format!(
            "description is {} bytes long; the limit is {MAX_DESCRIPTION_BYTES}",
            description.len()
        )));
    }
    if description
        .chars()
        .any(|c| c.is_control() && c != '\t' && c != '\n')
    {
        return Err(StoreError::Invalid(
            "description contains control characters".to_owned(),
        ));
    }
    Ok(())
}

/// Checks a secret value: non-empty and at most 64 KiB. The value itself never appears in the error.
pub fn check_value(value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(StoreError::Invalid("secret value is empty".to_owned()));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(StoreError::Invalid(format!(
            "secret value is {} bytes long; the limit is {MAX_VALUE_BYTES} bytes (64 KiB)",
            value.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_charset_and_length_rules() {
        for ok in ["a", "gateway-auth", "api_key.v2", "A9", &"x".repeat(64)] {
            assert!(check_name("vault", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "has space",
            "slash/inside",
            "ümlaut",
            "nul\0",
            &"x".repeat(65),
        ] {
            let err = check_name("secret", bad).unwrap_err();
            assert!(err.is_invalid_input());
            assert!(err.to_string().starts_with("invalid secret name"), "{err}");
        }
    }

    #[test]
    fn values_must_be_non_empty_and_at_most_64_kib() {
        assert!(check_value("x").is_ok());
        assert!(check_value(&"x".repeat(MAX_VALUE_BYTES)).is_ok());
        assert!(check_value("").is_err());
        let err = check_value(&"y".repeat(MAX_VALUE_BYTES + 1)).unwrap_err();
        assert!(!err.to_string().contains("yyy"));
    }

    #[test]
    fn descriptions_are_bounded() {
        assert!(check_description("").is_ok());
        assert!(check_description("line one\nline two\tend").is_ok());
        assert!(check_description(&"d".repeat(MAX_DESCRIPTION_BYTES + 1)).is_err());
        assert!(check_description("bell\u{7}").is_err());
    }
}
