//! Per-key scopes: the providers and models an access key may use, as lists of `*` patterns.

use crate::error::{KeyError, Result};

/// Most patterns in one scope list.
pub const MAX_SCOPE_PATTERNS: usize = 64;
/// Longest pattern, in bytes.
pub const MAX_SCOPE_PATTERN_LEN: usize = 128;

/// Which list a pattern belongs to; they differ in charset and in the `provider:model` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScopeKind {
    Providers,
    Models,
}

impl ScopeKind {
    fn name(self) -> &'static str {
        match self {
            Self::Providers => "allowed providers",
            Self::Models => "allowed models",
        }
    }

    /// Provider patterns use the provider id charset; model names are freer (`meta-llama/Llama-3.1-8B`,
    /// `llama3:8b`), and `:` also separates a model pattern's provider part.
    fn allows_byte(self, b: u8) -> bool {
        let provider =
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-' | b'*');
        match self {
            Self::Providers => provider,
            Self::Models => provider || b.is_ascii_uppercase() || matches!(b, b'/' | b':' | b'@'),
        }
    }
}

/// Parses `--allowed-providers`: comma-separated provider patterns; an empty string clears the list.
pub fn parse_allowed_providers(text: &str) -> Result<Vec<String>> {
    parse_list(text, ScopeKind::Providers)
}

/// Parses `--allowed-models`: comma-separated model patterns; an empty string clears the list.
pub fn parse_allowed_models(text: &str) -> Result<Vec<String>> {
    parse_list(text, ScopeKind::Models)
}

/// Splits at commas, ignoring spaces around them; an empty string is an empty list (no restriction).
fn parse_list(text: &str, kind: ScopeKind) -> Result<Vec<String>> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let patterns: Vec<String> = text.split(',').map(|p| p.trim().to_owned()).collect();
    check_scope_list(&patterns, kind)?;
    Ok(patterns)
}

/// Checks a list of patterns: at most [`MAX_SCOPE_PATTERNS`], each 1 to [`MAX_SCOPE_PATTERN_LEN`] bytes from
/// the kind's charset.
pub(crate) fn check_scope_list(patterns: &[String], kind: ScopeKind) -> Result<()> {
    if patterns.len() > MAX_SCOPE_PATTERNS {
        return Err(KeyError::Invalid(format!(
            "{} lists {} patterns; the limit is {MAX_SCOPE_PATTERNS}",
            kind.name(),
            patterns.len()
        )));
    }
    patterns
        .iter()
        .try_for_each(|pattern| check_pattern(pattern, kind))
}

fn check_pattern(pattern: &str, kind: ScopeKind) -> Result<()> {
    let invalid = |why: &str| {
        Err(KeyError::Invalid(format!(
            "invalid pattern '{}' in {}: {why}",
            pattern.escape_debug(),
            kind.name()
        )))
    };
    if pattern.is_empty() {
        return invalid("patterns may not be empty");
    }
    if pattern.len() > MAX_SCOPE_PATTERN_LEN {
        return invalid(&format!(
            "patterns are at most {MAX_SCOPE_PATTERN_LEN} characters"
        ));
    }
    if !pattern.bytes().all(|b| kind.allows_byte(b)) {
        return invalid(match kind {
            ScopeKind::Providers => "provider patterns use a-z, 0-9, '_', '.', '-' and '*'",
            ScopeKind::Models => {
                "model patterns use letters, digits, '_', '.', '-', '/', ':', '@' and '*'"
            }
        });
    }
    if kind == ScopeKind::Models
        && pattern
            .split_once(':')
            .is_some_and(|(p, m)| p.is_empty() || m.is_empty())
    {
        return invalid("a 'provider:model' pattern needs both parts");
    }
    Ok(())
}

/// A pattern where `*` matches any run of characters, split once into its literal pieces.
#[derive(Debug)]
struct Glob {
    /// The text between stars; one piece means no star (an exact match).
    pieces: Box<[Box<str>]>,
}

impl Glob {
    fn new(pattern: &str) -> Self {
        Self {
            pieces: pattern.split('*').map(Box::from).collect(),
        }
    }

    /// Anchors the first and last pieces, then finds the middle ones leftmost-first, which is enough when
    /// the only wildcard is `*`.
    fn matches(&self, text: &str) -> bool {
        let (first, rest) = self.pieces.split_first().expect("split yields a piece");
        let Some((last, middle)) = rest.split_last() else {
            return text == &**first;
        };
        if text.len() < first.len() + last.len()
            || !text.starts_with(&**first)
            || !text.ends_with(&**last)
        {
            return false;
        }
        let mut inner = &text[first.len()..text.len() - last.len()];
        middle.iter().all(|piece| match inner.find(&**piece) {
            Some(at) => {
                inner = &inner[at + piece.len()..];
                true
            }
            None => false,
        })
    }
}

/// A model pattern, optionally limited to providers (`openai:gpt-4o*`).
#[derive(Debug)]
struct ModelGlob {
    provider: Option<Glob>,
    model: Glob,
}

impl ModelGlob {
    fn new(pattern: &str) -> Self {
        match pattern.split_once(':') {
            Some((provider, model)) => Self {
                provider: Some(Glob::new(provider)),
                model: Glob::new(model),
            },
            None => Self {
                provider: None,
                model: Glob::new(pattern),
            },
        }
    }

    fn matches(&self, provider: &str, model: &str) -> bool {
        self.provider
            .as_ref()
            .is_none_or(|glob| glob.matches(provider))
            && self.model.matches(model)
    }
}

