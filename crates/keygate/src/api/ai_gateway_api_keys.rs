//! `keygate api ai-gateway-api-keys ...`: access keys. The token is printed once, by `create`.

use clap::{ArgGroup, Args, Subcommand};
use keygate_keys::{
    parse_allowed_models, parse_allowed_providers, parse_expiry, parse_metadata, ApiKeyUpdate,
    KeyStore,
};
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
        #[command(flatten)]
        scopes: Scopes,
    },
    /// List all access keys.
    List,
    /// Show one access key.
    Get {
        /// Access key id (aigk_...).
        id: String,
    },
    /// Change an access key's description, metadata, expiry, disabled flag or scopes.
    #[command(group = ArgGroup::new("changes").required(true).multiple(true).args([
        "description", "metadata", "expires_at", "expires_in", "no_expiry", "disabled",
        "allowed_providers", "allowed_models",
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
        #[command(flatten)]
        scopes: Scopes,
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

/// Which providers and models a key may use.
#[derive(Args)]
pub(super) struct Scopes {
    /// Comma-separated provider patterns ('*' matches any run of characters); empty clears.
    #[arg(long, value_name = "LIST")]
    allowed_providers: Option<String>,
    /// Comma-separated model patterns (gpt-4o*, openai:gpt-4o*); empty clears.
    #[arg(long, value_name = "LIST")]
    allowed_models: Option<String>,
}

/// Parsed scope lists; `None` where the flag was not given.
type ScopeLists = (Option<Vec<String>>, Option<Vec<String>>);

impl Scopes {
    fn parse(&self) -> Result<ScopeLists, Failure> {
        Ok((
            self.allowed_providers
                .as_deref()
                .map(parse_allowed_providers)
                .transpose()?,
            self.allowed_models
                .as_deref()
                .map(parse_allowed_models)
                .transpose()?,
        ))
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
            scopes,
        } => {
            let metadata = metadata.as_deref().map(parse_metadata).transpose()?;
            let expires_at = expiry.parse()?;
            let (providers, models) = scopes.parse()?;
            print(&keys.create_api_key(
                description,
                &metadata.unwrap_or_default(),
                expires_at,
                &providers.unwrap_or_default(),
                &models.unwrap_or_default(),
            )?)
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
            scopes,
        } => {
            let metadata: Option<Map<_, _>> =
                metadata.as_deref().map(parse_metadata).transpose()?;
            let expires_at = match expiry.parse()? {
                Some(time) => Some(Some(time)),
                None if *no_expiry => Some(None),
                None => None,
            };
            let (providers, models) = scopes.parse()?;
            let update = ApiKeyUpdate {
                description: description.as_deref(),
                metadata: metadata.as_ref(),
                expires_at,
                disabled: *disabled,
                allowed_providers: providers.as_deref(),
                allowed_models: models.as_deref(),
            };
            print(&keys.update_api_key(id, &update)?)
        }
        ApiKeysCommand::Delete { id } => Ok(keys.delete_api_key(id)?),
    }
}
