//! Secret operations. Values go in, never come out: only [`Store::load_snapshot`] decrypts.

use keygate_store::{Row, Tx};
use secrecy::{ExposeSecret, SecretString};

use super::vaults::vault_by_id;
use super::{map_unique, Store};
use crate::crypto::Binding;
use crate::error::{Result, StoreError};
use crate::ids::{new_id, SECRET_PREFIX};
use crate::model::{now, Secret, VaultRef};
use crate::schema::{next_seq, SECRETS};
use crate::validate::{check_description, check_name, check_value};

const SECRET_SELECT: &str =
    "SELECT s.id, s.created_at, s.updated_at, s.name, s.description, v.id, v.name \
     FROM secrets s JOIN vaults v ON v.id = s.vault_id";

fn secret_from_row(row: &Row) -> keygate_store::Result<Secret> {
    Ok(Secret {
        id: row.get(0)?,
        created_at: row.get(1)?,
        updated_at: row.get(2)?,
        name: row.get(3)?,
        description: row.get(4)?,
        vault: VaultRef {
            id: row.get(5)?,
            name: row.get(6)?,
        },
    })
}

fn secret_by_id(tx: &mut Tx<'_>, id: &str) -> Result<Secret> {
    let sql = format!("{SECRET_SELECT} WHERE s.id = $1");
    match tx.query_opt(&sql, &[&id])? {
        Some(row) => Ok(secret_from_row(&row)?),
        None => Err(StoreError::SecretNotFound(id.to_owned())),
    }
}

impl Store {
    /// Stores a new secret in vault `vault_id`, encrypted. Needs the master key. Names are unique within a
    /// vault ([`StoreError::DuplicateSecret`]).
    pub fn create_secret(
        &self,
        vault_id: &str,
        name: &str,
        value: &SecretString,
        description: &str,
    ) -> Result<Secret> {
        check_name("secret", name)?;
        check_value(value.expose_secret())?;
        check_description(description)?;
        // Fail before taking the write lock when the store is locked.
        self.key()?;
        self.write(SECRETS.name, |tx| {
            let vault = vault_by_id(tx, vault_id)?;
            let now = now();
            let secret = Secret {
                id: new_id(SECRET_PREFIX)?,
                created_at: now.clone(),
                updated_at: now,
                name: name.to_owned(),
                description: description.to_owned(),
                vault: VaultRef {
                    id: vault.id,
                    name: vault.name,
                },
            };
            let binding = Binding {
                record_id: &secret.id,
                owner_id: &secret.vault.id,
                name: &secret.name,
            };
            let sealed = self.seal(&binding, value.expose_secret().as_bytes())?;
            let sql = format!(
                "INSERT INTO secrets (id, vault_id, name, description, created_at, updated_at, \
                 key_nonce, wrapped_key, value_nonce, ciphertext, seq) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, {})",
                next_seq("secrets")
            );
            tx.execute(
                &sql,
                &[
                    &secret.id,
                    &secret.vault.id,
                    &secret.name,
                    &secret.description,
                    &secret.created_at,
                    &secret.updated_at,
                    &sealed.key_nonce,
                    &sealed.wrapped_key,
                    &sealed.value_nonce,
                    &sealed.ciphertext,
                ],
            )
            .map_err(|e| {
                map_unique(e, || StoreError::DuplicateSecret {
                    vault: secret.vault.name.clone(),
                    name: name.to_owned(),
                })
            })?;
            Ok(secret)
        })
    }

    /// All secrets, or those of one vault ([`StoreError::VaultNotFound`] for an unknown vault id), oldest
    /// first.
    pub fn list_secrets(&self, vault_id: Option<&str>) -> Result<Vec<Secret>> {
        self.query(|tx| {
            if let Some(vault_id) = vault_id {
                vault_by_id(tx, vault_id)?;
            }
            let sql = format!(
                "{SECRET_SELECT} WHERE CAST($1 AS TEXT) IS NULL OR s.vault_id = $1 ORDER BY s.seq"
            );
            let rows = tx.query(&sql, &[&vault_id])?;
            Ok(rows
                .iter()
                .map(secret_from_row)
                .collect::<keygate_store::Result<_>>()?)
        })
    }

    /// The secret with this id (metadata only).
    pub fn get_secret(&self, id: &str) -> Result<Secret> {
        self.query(|tx| secret_by_id(tx, id))
    }

    /// Replaces a secret's value (needs the master key) and/or its description; `None` keeps the current one.
    pub fn update_secret(
        &self,
        id: &str,
        value: Option<&SecretString>,
        description: Option<&str>,
    ) -> Result<Secret> {
        if let Some(value) = value {
            check_value(value.expose_secret())?;
            self.key()?;
        }
        if let Some(description) = description {
            check_description(description)?;
        }
        self.write(SECRETS.name, |tx| {
            let mut secret = secret_by_id(tx, id)?;
            secret.updated_at = now();
            if let Some(description) = description {
                description.clone_into(&mut secret.description);
            }
            tx.execute(
                "UPDATE secrets SET description = $2, updated_at = $3 WHERE id = $1",
                &[&secret.id, &secret.description, &secret.updated_at],
            )?;
            if let Some(value) = value {
                let binding = Binding {
                    record_id: &secret.id,
                    owner_id: &secret.vault.id,
                    name: &secret.name,
                };
                let sealed = self.seal(&binding, value.expose_secret().as_bytes())?;
                tx.execute(
                    "UPDATE secrets SET key_nonce = $2, wrapped_key = $3, value_nonce = $4, ciphertext = $5 \
                     WHERE id = $1",
                    &[
                        &secret.id,
                        &sealed.key_nonce,
                        &sealed.wrapped_key,
                        &sealed.value_nonce,
                        &sealed.ciphertext,
                    ],
                )?;
            }
            Ok(secret)
        })
    }

    /// Deletes a secret.
    pub fn delete_secret(&self, id: &str) -> Result<()> {
        self.write(SECRETS.name, |tx| {
            match tx.execute("DELETE FROM secrets WHERE id = $1", &[&id])? {
                0 => Err(StoreError::SecretNotFound(id.to_owned())),
                _ => Ok(()),
            }
        })
    }
}
