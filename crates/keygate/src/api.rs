//! `keygate api vaults|secrets ...`: manage the encrypted secret store, mirroring `ngrok api vaults|secrets`.
//!
//! Output is JSON on stdout in ngrok's shapes; no command ever prints a secret value. Exit status 2 for input
//! errors (bad name or value, unknown id, duplicate name, non-empty vault without `--force`), 1 for runtime
//! failures (I/O, database, master key).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Args, Subcommand};
use keygate_secrets::{MasterKeySource, Store, StoreError, MAX_VALUE_BYTES};
use secrecy::SecretString;
use serde::Serialize;
use zeroize::{Zeroize, Zeroizing};

/// Arguments of `keygate api`.
#[derive(Args)]
pub struct ApiArgs {
    /// Directory holding keygate.db and master.key.
    #[arg(
        long,
        env = "KEYGATE_DATA_DIR",
        default_value = "./keygate-data",
        global = true
    )]
    data_dir: PathBuf,
    /// Master key file [default: DATA_DIR/master.key]. KEYGATE_MASTER_KEY may carry the base64 key instead.
    #[arg(long, env = "KEYGATE_MASTER_KEY_FILE", global = true)]
    master_key_file: Option<PathBuf>,
    #[command(subcommand)]
    resource: Resource,
}

#[derive(Subcommand)]
enum Resource {
    /// Manage vaults.
    #[command(subcommand)]
    Vaults(VaultsCommand),
    /// Manage secrets (values are write-only).
    #[command(subcommand)]
    Secrets(SecretsCommand),
}

#[derive(Subcommand)]
enum VaultsCommand {
    /// Create a vault.
    Create {
        /// Vault name, unique: [A-Za-z0-9_.-]{1,64}.
        #[arg(long)]
        name: String,
        /// Free-text description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List all vaults.
    List,
    /// Show one vault.
    Get {
        /// Vault id (vault_...).
        id: String,
    },
    /// Rename a vault or change its description.
    #[command(group = ArgGroup::new("changes").required(true).multiple(true))]
    Update {
        /// Vault id (vault_...).
        id: String,
        /// New name.
        #[arg(long, group = "changes")]
        name: Option<String>,
        /// New description.
        #[arg(long, group = "changes")]
        description: Option<String>,
    },
    /// Delete a vault.
    Delete {
        /// Vault id (vault_...).
        id: String,
        /// Also delete the secrets the vault holds.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Store a secret; prints its metadata, never its value.
    Create {
        /// Secret name, unique within its vault: [A-Za-z0-9_.-]{1,64}.
        #[arg(long)]
        name: String,
        /// The value; `-` reads it from stdin (one trailing newline stripped), keeping it out of shell history.
        #[arg(long)]
        value: String,
        #[command(flatten)]
        vault: VaultChoice,
        /// Free-text description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List secrets, optionally of one vault.
    List {
        /// Only the secrets of this vault.
        #[arg(long)]
        vault_id: Option<String>,
    },
    /// Show one secret's metadata.
    Get {
        /// Secret id (secret_...).
        id: String,
    },
    /// Replace a secret's value or description.
    #[command(group = ArgGroup::new("changes").required(true).multiple(true))]
    Update {
        /// Secret id (secret_...).
        id: String,
        /// New value; `-` reads it from stdin.
        #[arg(long, group = "changes")]
        value: Option<String>,
        /// New description.
        #[arg(long, group = "changes")]
        description: Option<String>,
    },
    /// Delete a secret.
    Delete {
        /// Secret id (secret_...).
        id: String,
    },
}

/// Wipes a value given on the command line once the command is done with it.
impl Drop for SecretsCommand {
    fn drop(&mut self) {
        match self {
            Self::Create { value, .. }
            | Self::Update {
                value: Some(value), ..
            } => value.zeroize(),
            _ => {}
        }
    }
}

/// The vault a new secret goes into, by id or by name.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct VaultChoice {
    /// Vault id (vault_...).
    #[arg(long)]
    vault_id: Option<String>,
    /// Vault name.
    #[arg(long)]
    vault_name: Option<String>,
}

/// Why a command failed; decides the message and the exit status.
enum Failure {
    Store(StoreError),
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

fn describe(failure: Failure, args: &ApiArgs) -> (String, u8) {
    match failure {
        Failure::Usage(message) => (message, 2),
        Failure::Runtime(message) => (message, 1),
        Failure::Store(StoreError::VaultNotEmpty { id, count }) => (
            format!("vault '{id}' still holds {count} secret(s); pass --force to delete it together with them"),
            2,
        ),
        Failure::Store(err @ StoreError::Db(_)) => {
            (format!("{err} (data directory {})", args.data_dir.display()), 1)
        }
        Failure::Store(err) => {
            let code = if err.is_invalid_input() { 2 } else { 1 };
            (err.to_string(), code)
        }
    }
}

fn execute(args: &ApiArgs) -> Result<(), Failure> {
    let store = Store::open(&args.data_dir)?;
    match &args.resource {
        Resource::Vaults(command) => vaults(&store, command),
        Resource::Secrets(command) => secrets(store, args, command),
    }
}

fn vaults(store: &Store, command: &VaultsCommand) -> Result<(), Failure> {
    match command {
        VaultsCommand::Create { name, description } => {
            print(&store.create_vault(name, description)?)
        }
        VaultsCommand::List => print(&serde_json::json!({ "vaults": store.list_vaults()? })),
        VaultsCommand::Get { id } => print(&store.get_vault(id)?),
        VaultsCommand::Update {
            id,
            name,
            description,
        } => print(&store.update_vault(id, name.as_deref(), description.as_deref())?),
        VaultsCommand::Delete { id, force } => Ok(store.delete_vault(id, *force)?),
    }
}

fn secrets(mut store: Store, args: &ApiArgs, command: &SecretsCommand) -> Result<(), Failure> {
    match command {
        SecretsCommand::Create {
            name,
            value,
            vault,
            description,
        } => {
            let vault_id = match (&vault.vault_id, &vault.vault_name) {
                (Some(id), _) => id.clone(),
                (None, Some(name)) => store.vault_by_name(name)?.id,
                (None, None) => {
                    return Err(Failure::Usage("give --vault-id or --vault-name".to_owned()))
                }
            };
            let value = read_value(value)?;
            store.unlock(&MasterKeySource::from_env(args.master_key_file.clone())?)?;
            print(&store.create_secret(&vault_id, name, &value, description)?)
        }
        SecretsCommand::List { vault_id } => {
            print(&serde_json::json!({ "secrets": store.list_secrets(vault_id.as_deref())? }))
        }
        SecretsCommand::Get { id } => print(&store.get_secret(id)?),
        SecretsCommand::Update {
            id,
            value,
            description,
        } => {
            let value = value.as_deref().map(read_value).transpose()?;
            if value.is_some() {
                store.unlock(&MasterKeySource::from_env(args.master_key_file.clone())?)?;
            }
            print(&store.update_secret(id, value.as_ref(), description.as_deref())?)
        }
        SecretsCommand::Delete { id } => Ok(store.delete_secret(id)?),
    }
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

fn print(value: &impl Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::Runtime(format!("cannot encode the output as JSON: {e}")))?;
    println!("{text}");
    Ok(())
}
