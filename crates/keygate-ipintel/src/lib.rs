//! IP intelligence from files the operator supplies: MaxMind DB files (GeoLite2/GeoIP2 City or
//! Country for locations, ASN for autonomous systems, `--ip-intel-db`) and category lists
//! (`CIDR CATEGORY` lines, `--ip-categories`). [`IpFiles`] answers keygate-cel's
//! [`IpIntel`] for the `conn.geo.*` and `conn.client_ip.*` variables.
//!
//! Files are read whole into memory at start, and again by [`IpIntel::refresh`] (on policy
//! reload) when one of them changed; a failed re-read keeps the data already loaded.

mod categories;
mod maxmind;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use keygate_cel::{IpFacts, IpIntel, Provides};

use categories::Categories;
use maxmind::{Database, Kind};

/// Why the files could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{file}: {why}")]
    Read { file: String, why: std::io::Error },
    #[error("{file}: not a usable MaxMind DB file: {why}")]
    Database { file: String, why: String },
    #[error("{file}:{line}: {why}")]
    Categories {
        file: String,
        line: usize,
        why: String,
    },
}

/// The databases and category files, reloadable.
pub struct IpFiles {
    databases: Vec<PathBuf>,
    categories: Vec<PathBuf>,
    loaded: ArcSwap<Loaded>,
}

/// One reading of every file.
struct Loaded {
    geo: Vec<Database>,
    asn: Vec<Database>,
    categories: Categories,
    /// Each file's modification time and length when read, to tell whether a refresh must read.
    stamps: Vec<Option<(SystemTime, u64)>>,
}

impl IpFiles {
    /// Reads MaxMind DB files `databases` and category files `categories` (none at all is
    /// valid: the source then provides nothing).
    pub fn open(databases: &[PathBuf], categories: &[PathBuf]) -> Result<Self, LoadError> {
        let files = Self {
            databases: databases.to_vec(),
            categories: categories.to_vec(),
            loaded: ArcSwap::from_pointee(Loaded::empty()),
        };
        files.loaded.store(Arc::new(files.read()?));
        Ok(files)
    }

    fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        self.databases.iter().chain(&self.categories)
    }

    fn stamps(&self) -> Vec<Option<(SystemTime, u64)>> {
        self.paths().map(|path| stamp(path)).collect()
    }

    fn read(&self) -> Result<Loaded, LoadError> {
        let stamps = self.stamps();
        let mut loaded = Loaded::empty();
        for path in &self.databases {
            let database = Database::read(&name(path), read(path)?)?;
            match database.kind {
                Kind::Geo => loaded.geo.push(database),
                Kind::Asn => loaded.asn.push(database),
            }
        }
        for path in &self.categories {
            let text = String::from_utf8_lossy(&read(path)?).into_owned();
            loaded.categories.add_file(&name(path), &text)?;
        }
        loaded.stamps = stamps;
        Ok(loaded)
    }
}

impl Loaded {
    fn empty() -> Self {
        Self {
            geo: Vec::new(),
            asn: Vec::new(),
            categories: Categories::default(),
            stamps: Vec::new(),
        }
    }
}

fn name(path: &Path) -> String {
    path.display().to_string()
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|why| LoadError::Read {
        file: name(path),
        why,
    })
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl IpIntel for IpFiles {
    fn provides(&self) -> Provides {
        let loaded = self.loaded.load();
        Provides {
            geo: !loaded.geo.is_empty(),
            asn: !loaded.asn.is_empty(),
            categories: !loaded.categories.is_empty(),
        }
    }

    /// The first database of each kind holding `ip` answers for that kind.
    fn lookup(&self, ip: IpAddr) -> IpFacts {
        let loaded = self.loaded.load();
        let mut facts = IpFacts::default();
        if let Some((location, registered)) = loaded.geo.iter().find_map(|db| db.places(ip)) {
            facts.location = location;
            facts.registered = registered;
        }
        if let Some((number, organization)) =
            loaded.asn.iter().find_map(|db| db.autonomous_system(ip))
        {
            facts.as_number = i64::from(number);
            facts.as_organization = organization;
        }
        facts.categories = loaded.categories.lookup(ip);
        facts
    }

    fn refresh(&self) -> Result<(), String> {
        if self.stamps() == self.loaded.load().stamps {
            return Ok(());
        }
        let loaded = self.read().map_err(|e| e.to_string())?;
        self.loaded.store(Arc::new(loaded));
        Ok(())
    }
}

#[cfg(test)]
mod tests;
