//! Vault operations.

use keygate_store::{Row, Tx};

use super::{map_unique, Store};
use crate::error::{Result, StoreError};
use crate::ids::{new_id, VAULT_PREFIX};
use crate::model::{now, Vault};
use crate::schema::{next_seq, SECRETS};
use crate::validate::{check_description, check_name};

const VAULT_COLUMNS: &str = "id, created_at, updated_at, name, description";

fn vault_from_row(row: &Row) -> keygate_store::Result<Vault> {
    Ok(Vault {
        id: row.get(0)?,
        created_at: row.get(1)?,
        updated_at: row.get(2)?,
        name: row.get(3)?,
        description: row.get(4)?,
    })
}

fn find_vault(tx: &mut Tx<'_>, column: &str, key: &str) -> Result<Option<Vault>> {
    let sql = format!("SELECT {VAULT_COLUMNS} FROM vaults WHERE {column} = $1");
    Ok(tx
        .query_opt(&sql, &[&key])?
        .map(|row| vault_from_row(&row))
        .transpose()?)
}

/// The vault with this id, or [`StoreError::VaultNotFound`].
pub(super) fn vault_by_id(tx: &mut Tx<'_>, id: &str) -> Result<Vault> {
    find_vault(tx, "id", id)?.ok_or_else(|| StoreError::VaultNotFound(id.to_owned()))
}

fn count_secrets(tx: &mut Tx<'_>, vault_id: &str) -> Result<u64> {
    Ok(tx
        .query_one(
            "SELECT COUNT(*) FROM secrets WHERE vault_id = $1",
            &[&vault_id],
        )?
        .get(0)?)
}

impl Store {
    /// Creates a vault. Names are unique ([`StoreError::DuplicateVault`]).
    pub fn create_vault(&self, name: &str, description: &str) -> Result<Vault> {
        check_name("vault", name)?;
        check_description(description)?;
        let now = now();
        let vault = Vault {
            id: new_id(VAULT_PREFIX)?,
            created_at: now.clone(),
            updated_at: now,
            name: name.to_owned(),
            description: description.to_owned(),
        };
        self.write(SECRETS.name, |tx| {
            let sql = format!(
                "INSERT INTO vaults (id, created_at, updated_at, name, description, seq) \
                 VALUES ($1, $2, $3, $4, $5, {})",
                next_seq("vaults")
            );
            tx.execute(
                &sql,
                &[
                    &vault.id,
                    &vault.created_at,
                    &vault.updated_at,
                    &vault.name,
                    &vault.description,
                ],
            )
            .map_err(|e| map_unique(e, || StoreError::DuplicateVault(name.to_owned())))
        })?;
        Ok(vault)
    }

    /// All vaults, oldest first.
    pub fn list_vaults(&self) -> Result<Vec<Vault>> {
        let sql = format!("SELECT {VAULT_COLUMNS} FROM vaults ORDER BY seq");
        self.query(|tx| {
            let rows = tx.query(&sql, &[])?;
            Ok(rows
                .iter()
                .map(vault_from_row)
                .collect::<keygate_store::Result<_>>()?)
        })
    }

    /// The vault with this id.
    pub fn get_vault(&self, id: &str) -> Result<Vault> {
        self.query(|tx| vault_by_id(tx, id))
    }

    /// The vault with this name.
    pub fn vault_by_name(&self, name: &str) -> Result<Vault> {
        self.query(|tx| find_vault(tx, "name", name))?
            .ok_or_else(|| StoreError::VaultNotFound(name.to_owned()))
    }

    /// Renames a vault and/or changes its description; `None` keeps the current value.
    pub fn update_vault(
        &self,
        id: &str,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<Vault> {
        if let Some(name) = name {
            check_name("vault", name)?;
        }
        if let Some(description) = description {
            check_description(description)?;
        }
        self.write(SECRETS.name, |tx| {
            let mut vault = vault_by_id(tx, id)?;
            if let Some(name) = name {
                name.clone_into(&mut vault.name);
            }
            if let Some(description) = description {
                description.clone_into(&mut vault.description);
            }
            vault.updated_at = now();
            tx.execute(
                "UPDATE vaults SET name = $2, description = $3, updated_at = $4 WHERE id = $1",
                &[
                    &vault.id,
                    &vault.name,
                    &vault.description,
                    &vault.updated_at,
                ],
            )
            .map_err(|e| map_unique(e, || StoreError::DuplicateVault(vault.name.clone())))?;
            Ok(vault)
        })
    }

    /// Deletes a vault. One that still holds secrets is refused ([`StoreError::VaultNotEmpty`]) unless
    /// `force`, which deletes its secrets too.
    pub fn delete_vault(&self, id: &str, force: bool) -> Result<()> {
        self.write(SECRETS.name, |tx| {
            vault_by_id(tx, id)?;
            let count = count_secrets(tx, id)?;
            if count > 0 && !force {
                return Err(StoreError::VaultNotEmpty {
                    id: id.to_owned(),
                    count,
                });
            }
            tx.execute("DELETE FROM secrets WHERE vault_id = $1", &[&id])?;
            tx.execute("DELETE FROM vaults WHERE id = $1", &[&id])?;
            Ok(())
        })
    }
}
