//! `keygate policy check`: validate a policy file without serving; nothing is fetched.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use keygate_cel::MemorySecrets;
use keygate_policy::{Deps, Policy, Severity};
use keygate_secrets::{Store, StoreError};
use keygate_store::Location;

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The policy file (YAML or JSON).
    file: PathBuf,
    /// When this data directory's store exists, warn about secrets.get() references it does not hold.
    #[arg(long, env = "KEYGATE_DATA_DIR", default_value = "./keygate-data")]
    data_dir: PathBuf,
    #[arg(long, env = "KEYGATE_DATABASE", value_name = "URL", value_parser = crate::database::parse, help = crate::database::HELP)]
    database: Option<keygate_store::Location>,
    #[command(flatten)]
    ip_intel: crate::ip_intel::IpIntelArgs,
}

/// The policy file's name (as given) and text; an unreadable file is reported and exits 2.
pub fn read_policy_file(path: &Path) -> Result<(String, String), ExitCode> {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((name, text)),
        Err(err) => {
            eprintln!("{name}: cannot read the policy file: {err}");
            Err(ExitCode::from(2))
        }
    }
}

pub fn run(args: CheckArgs) -> ExitCode {
    let (name, text) = match read_policy_file(&args.file) {
        Ok(file) => file,
        Err(code) => return code,
    };
    let compiler = match args.ip_intel.check_compiler() {
        Ok(compiler) => compiler,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let deps = Deps::offline(Arc::new(MemorySecrets::default()));
    let diagnostics = match Policy::compile(&name, &text, &compiler, &deps) {
        Ok(policy) => policy.warnings,
        Err(err) => err.diagnostics,
    };
    for diagnostic in &diagnostics {
        eprintln!("{}", diagnostic.in_file(&name));
    }
    if diagnostics.iter().any(|d| d.severity == Severity::Error) {
        return ExitCode::from(2);
    }
    for warning in crate::ip_intel::unanswered(&compiler) {
        eprintln!("{name}: warning: {warning}");
    }
    let location = crate::database::location(&args.data_dir, args.database.as_ref());
    // Only a store that exists is consulted: `check` never creates one.
    match Store::open_existing(&args.data_dir, &location) {
        Ok(store) => {
            let warnings = unresolved_secrets(&text, &store, &location)
                .into_iter()
                .chain(unknown_ip_policies(&text, &store, &location));
            for warning in warnings {
                eprintln!("{name}: warning: {warning}");
            }
        }
        Err(StoreError::NotInitialized(_)) => {}
        // A store named on purpose that cannot be read: say what was not checked.
        Err(err) if args.database.is_some() => eprintln!(
            "{name}: warning: secrets and IP policy references were not checked: {err} ({location})"
        ),
        Err(_) => {}
    }
    println!("ok");
    ExitCode::SUCCESS
}

/// Literal `secrets.get('vault', 'name')` references the store does not hold.
fn unresolved_secrets(text: &str, store: &Store, location: &Location) -> Vec<String> {
    secret_references(text)
        .into_iter()
        .filter(|(vault, secret)| !store.secret_exists(vault, secret).unwrap_or(true))
        .map(|(vault, secret)| {
            format!("secrets.get('{vault}', '{secret}') is not in {location} (requests using it will fail with 500)")
        })
        .collect()
}

/// IP policy ids (`ipp_...`) in the policy text that the store does not hold: `serve` refuses such a
/// policy, `check` (offline) only warns.
fn unknown_ip_policies(text: &str, store: &Store, location: &Location) -> Vec<String> {
    let mut ids: Vec<&str> = text
        .match_indices(keygate_secrets::IP_POLICY_PREFIX)
        .filter_map(|(at, _)| {
            let len = keygate_secrets::IP_POLICY_PREFIX.len() + keygate_secrets::ID_RANDOM_CHARS;
            let id = text.get(at..at + len)?;
            let next = text[at + len..].chars().next();
            id.bytes()
                .skip(keygate_secrets::IP_POLICY_PREFIX.len())
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
                .then_some(id)
                .filter(|_| !next.is_some_and(|c| c.is_ascii_alphanumeric()))
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .filter(|id| {
            matches!(
                store.get_ip_policy(id),
                Err(keygate_secrets::StoreError::IpPolicyNotFound(_))
            )
        })
        .map(|id| {
            format!("IP policy '{id}' is not in {location} (the gateway will refuse to load this policy)")
        })
        .collect()
}

/// Finds `secrets.get('a', 'b')` (either quote style) in the policy text.
fn secret_references(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("secrets.get(") {
        rest = &rest[start + "secrets.get(".len()..];
        let Some(end) = rest.find(')') else { break };
        let args: Vec<&str> = rest[..end]
            .split(',')
            .map(|a| a.trim().trim_matches(|c| c == '\'' || c == '"'))
            .collect();
        if let [vault, secret] = args[..] {
            let pair = (vault.to_owned(), secret.to_owned());
            if !found.contains(&pair) {
                found.push(pair);
            }
        }
    }
    found
}
