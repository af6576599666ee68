//! Tests that run once on SQLite and once on a throwaway PostgreSQL ([`on_both_backends!`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::parts::require;
use crate::postgres::PostgresServer;

/// A directory under the system's temporary directory, removed (with its contents) on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, not yet created path named after `label`, the process and a counter.
    pub fn new(label: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "keygate-{label}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A database for one test and what keeps it alive: on SQLite a data directory (`url` is its path,
/// which `--database` and `Database::open` read as `DIR/keygate.db`), on PostgreSQL a fresh database
/// on a throwaway cluster (`dir` is then an empty directory for whatever else the test keeps).
pub struct TestDatabase {
    pub url: String,
    pub dir: TempDir,
    pub server: Option<PostgresServer>,
}

impl TestDatabase {
    pub fn sqlite(label: &str) -> Self {
        let dir = TempDir::new(label);
        Self {
            url: dir
                .path()
                .to_str()
                .expect("a UTF-8 temporary path")
                .to_owned(),
            dir,
            server: None,
        }
    }

    /// `None` (reported in one line) when PostgreSQL is not installed.
    pub fn postgres(label: &str) -> Option<Self> {
        let server = require(PostgresServer::start())?;
        Some(Self {
            url: server.create_database("keygate"),
            dir: TempDir::new(label),
            server: Some(server),
        })
    }

    pub fn is_postgres(&self) -> bool {
        self.server.is_some()
    }
}

/// Defines, for each named function `fn NAME(fixture: &F)`, a module `NAME` with tests `sqlite` and
/// `postgres` that call it with a [`TestDatabase`] of that backend converted into `F` (`From`): the
/// database itself, or a fixture of the test's own built from it.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                let database = $crate::TestDatabase::sqlite(stringify!($name));
                super::$name(&::core::convert::From::from(database));
            }
            #[test]
            fn postgres() {
                if let Some(database) = $crate::TestDatabase::postgres(stringify!($name)) {
                    super::$name(&::core::convert::From::from(database));
                }
            }
        }
    )*};
}