/// An access key's scopes, as written and compiled; empty lists allow everything.
#[derive(Debug)]
pub(crate) struct Scopes {
    provider_patterns: Vec<String>,
    model_patterns: Vec<String>,
    providers: Box<[Glob]>,
    models: Box<[ModelGlob]>,
}

impl Scopes {
    pub(crate) fn new(provider_patterns: Vec<String>, model_patterns: Vec<String>) -> Self {
        Self {
            providers: provider_patterns.iter().map(|p| Glob::new(p)).collect(),
            models: model_patterns.iter().map(|m| ModelGlob::new(m)).collect(),
            provider_patterns,
            model_patterns,
        }
    }

    pub(crate) fn providers(&self) -> &[String] {
        &self.provider_patterns
    }

    pub(crate) fn models(&self) -> &[String] {
        &self.model_patterns
    }

    pub(crate) fn allows_provider(&self, provider: &str) -> bool {
        self.providers.is_empty() || self.providers.iter().any(|glob| glob.matches(provider))
    }

    pub(crate) fn allows_model(&self, provider: &str, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|glob| glob.matches(provider, model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(providers: &[&str], models: &[&str]) -> Scopes {
        let own = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Scopes::new(own(providers), own(models))
    }

    #[test]
    fn star_matches_any_run_anywhere() {
        for (pattern, text, expected) in [
            ("gpt-4o", "gpt-4o", true),
            ("gpt-4o", "gpt-4o-mini", false),
            ("gpt-4o*", "gpt-4o-mini", true),
            ("gpt-4o*", "gpt-4o", true),
            ("gpt-4o*", "gpt-4", false),
            ("*-mini", "gpt-4o-mini", true),
            ("*-mini", "gpt-4o", false),
            ("claude-*-sonnet*", "claude-3-5-sonnet-latest", true),
            ("claude-*-sonnet*", "claude-3-haiku", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("*a*b*", "xaxbx", true),
            ("*a*b*", "xbxax", false),
            ("*", "", true),
            ("**", "anything", true),
        ] {
            assert_eq!(
                Glob::new(pattern).matches(text),
                expected,
                "{pattern} vs {text}"
            );
        }
    }

    #[test]
    fn model_patterns_may_name_providers() {
        let scoped = scopes(&[], &["openai:gpt-4o*", "claude-*"]);
        assert!(scoped.allows_model("openai", "gpt-4o"));
        assert!(!scoped.allows_model("azure", "gpt-4o"));
        assert!(scoped.allows_model("anthropic", "claude-3-haiku"));
        assert!(scoped.allows_model("bedrock", "claude-3-haiku"));
        assert!(!scoped.allows_model("openai", "o1"));
        assert!(scopes(&[], &["ollama:llama3:*"]).allows_model("ollama", "llama3:8b"));
    }

    #[test]
    fn empty_lists_allow_everything() {
        let open = scopes(&[], &[]);
        assert!(open.allows_provider("openai") && open.allows_model("openai", "gpt-4o"));
        let only = scopes(&["anthropic", "open*"], &[]);
        assert!(only.allows_provider("anthropic") && only.allows_provider("openai"));
        assert!(!only.allows_provider("mistral"));
        assert!(only.allows_model("mistral", "any"));
    }

    #[test]
    fn lists_are_validated() {
        assert_eq!(parse_allowed_models("").unwrap(), Vec::<String>::new());
        assert_eq!(
            parse_allowed_models("gpt-4o*, openai:o1 ,meta-llama/Llama-3.1-8B").unwrap(),
            ["gpt-4o*", "openai:o1", "meta-llama/Llama-3.1-8B"]
        );
        assert_eq!(
            parse_allowed_providers("openai,anthropic").unwrap(),
            ["openai", "anthropic"]
        );
        for (text, kind, message) in [
            (
                "OpenAI",
                ScopeKind::Providers,
                "invalid pattern 'OpenAI' in allowed providers: provider patterns use a-z",
            ),
            (
                "openai:x",
                ScopeKind::Providers,
                "invalid pattern 'openai:x' in allowed providers",
            ),
            (
                "gpt 4",
                ScopeKind::Models,
                "invalid pattern 'gpt 4' in allowed models: model patterns use letters",
            ),
            (
                "a,,b",
                ScopeKind::Models,
                "invalid pattern '' in allowed models: patterns may not be empty",
            ),
            (
                ":gpt",
                ScopeKind::Models,
                "a 'provider:model' pattern needs both parts",
            ),
            (
                "openai:",
                ScopeKind::Models,
                "a 'provider:model' pattern needs both parts",
            ),
        ] {
            let err = parse_list(text, kind).unwrap_err();
            assert!(err.is_invalid_input());
            assert!(err.to_string().contains(message), "{text}: {err}");
        }
        let long = "x".repeat(MAX_SCOPE_PATTERN_LEN + 1);
        assert!(parse_allowed_models(&long)
            .unwrap_err()
            .to_string()
            .contains("at most 128 characters"));
        assert!(parse_allowed_models(&"x".repeat(MAX_SCOPE_PATTERN_LEN)).is_ok());
        let many = vec!["m"; MAX_SCOPE_PATTERNS + 1].join(",");
        assert_eq!(
            parse_allowed_models(&many).unwrap_err().to_string(),
            "allowed models lists 65 patterns; the limit is 64"
        );
    }
}
