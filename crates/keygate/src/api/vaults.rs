//! `keygate api vaults ...`.

use clap::{ArgGroup, Subcommand};
use keygate_secrets::Store;

use super::{print, Failure};

#[derive(Subcommand)]
pub(super) enum VaultsCommand {
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

pub(super) fn run(store: &Store, command: &VaultsCommand) -> Result<(), Failure> {
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
