//! `keygate api ai-gateway-provider-keys ...`: provider keys attached to access keys. Values are
//! write-only, like secrets.

use clap::{ArgGroup, Subcommand};
use keygate_keys::{parse_metadata, KeyStore, ProviderKeyUpdate};
use keygate_secrets::Store;

use super::{print, read_value, value_arg, ApiArgs, Failure, ValueArg};

#[derive(Subcommand)]
pub(super) enum ProviderKeysCommand {
    /// Attach a provider key to an access key; prints its metadata, never its value.
    Create {
        /// The access key to attach it to (aigk_...).
        #[arg(long)]
        ai_gateway_api_key_id: String,
        /// The provider it is a key of (openai, anthropic, ...).
        #[arg(long)]
        provider_id: String,
        /// The value; `-` reads it from stdin (one trailing newline stripped), keeping it out of shell history.
        #[arg(long, value_parser = value_arg)]
        value: ValueArg,
        /// Free-text description.
        #[arg(long, default_value = "")]
        description: String,
        /// A JSON object to keep with the key (at most 4096 bytes).
        #[arg(long)]
        metadata: Option<String>,
    },
    /// List provider keys, optionally of one access key.
    List {
        /// Only the keys attached to this access key.
        #[arg(long)]
        ai_gateway_api_key_id: Option<String>,
    },
    /// Show one provider key's metadata.
    Get {
        /// Provider key id (aigpk_...).
        id: String,
    },
    /// Replace a provider key's value, description or metadata.
    #[command(group = ArgGroup::new("changes").required(true).multiple(true))]
    Update {
        /// Provider key id (aigpk_...).
        id: String,
        /// New value; `-` reads it from stdin.
        #[arg(long, group = "changes", value_parser = value_arg)]
        value: Option<ValueArg>,
        /// New description.
        #[arg(long, group = "changes")]
        description: Option<String>,
        /// New metadata: a JSON object, replacing the old one.
        #[arg(long, group = "changes")]
        metadata: Option<String>,
    },
    /// Detach and delete a provider key.
    Delete {
        /// Provider key id (aigpk_...).
        id: String,
    },
}

pub(super) fn run(
    mut store: Store,
    args: &ApiArgs,
    command: &ProviderKeysCommand,
) -> Result<(), Failure> {
    match command {
        ProviderKeysCommand::Create {
            ai_gateway_api_key_id,
            provider_id,
            value,
            description,
            metadata,
        } => {
            let metadata = metadata.as_deref().map(parse_metadata).transpose()?;
            let value = read_value(value)?;
            args.unlock(&mut store)?;
            let keys = KeyStore::open(store)?;
            print(&keys.create_provider_key(
                ai_gateway_api_key_id,
                provider_id,
                &value,
                description,
                &metadata.unwrap_or_default(),
            )?)
        }
        ProviderKeysCommand::List {
            ai_gateway_api_key_id,
        } => {
            let keys = KeyStore::open(store)?;
            let list = keys.list_provider_keys(ai_gateway_api_key_id.as_deref())?;
            print(&serde_json::json!({ "ai_gateway_provider_keys": list }))
        }
        ProviderKeysCommand::Get { id } => print(&KeyStore::open(store)?.get_provider_key(id)?),
        ProviderKeysCommand::Update {
            id,
            value,
            description,
            metadata,
        } => {
            let metadata = metadata.as_deref().map(parse_metadata).transpose()?;
            let value = value
                .as_deref()
                .map(|value| read_value(value))
                .transpose()?;
            if value.is_some() {
                args.unlock(&mut store)?;
            }
            let update = ProviderKeyUpdate {
                value: value.as_ref(),
                description: description.as_deref(),
                metadata: metadata.as_ref(),
            };
            print(&KeyStore::open(store)?.update_provider_key(id, &update)?)
        }
        ProviderKeysCommand::Delete { id } => Ok(KeyStore::open(store)?.delete_provider_key(id)?),
    }
}
