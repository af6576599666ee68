//! `keygate api ai-gateway-api-keys ...`: access keys. The token is printed once, by `create`.

use clap::{ArgGroup, Args, Subcommand};
use keygate_keys::{parse_expiry, parse_metadata, ApiKeyUpdate, KeyStore};
use keygate_secrets::Store;
use serde_json::Map;

use super::{print, ApiArgs, Failure};

#[derive(Subcommand)]
pub(super) enum ApiKeysCommand {
    /// Create an access key; prints it with its token, which is shown this once.
    Create {
        /// Free-text description.
        #[arg(long, default_value = "")]
        description: String,
        /// A JSON object to keep with the key (at most 4096 bytes).
        #[arg(long)]
        metadata: Option<String>,
        #[command(flatten)]
        expiry: Expiry,
    },
    /// List all access keys.
    List,
    /// Show one access key.
    Get {
        /// Access key id (aigk_...).
        id: String,
    },
    /// Change an access key's description, metadata, expiry or disabled flag.
    #[command(group = ArgGroup::new("changes").required(true).multiple(true).args([
        "description", "metadata", "expires_at", "expires_in", "no_expiry", "disabled",
    ]))]
    Update {
        /// Access key id (aigk_...).
        id: String,
        /// New description.
        #[arg(long)]
        description: Option<String>,
        /// New metadata: a JSON object, replacing the old one.
        #[arg(long)]
        metadata: Option<String>,
        #[command(flatten)]
        expiry: Expiry,
        /// Remove the expiry.
        #[arg(long, conflicts_with_all = ["expires_at", "expires_in"])]
        no_expiry: bool,
        /// `true` refuses the token until it is set back to `false`.
        #[arg(long)]
        disabled: Option<bool>,
    },
    /// Delete an access key and its attached provider keys; its token stops working.
    Delete {
        /// Access key id (aigk_...).
        id: String,
    },
}

/// When a key stops working.
#[derive(Args)]
pub(super) struct Expiry {
    /// Expiry time, RFC 3339 (2026-12-31T23:59:59Z).
    #[arg(long, conflicts_with = "expires_in")]
    expires_at: Option<String>,
    /// Expiry as a duration from now: a number and s, m, h, d or w (30d).
    #[arg(long)]
    expires_in: Option<String>,
}

impl Expiry {
    fn parse(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>, Failure> {
        Ok(parse_expiry(
            self.expires_at.as_deref(),
            self.expires_in.as_deref(),
            chrono::Utc::now(),
        )?)
    }
}

pub(super) fn run(
    mut store: Store,
    args: &ApiArgs,
    command: &ApiKeysCommand,
) -> Result<(), Failure> {
    if let ApiKeysCommand::Create { .. } = command {
        args.unlock(&mut store)?;
    }
    let keys = KeyStore::open(store)?;
    match command {
        ApiKeysCommand::Create {
            description,
            metadata,
            expiry,
        } => {
            let metadata = metadata.as_deref().map(parse_metadata).transpose()?;
            let expires_at = expiry.parse()?;
            print(&keys.create_api_key(description, &metadata.unwrap_or_default(), expires_at)?)
        }
        ApiKeysCommand::List => {
            print(&serde_json::json!({ "ai_gateway_api_keys": keys.list_api_keys()? }))
        }
        ApiKeysCommand::Get { id } => print(&keys.get_api_key(id)?),
        ApiKeysCommand::Update {
            id,
            description,
            metadata,
            expiry,
            no_expiry,
            disabled,
        } => {
            let metadata: Option<Map<_, _>> =
                metadata.as_deref().map(parse_metadata).transpose()?;
            let expires_at = match expiry.parse()? {
                Some(time) => Some(Some(time)),
                None if *no_expiry => Some(None),
                None => None,
            };
            let update = ApiKeyUpdate {
                description: description.as_deref(),
                metadata: metadata.as_ref(),
                expires_at,
                disabled: *disabled,
            };
            print(&keys.update_api_key(id, &update)?)
        }
        ApiKeysCommand::Delete { id } => Ok(keys.delete_api_key(id)?),
    }
}
