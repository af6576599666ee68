//! `--ip-intel-db` and `--ip-categories` (for `serve`, `policy check` and `policy test`): the files behind the
//! IP-intelligence policy variables (`conn.geo.*`, `conn.client_ip.as.number`, ...), see
//! docs/ip-intelligence.md.

use std::path::PathBuf;
use std::sync::Arc;

use keygate_cel::Compiler;
use keygate_ipintel::IpFiles;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct IpIntelArgs {
    /// MaxMind DB file: GeoLite2/GeoIP2 City or Country (conn.geo.*, conn.client_ip.geo.*) or ASN
    /// (conn.client_ip.as.*). Read at start and again on reload (SIGHUP, policy change) if it
    /// changed (repeatable)
    #[arg(
        long = "ip-intel-db",
        env = "KEYGATE_IP_INTEL_DB",
        value_name = "FILE",
        value_delimiter = ','
    )]
    pub databases: Vec<PathBuf>,
    /// Text file of `CIDR CATEGORY` lines (blocklists, Tor exits) for conn.client_ip.categories,
    /// .is_on_blocklist and .is_tor_node; read like --ip-intel-db (repeatable)
    #[arg(
        long = "ip-categories",
        env = "KEYGATE_IP_CATEGORIES",
        value_name = "FILE",
        value_delimiter = ','
    )]
    pub categories: Vec<PathBuf>,
}

impl IpIntelArgs {
    /// Reads the files; `Err` is one line naming the file at fault.
    pub fn open(&self) -> Result<Arc<IpFiles>, String> {
        IpFiles::open(&self.databases, &self.categories)
            .map(Arc::new)
            .map_err(|err| format!("IP intelligence: {err}"))
    }

    /// The compiler `policy check` and `policy test` use: with files given, a variable they
    /// cannot answer is an error, as in `serve`; without, the policy loads, the variables read as
    /// empty, and [`unanswered`] tells what `serve` would need.
    pub fn check_compiler(&self) -> Result<Compiler, String> {
        if self.databases.is_empty() && self.categories.is_empty() {
            return Ok(Compiler::new());
        }
        Ok(Compiler::new().with_ip_intel(self.open()?))
    }
}

/// Warnings for the IP-intelligence variables `compiler` compiled with no files to answer them:
/// one per kind of file `serve` would need.
pub fn unanswered(compiler: &Compiler) -> Vec<String> {
    let mut needs: Vec<(&'static str, Vec<String>)> = Vec::new();
    for (name, remedy) in compiler.ip_intel_without_source() {
        match needs.iter_mut().find(|(r, _)| *r == remedy) {
            Some((_, names)) => names.push(name),
            None => needs.push((remedy, vec![name])),
        }
    }
    needs
        .into_iter()
        .map(|(remedy, names)| {
            format!(
                "`keygate serve` refuses this policy without {remedy}, for {}; here they read \
                 as empty (give the same flags to check against the files)",
                names.join(", ")
            )
        })
        .collect()
}
