//! `keygate api vaults|secrets|ip-policies|ip-policy-rules|ai-gateway-api-keys|ai-gateway-provider-keys ...`:
//! manage the store, mirroring `ngrok api ...` of the same names. One module per resource; this one holds what they share.
//!
//! Output is JSON on stdout in ngrok's shapes; no command ever prints a secret or provider key value, and an
//! access key's token only once, on creation. Exit status 2 for input errors (bad name, value or metadata,
//! unknown id, duplicate name, non-empty vault without `--force`), 1 for runtime failures (I/O, database,
//! master key).

pub(crate) mod ai_gateway_api_keys;
mod ai_gateway_provider_keys;
mod ip_policies;
mod ip_policy_rules;
mod secrets;
mod vaults;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use keygate_keys::KeyError;
use keygate_secrets::{MasterKeySource, Store, StoreError, MAX_VALUE_BYTES};
use secrecy::SecretString;
use serde::Serialize;
use zeroize::Zeroizing;

/// Arguments of `keygate api`.
#[derive(Args)]
pub struct ApiArgs {
    /// Directory holding master.key, and keygate.db unless --database.
    #[arg(
        long,
        env = "KEYGATE_DATA_DIR",
        default_value = "./keygate-data",
        global = true
    )]
    data_dir: PathBuf,
    #[arg(long, env = "KEYGATE_DATABASE", value_name = "URL", global = true, value_parser = crate::database::parse, help = crate::database::HELP)]
    database: Option<keygate_store::Location>,
    /// Master key file [default: DATA_DIR/master.key]. KEYGATE_MASTER_KEY may carry the base64 key instead.
    #[arg(long, env = "KEYGATE_MASTER_KEY_FILE", global = true)]
    master_key_file: Option<PathBuf>,
    #[command(subcommand)]
    resource: Resource,
}

impl ApiArgs {
    /// The database the commands work on (shown without password).
    fn location(&self) -> keygate_store::Location {
        crate::database::location(&self.data_dir, self.database.as_ref())
    }

    /// Unlocks `store` with the master key from the environment or the key file.
    fn unlock(&self, store: &mut Store) -> Result<(), Failure> {
        Ok(store.unlock(&MasterKeySource::from_env(self.master_key_file.clone())?)?)
    }
}

#[derive(Subcommand)]
enum Resource {
    /// Manage vaults.
    #[command(subcommand)]
    Vaults(vaults::VaultsCommand),
    /// Manage secrets (values are write-only).
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    /// Manage IP policies: named CIDR lists restrict-ips references by id.
    #[command(subcommand)]
    IpPolicies(ip_policies::IpPoliciesCommand),
    /// Manage the allow and deny rules of IP policies.
    #[command(subcommand)]
    IpPolicyRules(ip_policy_rules::IpPolicyRulesCommand),
    /// Manage access keys: tokens clients present to the AI gateway (shown once, on creation).
    #[command(subcommand)]
    AiGatewayApiKeys(ai_gateway_api_keys::ApiKeysCommand),
    /// Manage provider keys attached to access keys (values are write-only).
    #[command(subcommand)]
    AiGatewayProviderKeys(ai_gateway_provider_keys::ProviderKeysCommand),
}

/// Why a command failed; decides the message and the exit status.
pub(crate) enum Failure {
    Store(StoreError),
    Keys(KeyError),
    /// Bad input found by the CLI itself (exit 2).
    Usage(String),
    /// Runtime failure found by the CLI itself (exit 1).
    Runtime(String),
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        Self::Store(err)
    }
}

impl From<KeyError> for Failure {
    fn from(err: KeyError) -> Self {
        match err {
            KeyError::Store(err) => Self::Store(err),
            other => Self::Keys(other),
        }
    }
}

