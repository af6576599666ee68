//! `keygate migrate`: bring the store's tables up to date, then exit (for deployments that migrate in a
//! release step before starting instances; `serve` migrates at start too).

use std::path::PathBuf;
use std::process::ExitCode;

use keygate_keys::KeyStore;
use keygate_secrets::Store;

#[derive(clap::Args)]
pub struct MigrateArgs {
    /// Directory holding keygate.db and usage.db unless --database.
    #[arg(long, env = "KEYGATE_DATA_DIR", default_value = "./keygate-data")]
    data_dir: PathBuf,
    #[arg(long, env = "KEYGATE_DATABASE", value_name = "URL", value_parser = crate::database::parse, help = crate::database::HELP)]
    database: Option<keygate_store::Location>,
}

/// The store's components `migrate` reports, in the order they are migrated.
const COMPONENTS: &[&str] = &["secrets", "ip-policies", "ai-gateway-keys"];

pub fn run(args: MigrateArgs) -> ExitCode {
    let location = crate::database::location(&args.data_dir, args.database.as_ref());
    let ledger = keygate_usage::location(&location, &args.data_dir);
    let stores = migrate_stores(&args, &location).map_err(|err| format!("{location}: {err}"));
    let usage = keygate_usage::migrate(&ledger)
        .map(|migrated| format!("usage {}", migrated.to))
        .map_err(|err| format!("{ledger}: {err}"));
    match (stores, usage) {
        (Ok(mut versions), Ok(usage)) => {
            if ledger == location {
                versions.push(usage);
            } else {
                println!("{ledger}: up to date ({usage})");
            }
            println!("{location}: up to date ({})", versions.join(", "));
            ExitCode::SUCCESS
        }
        (Err(err), _) | (_, Err(err)) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Migrates the vaults, IP policy and key tables; returns `COMPONENT VERSION` for each.
fn migrate_stores(
    args: &MigrateArgs,
    location: &keygate_store::Location,
) -> Result<Vec<String>, String> {
    let store = Store::open_database(&args.data_dir, location).map_err(|err| err.to_string())?;
    let keys = KeyStore::open(store).map_err(|err| err.to_string())?;
    let db = keys.store().database();
    COMPONENTS
        .iter()
        .map(|&name| match db.schema_version(name) {
            Ok(version) => Ok(format!("{name} {version}")),
            Err(err) => Err(err.to_string()),
        })
        .collect()
}
