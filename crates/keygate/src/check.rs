//! `keygate policy check`: validate a policy file without serving; nothing is fetched.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use keygate_cel::{Compiler, MemorySecrets};
use keygate_policy::{Deps, Policy, Severity};

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The policy file (YAML or JSON).
    file: PathBuf,
    /// When this data directory exists, warn about secrets.get() references it does not hold.
    #[arg(long, env = "KEYGATE_DATA_DIR", default_value = "./keygate-data")]
    data_dir: PathBuf,
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
    let deps = Deps::offline(Arc::new(MemorySecrets::default()));
    let diagnostics = match Policy::compile(&name, &text, &Compiler::new(), &deps) {
        Ok(policy) => policy.warnings,
        Err(err) => err.diagnostics,
    };
    for diagnostic in &diagnostics {
        eprintln!("{}", diagnostic.in_file(&name));
    }
    if diagnostics.iter().any(|d| d.severity == Severity::Error) {
        return ExitCode::from(2);
    }
    for warning in unresolved_secrets(&text, &args.data_dir) {
        eprintln!("{name}: warning: {warning}");
    }
    for warning in unknown_ip_policies(&text, &args.data_dir) {
        eprintln!("{name}: warning: {warning}");
    }
    println!("ok");
    ExitCode::SUCCESS
}

/// Literal `secrets.get('vault', 'name')` references the data directory does not hold.
fn unresolved_secrets(text: &str, data_dir: &std::path::Path) -> Vec<String> {
    if !data_dir.join(keygate_secrets::DB_FILE).exists() {
        return Vec::new();
    }
    let Ok(store) = keygate_secrets::Store::open_read_only(data_dir) else {
        return Vec::new();
    };
    secret_references(text)
        .into_iter()
        .filter(|(vault, secret)| !store.secret_exists(vault, secret).unwrap_or(true))
        .map(|(vault, secret)| {
            format!("secrets.get('{vault}', '{secret}') is not in {} (requests using it will fail with 500)", data_dir.display())
        })
        .collect()
}

/// IP policy ids (`ipp_...`) in the policy text that the data directory does not hold: `serve`
/// refuses such a policy, `check` (offline) only warns.
fn unknown_ip_policies(text: &str, data_dir: &Path) -> Vec<String> {
    if !data_dir.join(keygate_secrets::DB_FILE).exists() {
        return Vec::new();
    }
    let Ok(store) = keygate_secrets::Store::open_read_only(data_dir) else {
        return Vec::new();
    };
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
            format!(
                "IP policy '{id}' is not in {} (the gateway will refuse to load this policy)",
                data_dir.display()
            )
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