/// Runs `keygate api ...`.
pub fn run(args: ApiArgs) -> ExitCode {
    match execute(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let (message, code) = describe(failure, &args);
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

impl Failure {
    /// The message, and whether the input is at fault (exit status 2) rather than the
    /// environment.
    pub(crate) fn explain(self) -> (String, bool) {
        match self {
            Failure::Usage(message) => (message, true),
            Failure::Runtime(message) => (message, false),
            Failure::Store(err) => {
                let invalid = err.is_invalid_input();
                (err.to_string(), invalid)
            }
            Failure::Keys(err) => {
                let invalid = err.is_invalid_input();
                (err.to_string(), invalid)
            }
        }
    }
}

fn describe(failure: Failure, args: &ApiArgs) -> (String, u8) {
    match failure {
        Failure::Usage(message) => (message, 2),
        Failure::Runtime(message) => (message, 1),
        Failure::Store(StoreError::VaultNotEmpty { id, count }) => (
            format!("vault '{id}' still holds {count} secret(s); pass --force to delete it together with them"),
            2,
        ),
        Failure::Store(err @ StoreError::Db(_)) => (
            format!("{err} (database {})", args.location()),
            1,
        ),
        Failure::Store(err) => {
            let code = if err.is_invalid_input() { 2 } else { 1 };
            (err.to_string(), code)
        }
        Failure::Keys(err) => {
            let code = if err.is_invalid_input() { 2 } else { 1 };
            (err.to_string(), code)
        }
    }
}

fn execute(args: &ApiArgs) -> Result<(), Failure> {
    let store = Store::open_database(&args.data_dir, &args.location())?;
    match &args.resource {
        Resource::Vaults(command) => vaults::run(&store, command),
        Resource::Secrets(command) => secrets::run(store, args, command),
        Resource::IpPolicies(command) => ip_policies::run(&store, command),
        Resource::IpPolicyRules(command) => ip_policy_rules::run(&store, command),
        Resource::AiGatewayApiKeys(command) => ai_gateway_api_keys::run(store, args, command),
        Resource::AiGatewayProviderKeys(command) => {
            ai_gateway_provider_keys::run(store, args, command)
        }
    }
}

/// A `--value` argument, wiped from memory once the command is done with it.
type ValueArg = Zeroizing<String>;

/// Parses a `--value` argument.
fn value_arg(text: &str) -> Result<ValueArg, std::convert::Infallible> {
    Ok(Zeroizing::new(text.to_owned()))
}

/// The value given on the command line, or read from stdin when it is `-`.
fn read_value(arg: &str) -> Result<SecretString, Failure> {
    if arg != "-" {
        return Ok(SecretString::from(arg));
    }
    // Room for the largest value plus "\r\n", and one byte more to detect an oversized value.
    let limit = MAX_VALUE_BYTES + 3;
    let mut buf = Zeroizing::new(Vec::with_capacity(limit));
    std::io::stdin()
        .lock()
        .take(limit as u64)
        .read_to_end(&mut buf)
        .map_err(|e| Failure::Runtime(format!("cannot read the secret value from stdin: {e}")))?;
    let mut value: &[u8] = &buf;
    if let Some(rest) = value.strip_suffix(b"\n") {
        value = rest.strip_suffix(b"\r").unwrap_or(rest);
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(Failure::Usage(format!(
            "the secret value read from stdin is larger than {MAX_VALUE_BYTES} bytes (64 KiB)"
        )));
    }
    let text = std::str::from_utf8(value).map_err(|_| {
        Failure::Usage("the secret value read from stdin is not valid UTF-8".to_owned())
    })?;
    Ok(SecretString::from(text))
}

/// Prints `value` as pretty JSON. The text is wiped afterwards, since it may hold a new token.
fn print(value: &impl Serialize) -> Result<(), Failure> {
    let text = Zeroizing::new(
        serde_json::to_string_pretty(value)
            .map_err(|e| Failure::Runtime(format!("cannot encode the output as JSON: {e}")))?,
    );
    let mut line = Zeroizing::new(String::with_capacity(text.len() + 1));
    line.push_str(&text);
    line.push('\n');
    crate::stdout::write(&line)
        .map_err(|e| Failure::Runtime(format!("cannot write the output: {e}")))
}
