//! What `keygate serve` wires in for the dashboard (`/ui` on the admin listener): the admin
//! token (a file, created on first start, or a vault secret) and access-key management on the
//! data directory's key store, with the CLI's rules (`keygate api ai-gateway-api-keys`).

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use keygate_cel::SecretSource;
use keygate_keys::{ApiKey, ApiKeyUpdate, KeyError, KeyStore};
use keygate_secrets::MasterKeySource;
use keygate_server::{AdminToken, KeyAdmin, KeyAdminError, ManagedKey, NewKeyForm};
use secrecy::SecretString;
use serde_json::Value;

use super::ServeArgs;
use crate::api::ai_gateway_api_keys::{create_key, Expiry, Limits, Scopes};

/// The admin token file's name in the data directory.
pub const TOKEN_FILE: &str = "admin-token";
/// What a generated token starts with, so it is recognised in a config or a leak scan.
const TOKEN_PREFIX: &str = "kgadm-";

/// The admin token `keygate serve` requires on `/ui/api/*` and `/v1/usage*`: `None` when
/// neither needs one (`--no-ui` with `--open-usage-api`).
pub fn admin_token(
    args: &ServeArgs,
    secrets: &dyn SecretSource,
) -> Result<Option<AdminToken>, String> {
    if args.no_ui && args.open_usage_api {
        return Ok(None);
    }
    if let Some(reference) = &args.admin_token_secret {
        let (vault, name) = reference
            .split_once('/')
            .filter(|(vault, name)| !vault.is_empty() && !name.is_empty())
            .ok_or_else(|| {
                format!("--admin-token-secret: expected VAULT/NAME, got '{reference}'")
            })?;
        secrets
            .get(vault, name)
            .map_err(|err| format!("--admin-token-secret: {err}"))?;
        return Ok(Some(AdminToken::Secret {
            vault: vault.to_owned(),
            name: name.to_owned(),
        }));
    }
    let path = args
        .admin_token_file
        .clone()
        .unwrap_or_else(|| args.data_dir.join(TOKEN_FILE));
    let token = match std::fs::read_to_string(&path) {
        Ok(text) => {
            let token = text.trim_end_matches(['\n', '\r']).to_owned();
            if token.trim().is_empty() {
                return Err(format!("the admin token file {} is empty", path.display()));
            }
            if let Ok(meta) = std::fs::metadata(&path) {
                if meta.permissions().mode() & 0o077 != 0 {
                    eprintln!(
                        "warning: the admin token file {} is readable by other users: chmod 600 it",
                        path.display()
                    );
                }
            }
            token
        }
        Err(err) if err.kind() == ErrorKind::NotFound => create_token_file(&path, args)?,
        Err(err) => {
            return Err(format!(
                "cannot read the admin token file {}: {err}",
                path.display()
            ))
        }
    };
    Ok(Some(AdminToken::Value(Arc::new(SecretString::from(token)))))
}

/// Writes a new random token to `path` (mode 0600, never over an existing file) and prints it
/// once on stderr.
fn create_token_file(path: &Path, args: &ServeArgs) -> Result<String, String> {
    let mut random = [0u8; 32];
    getrandom::fill(&mut random)
        .map_err(|err| format!("the OS random number generator failed: {err}"))?;
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
    );
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(format!("{token}\n").as_bytes()));
    match written {
        Ok(()) => {}
        // Another gateway on the same data directory made it first: use its token.
        Err(err) if err.kind() == ErrorKind::AlreadyExists => {
            return std::fs::read_to_string(path)
                .map(|text| text.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|err| {
                    format!("cannot read the admin token file {}: {err}", path.display())
                });
        }
        Err(err) => {
            return Err(format!(
                "cannot create the admin token file {}: {err}",
                path.display()
            ))
        }
    }
    eprintln!(
        "keygate: created the admin token for the dashboard (http://{}/ui/) and the usage API:\n  \
         {token}\n  It is stored in {} (mode 0600) and is not printed again.",
        args.admin_listen,
        path.display()
    );
    Ok(token)
}

