//! `keygate api secrets ...`.

use clap::{ArgGroup, Args, Subcommand};
use keygate_secrets::Store;

use super::{print, read_value, value_arg, ApiArgs, Failure, ValueArg};

#[derive(Subcommand)]
pub(super) enum SecretsCommand {
    /// Store a secret; prints its metadata, never its value.
    Create {
        /// Secret name, unique within its vault: [A-Za-z0-9_.-]{1,64}.
        #[arg(long)]
        name: String,
        /// The value; `-` reads it from stdin (one trailing newline stripped), keeping it out of shell history.
        #[arg(long, value_parser = value_arg)]
        value: ValueArg,
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
        #[arg(long, group = "changes", value_parser = value_arg)]
        value: Option<ValueArg>,
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

/// The vault a new secret goes into, by id or by name.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub(super) struct VaultChoice {
    /// Vault id (vault_...).
    #[arg(long)]
    vault_id: Option<String>,
    /// Vault name.
    #[arg(long)]
    vault_name: Option<String>,
}

pub(super) fn run(
    mut store: Store,
    args: &ApiArgs,
    command: &SecretsCommand,
) -> Result<(), Failure> {
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
            args.unlock(&mut store)?;
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
            let value = value
                .as_deref()
                .map(|value| read_value(value))
                .transpose()?;
            if value.is_some() {
                args.unlock(&mut store)?;
            }
            print(&store.update_secret(id, value.as_ref(), description.as_deref())?)
        }
        SecretsCommand::Delete { id } => Ok(store.delete_secret(id)?),
    }
}
