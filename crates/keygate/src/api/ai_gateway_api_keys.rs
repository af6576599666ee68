//! `keygate api ai-gateway-api-keys ...`: access keys. The token is printed once, by `create`.

use clap::{ArgGroup, Args, Subcommand};
use keygate_keys::{
    parse_allowed_models, parse_allowed_providers, parse_expiry, parse_metadata, parse_usd,
    ApiKeyUpdate, CreatedApiKey, KeyError, KeyLimits, KeyStore, StoreFailure,
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
        // Boxed so the limits' strings do not inflate every other command.
        #[command(flatten)]
        limits: Box<Limits>,
    },
    /// List all access keys.
    List,
    /// Show one access key.
    Get {
        /// Access key id (aigk_...).
        id: String,
    },
    /// Change an access key's description, metadata, expiry, disabled flag, scopes or limits.
    #[command(group = ArgGroup::new("changes").required(true).multiple(true).args([
        "description", "metadata", "expires_at", "expires_in", "no_expiry", "disabled",
        "allowed_providers", "allowed_models", "request_limit", "token_limit", "daily_spend_limit",
        "monthly_spend_limit", "on_store_failure",
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
        // Boxed so the limits' strings do not inflate every other command.
        #[command(flatten)]
        limits: Box<Limits>,
    },
    /// Delete an access key and its attached provider keys; its token stops working.
    Delete {
        /// Access key id (aigk_...).
        id: String,
    },
}

/// When a key stops working.
#[derive(Args, Default)]
pub(crate) struct Expiry {
    /// Expiry time, RFC 3339 (2026-12-31T23:59:59Z).
    #[arg(long, conflicts_with = "expires_in")]
    pub(crate) expires_at: Option<String>,
    /// Expiry as a duration from now: a number and s, m, h, d or w (30d).
    #[arg(long)]
    pub(crate) expires_in: Option<String>,
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
#[derive(Args, Default)]
pub(crate) struct Scopes {
    /// Comma-separated provider patterns ('*' matches any run of characters); empty clears.
    #[arg(long, value_name = "LIST")]
    pub(crate) allowed_providers: Option<String>,
    /// Comma-separated model patterns (gpt-4o*, openai:gpt-4o*); empty clears.
    #[arg(long, value_name = "LIST")]
    pub(crate) allowed_models: Option<String>,
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

/// A key's request, token and spend limits. A limit whose flag is missing keeps its value, and an empty
/// value removes it.
#[derive(Args, Default)]
pub(crate) struct Limits {
    /// Requests per sliding window: a count, '/' and s, min, h or day (100/min); empty removes it.
    #[arg(long, value_name = "RATE")]
    pub(crate) request_limit: Option<String>,
    /// Input plus output tokens per window aligned to UTC (50000/day); empty removes it.
    #[arg(long, value_name = "RATE")]
    pub(crate) token_limit: Option<String>,
    /// Spend per UTC day in US dollars (5.00); empty removes it.
    #[arg(long, value_name = "USD")]
    pub(crate) daily_spend_limit: Option<String>,
    /// Spend per UTC calendar month in US dollars (50.00); empty removes it.
    #[arg(long, value_name = "USD")]
    pub(crate) monthly_spend_limit: Option<String>,
    /// While the shared store is unreachable, token and spend limits are enforced by each gateway alone
    /// (local, the default) or refuse requests (closed).
    #[arg(long, value_name = "MODE")]
    pub(crate) on_store_failure: Option<String>,
}

impl Limits {
    fn given(&self) -> bool {
        [
            &self.request_limit,
            &self.token_limit,
            &self.daily_spend_limit,
            &self.monthly_spend_limit,
            &self.on_store_failure,
        ]
        .iter()
        .any(|flag| flag.is_some())
    }