/// Access-key management on the data directory's key store, for the dashboard.
pub fn key_admin(args: &ServeArgs) -> Result<Arc<dyn KeyAdmin>, String> {
    let source =
        MasterKeySource::from_env(args.master_key_file.clone()).map_err(|err| err.to_string())?;
    let store = args.open_store(Some(&source))?;
    let keys = KeyStore::open(store).map_err(|err| err.to_string())?;
    Ok(Arc::new(StoreKeys(Mutex::new(keys))))
}

/// The key store behind a lock (one SQLite connection).
struct StoreKeys(Mutex<KeyStore>);

impl StoreKeys {
    fn keys(&self) -> std::sync::MutexGuard<'_, KeyStore> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn key_error(err: KeyError) -> KeyAdminError {
    match err {
        KeyError::ApiKeyNotFound(_) => KeyAdminError::NotFound(err.to_string()),
        err if err.is_invalid_input() => KeyAdminError::Invalid(err.to_string()),
        err => KeyAdminError::Failed(err.to_string()),
    }
}

fn json(value: &impl serde::Serialize) -> Result<Value, KeyAdminError> {
    serde_json::to_value(value).map_err(|err| KeyAdminError::Failed(err.to_string()))
}

fn managed(key: ApiKey) -> Result<ManagedKey, KeyAdminError> {
    let limits = &key.limits;
    Ok(ManagedKey {
        id: key.id.clone(),
        request_limit: limits.requests.map(|rate| (rate.count, rate.window)),
        token_limit: limits.tokens.map(|rate| (rate.count, rate.window)),
        daily_spend_micros: limits.daily_spend_micros,
        monthly_spend_micros: limits.monthly_spend_micros,
        json: json(&key)?,
    })
}

/// A form field: absent and empty are the same (no such flag).
fn field(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

impl KeyAdmin for StoreKeys {
    fn list(&self) -> Result<Vec<ManagedKey>, KeyAdminError> {
        let keys = self.keys().list_api_keys().map_err(key_error)?;
        keys.into_iter().map(managed).collect()
    }

    fn create(&self, form: &NewKeyForm) -> Result<Value, KeyAdminError> {
        let expiry = Expiry {
            expires_at: field(&form.expires_at),
            expires_in: field(&form.expires_in),
        };
        if expiry.expires_at.is_some() && expiry.expires_in.is_some() {
            return Err(KeyAdminError::Invalid(
                "give expires_at or expires_in, not both".to_owned(),
            ));
        }
        let scopes = Scopes {
            allowed_providers: field(&form.allowed_providers),
            allowed_models: field(&form.allowed_models),
        };
        let limits = Limits {
            request_limit: field(&form.request_limit),
            token_limit: field(&form.token_limit),
            daily_spend_limit: field(&form.daily_spend_limit),
            monthly_spend_limit: field(&form.monthly_spend_limit),
            on_store_failure: field(&form.on_store_failure),
        };
        let metadata = field(&form.metadata);
        let created = create_key(
            &self.keys(),
            &form.description,
            metadata.as_deref(),
            &expiry,
            &scopes,
            &limits,
        )
        .map_err(|failure| match failure.explain() {
            (message, true) => KeyAdminError::Invalid(message),
            (message, false) => KeyAdminError::Failed(message),
        })?;
        json(&created)
    }

    fn set_disabled(&self, id: &str, disabled: bool) -> Result<Value, KeyAdminError> {
        let update = ApiKeyUpdate {
            disabled: Some(disabled),
            ..ApiKeyUpdate::default()
        };
        json(&self.keys().update_api_key(id, &update).map_err(key_error)?)
    }

    fn delete(&self, id: &str) -> Result<(), KeyAdminError> {
        self.keys().delete_api_key(id).map_err(key_error)
    }
}
