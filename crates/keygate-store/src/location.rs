//! [`Location`]: where the database is, from the `--database` value.

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// File name of the SQLite database inside a data directory.
pub const DB_FILE: &str = "keygate.db";

/// Which database engine a [`crate::Database`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A parsed database location. `Display` hides any password.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (`postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=...`).
    Postgres(url::Url),
}

impl Location {
    /// Parses `postgres://...` or `postgresql://...` (PostgreSQL), `sqlite:PATH` (that SQLite file), or
    /// any other value as a data directory holding [`DB_FILE`].
    pub fn parse(value: &str) -> Result<Self> {
        let invalid = |why: String| Error::Location {
            location: redact(value),
            why,
        };
        if let Some(path) = value.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err(invalid("`sqlite:` needs a file path".into()));
            }
            return Ok(Location::Sqlite(PathBuf::from(path)));
        }
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            let url = url::Url::parse(value).map_err(|e| invalid(e.to_string()))?;
            return Ok(Location::Postgres(url));
        }
        if let Some((scheme, _)) = value.split_once("://") {
            return Err(invalid(format!(
                "unsupported scheme `{scheme}`: use postgres://..., sqlite:PATH or a data directory"
            )));
        }
        if value.is_empty() {
            return Err(invalid("empty".into()));
        }
        Ok(Location::Sqlite(PathBuf::from(value).join(DB_FILE)))
    }

    /// The engine at this location.
    pub fn backend(&self) -> Backend {
        match self {
            Location::Sqlite(_) => Backend::Sqlite,
            Location::Postgres(_) => Backend::Postgres,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Location::Postgres(url) => f.write_str(&redact(url.as_str())),
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

/// `value` with the password of a URL (and any `password=` query parameter) replaced by `***`.
fn redact(value: &str) -> String {
    let Ok(mut url) = url::Url::parse(value) else {
        // Not a URL: it may still carry `user:password@`, so show nothing past the scheme.
        return match value.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://***"),
            None => value.to_owned(),
        };
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    if url.query_pairs().any(|(k, _)| k == "password") {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "password" {
                    "***".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(
            Location::parse("/var/lib/keygate").unwrap(),
            Location::Sqlite(PathBuf::from("/var/lib/keygate/keygate.db"))
        );
        assert_eq!(
            Location::parse("sqlite:/tmp/x.db").unwrap(),
            Location::Sqlite(PathBuf::from("/tmp/x.db"))
        );
        let pg = Location::parse("postgres://kg:pw@127.0.0.1:5432/keygate").unwrap();
        assert_eq!(pg.backend(), Backend::Postgres);
        let pg = Location::parse("postgresql://127.0.0.1/keygate").unwrap();
        assert_eq!(pg.backend(), Backend::Postgres);
    }

    #[test]
    fn refuses_other_schemes_and_empty_values() {
        let err = Location::parse("mysql://u:secret@h/db")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsupported scheme `mysql`"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        assert!(Location::parse("").is_err());
        assert!(Location::parse("sqlite:").is_err());
    }

    #[test]
    fn passwords_never_show() {
        let pg = Location::parse("postgres://kg:s3cret@db:5432/keygate?sslmode=require").unwrap();
        let shown = pg.to_string();
        assert_eq!(shown, "postgres://kg:***@db:5432/keygate?sslmode=require");
        assert!(!format!("{pg:?}").contains("s3cret"));
        let pg = Location::parse("postgres://db/keygate?user=kg&password=s3cret").unwrap();
        assert!(!pg.to_string().contains("s3cret"), "{pg}");
        let err = Location::parse("postgres://kg:s3cret@[bad/x")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }
}