    /// `limits` with the given flags applied.
    fn apply(&self, mut limits: KeyLimits) -> Result<KeyLimits, Failure> {
        set(
            &mut limits.requests,
            "--request-limit",
            self.request_limit.as_deref(),
            str::parse,
        )?;
        set(
            &mut limits.tokens,
            "--token-limit",
            self.token_limit.as_deref(),
            str::parse,
        )?;
        set(
            &mut limits.daily_spend_micros,
            "--daily-spend-limit",
            self.daily_spend_limit.as_deref(),
            parse_usd,
        )?;
        set(
            &mut limits.monthly_spend_micros,
            "--monthly-spend-limit",
            self.monthly_spend_limit.as_deref(),
            parse_usd,
        )?;
        if let Some(mode) = &self.on_store_failure {
            limits.on_store_failure = mode
                .parse()
                .map_err(|err| flag_error("--on-store-failure", err))?;
        }
        if !limits.has_budget() {
            if self.on_store_failure.is_some() && limits.on_store_failure == StoreFailure::Closed {
                return Err(Failure::Usage(
                    "--on-store-failure closed needs a token or spend limit on the key: give \
                     --token-limit, --daily-spend-limit or --monthly-spend-limit too"
                        .to_owned(),
                ));
            }
            // The mode belongs to the budgets, so it goes with the last of them.
            limits.on_store_failure = StoreFailure::default();
        }
        Ok(limits)
    }
}

/// Sets one limit from its flag: kept when the flag is missing, removed when its value is empty.
fn set<T>(
    limit: &mut Option<T>,
    flag: &str,
    value: Option<&str>,
    parse: impl Fn(&str) -> Result<T, KeyError>,
) -> Result<(), Failure> {
    match value {
        None => {}
        Some("") => *limit = None,
        Some(text) => *limit = Some(parse(text).map_err(|err| flag_error(flag, err))?),
    }
    Ok(())
}

/// A bad flag value, named in the message (`--token-limit: invalid rate ...`).
fn flag_error(flag: &str, err: KeyError) -> Failure {
    Failure::Usage(format!("{flag}: {err}"))
}

/// `create` with these flags: also what the dashboard's "new key" form does (`keygate serve`).
pub(crate) fn create_key(
    keys: &KeyStore,
    description: &str,
    metadata: Option<&str>,
    expiry: &Expiry,
    scopes: &Scopes,
    limits: &Limits,
) -> Result<CreatedApiKey, Failure> {
    let metadata = metadata.map(parse_metadata).transpose()?;
    let expires_at = expiry.parse()?;
    let (providers, models) = scopes.parse()?;
    let limits = limits.apply(KeyLimits::default())?;
    Ok(keys.create_api_key(
        description,
        &metadata.unwrap_or_default(),
        expires_at,
        &providers.unwrap_or_default(),
        &models.unwrap_or_default(),
        &limits,
    )?)
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
            limits,
        } => print(&create_key(
            &keys,
            description,
            metadata.as_deref(),
            expiry,
            scopes,
            limits,
        )?),
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
            limits,
        } => {
            let metadata: Option<Map<_, _>> =
                metadata.as_deref().map(parse_metadata).transpose()?;
            let expires_at = match expiry.parse()? {
                Some(time) => Some(Some(time)),
                None if *no_expiry => Some(None),
                None => None,
            };
            let (providers, models) = scopes.parse()?;
            // The store replaces limits whole, so the flags edit the key's current ones.
            let limits = if limits.given() {
                Some(limits.apply(keys.get_api_key(id)?.limits)?)
            } else {
                None
            };
            let update = ApiKeyUpdate {
                description: description.as_deref(),
                metadata: metadata.as_ref(),
                expires_at,
                disabled: *disabled,
                allowed_providers: providers.as_deref(),
                allowed_models: models.as_deref(),
                limits: limits.as_ref(),
            };
            print(&keys.update_api_key(id, &update)?)
        }
        ApiKeysCommand::Delete { id } => Ok(keys.delete_api_key(id)?),
    }
}
