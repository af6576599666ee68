use std::os::unix::fs::PermissionsExt;

use keygate_cel::{SecretError, SecretSource};
use secrecy::{ExposeSecret, SecretString};

use super::*;
use crate::test_support::{all_file_bytes, inline_key, TempDir};

fn value(text: &str) -> SecretString {
    SecretString::from(text)
}

fn unlocked(dir: &TempDir) -> Store {
    Store::open_unlocked(dir.path(), &inline_key(1)).unwrap()
}

#[test]
fn vault_crud_round_trip() {
    let dir = TempDir::new("vaults");
    let store = Store::open(dir.path()).unwrap();
    let vault = store.create_vault("gateway-auth", "tokens").unwrap();
    assert!(vault.id.starts_with("vault_"));
    assert_eq!(vault.created_at, vault.updated_at);
    assert!(vault.created_at.ends_with('Z'), "{}", vault.created_at);
    assert_eq!(store.get_vault(&vault.id).unwrap(), vault);
    assert_eq!(store.vault_by_name("gateway-auth").unwrap(), vault);
    let other = store.create_vault("openai", "").unwrap();
    assert_eq!(
        store.list_vaults().unwrap(),
        vec![vault.clone(), other.clone()]
    );

    let renamed = store.update_vault(&vault.id, Some("auth"), None).unwrap();
    assert_eq!(
        (renamed.name.as_str(), renamed.description.as_str()),
        ("auth", "tokens")
    );
    let described = store
        .update_vault(&vault.id, None, Some("new text"))
        .unwrap();
    assert_eq!(
        (described.name.as_str(), described.description.as_str()),
        ("auth", "new text")
    );
    assert_eq!(store.get_vault(&vault.id).unwrap(), described);

    store.delete_vault(&other.id, false).unwrap();
    assert!(matches!(
        store.get_vault(&other.id),
        Err(StoreError::VaultNotFound(_))
    ));
    assert!(matches!(
        store.delete_vault(&other.id, false),
        Err(StoreError::VaultNotFound(_))
    ));
}

#[test]
fn duplicate_and_invalid_vault_names_are_refused() {
    let dir = TempDir::new("vault-dupes");
    let store = Store::open(dir.path()).unwrap();
    let first = store.create_vault("one", "").unwrap();
    store.create_vault("two", "").unwrap();
    let err = store.create_vault("one", "").unwrap_err();
    assert_eq!(err.to_string(), "a vault named 'one' already exists");
    assert!(err.is_invalid_input());
    assert!(matches!(
        store.update_vault(&first.id, Some("two"), None),
        Err(StoreError::DuplicateVault(name)) if name == "two"
    ));
    assert!(matches!(
        store.create_vault("bad name", ""),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.update_vault(&first.id, Some(""), None),
        Err(StoreError::Invalid(_))
    ));
    // Nothing half-written: still exactly the two vaults.
    assert_eq!(store.list_vaults().unwrap().len(), 2);
}

#[test]
fn secret_crud_round_trip_without_exposing_values() {
    let dir = TempDir::new("secrets");
    let store = unlocked(&dir);
    let vault = store.create_vault("gateway-auth", "").unwrap();
    let secret = store
        .create_secret(&vault.id, "access-token", &value("tok-1"), "client a")
        .unwrap();
    assert!(secret.id.starts_with("secret_"));
    assert_eq!(secret.vault.id, vault.id);
    assert_eq!(secret.vault.name, "gateway-auth");
    assert_eq!(store.get_secret(&secret.id).unwrap(), secret);
    assert_eq!(store.list_secrets(None).unwrap(), vec![secret.clone()]);
    assert_eq!(
        store.list_secrets(Some(&vault.id)).unwrap(),
        vec![secret.clone()]
    );

    let updated = store
        .update_secret(&secret.id, None, Some("client b"))
        .unwrap();
    assert_eq!(updated.description, "client b");
    store
        .update_secret(&secret.id, Some(&value("tok-2")), None)
        .unwrap();
    let snapshot = store.load_snapshot().unwrap();
    assert_eq!(
        snapshot
            .get("gateway-auth", "access-token")
            .unwrap()
            .expose_secret(),
        "tok-2"
    );
    assert_eq!(
        store.get_secret(&secret.id).unwrap().description,
        "client b"
    );

    let json = serde_json::to_string(&store.list_secrets(None).unwrap()).unwrap();
    assert!(!json.contains("tok-"), "{json}");

    store.delete_secret(&secret.id).unwrap();
    assert!(matches!(
        store.get_secret(&secret.id),
        Err(StoreError::SecretNotFound(_))
    ));
    assert!(matches!(
        store.delete_secret(&secret.id),
        Err(StoreError::SecretNotFound(_))
    ));
}

#[test]
fn secret_rules_duplicates_and_unknown_vaults() {
    let dir = TempDir::new("secret-rules");
    let store = unlocked(&dir);
    let a = store.create_vault("a", "").unwrap();
    let b = store.create_vault("b", "").unwrap();
    store.create_secret(&a.id, "key", &value("v"), "").unwrap();
    let err = store
        .create_secret(&a.id, "key", &value("v2"), "")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "a secret named 'key' already exists in vault 'a'"
    );
    store.create_secret(&b.id, "key", &value("v3"), "").unwrap();
    assert!(matches!(
        store.create_secret("vault_nope", "key", &value("v"), ""),
        Err(StoreError::VaultNotFound(_))
    ));
    assert!(matches!(
        store.list_secrets(Some("vault_nope")),
        Err(StoreError::VaultNotFound(_))
    ));
    assert!(matches!(
        store.create_secret(&a.id, "k", &value(""), ""),
        Err(StoreError::Invalid(_))
    ));
    let big = "x".repeat(crate::MAX_VALUE_BYTES + 1);
    assert!(matches!(
        store.create_secret(&a.id, "k", &value(&big), ""),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.create_secret(&a.id, "a/b", &value("v"), ""),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.list_secrets(None).unwrap().len(), 2);
}

#[test]
fn values_need_the_master_key_but_metadata_does_not() {
    let dir = TempDir::new("locked");
    let vault_id = {
        let store = unlocked(&dir);
        let vault = store.create_vault("v", "").unwrap();
        store
            .create_secret(&vault.id, "s", &value("secret"), "")
            .unwrap();
        vault.id
    };
    let store = Store::open(dir.path()).unwrap();
    assert!(matches!(
        store.create_secret(&vault_id, "t", &value("x"), ""),
        Err(StoreError::Locked)
    ));
    assert!(matches!(store.load_snapshot(), Err(StoreError::Locked)));
    let id = store.list_secrets(None).unwrap()[0].id.clone();
    assert!(matches!(
        store.update_secret(&id, Some(&value("y")), None),
        Err(StoreError::Locked)
    ));
    assert_eq!(
        store
            .update_secret(&id, None, Some("d"))
            .unwrap()
            .description,
        "d"
    );
    assert!(store.secret_exists("v", "s").unwrap());
    assert!(!store.secret_exists("v", "t").unwrap());
    assert!(!store.secret_exists("w", "s").unwrap());

    let read_only = Store::open_read_only(dir.path()).unwrap();
    assert!(read_only.secret_exists("v", "s").unwrap());
}

#[test]
fn read_only_open_works_when_no_other_connection_is_open() {
    let dir = TempDir::new("read-only-closed");
    {
        let store = unlocked(&dir);
        let vault = store.create_vault("gateway-auth", "").unwrap();
        store
            .create_secret(&vault.id, "access-token", &value("t"), "")
            .unwrap();
    }
    let store = Store::open_read_only(dir.path()).unwrap();
    assert!(store.secret_exists("gateway-auth", "access-token").unwrap());
    assert!(!store.secret_exists("gateway-auth", "other").unwrap());
    assert!(store.create_vault("x", "").is_err());
}

#[test]
fn read_only_open_creates_nothing() {
    let dir = TempDir::new("read-only");
    assert!(matches!(
        Store::open_read_only(dir.path()),
        Err(StoreError::NotInitialized(_))
    ));
    assert!(!dir.path().exists());
}

#[test]
fn force_delete_removes_the_vaults_secrets() {
    let dir = TempDir::new("force");
    let store = unlocked(&dir);
    let vault = store.create_vault("v", "").unwrap();
    store
        .create_secret(&vault.id, "s1", &value("1"), "")
        .unwrap();
    store
        .create_secret(&vault.id, "s2", &value("2"), "")
        .unwrap();
    let err = store.delete_vault(&vault.id, false).unwrap_err();
    assert!(
        matches!(err, StoreError::VaultNotEmpty { count: 2, .. }),
        "{err}"
    );
    assert_eq!(store.list_secrets(None).unwrap().len(), 2);
    store.delete_vault(&vault.id, true).unwrap();
    assert!(store.list_secrets(None).unwrap().is_empty());
    assert!(store.list_vaults().unwrap().is_empty());
}

#[test]
fn wrong_master_key_is_a_clear_error() {
    let dir = TempDir::new("wrong-key");
    let store = unlocked(&dir);
    let vault = store.create_vault("v", "").unwrap();
    store
        .create_secret(&vault.id, "s", &value("secret"), "")
        .unwrap();
    drop(store);
    let err = Store::open_unlocked(dir.path(), &inline_key(2)).unwrap_err();
    assert!(matches!(err, StoreError::WrongMasterKey(_)));
    assert!(
        err.to_string()
            .starts_with("master key does not match this data directory"),
        "{err}"
    );
    assert!(!err.is_invalid_input());
    // The right key still works.
    let snapshot = Store::open_unlocked(dir.path(), &inline_key(1))
        .unwrap()
        .load_snapshot()
        .unwrap();
    assert_eq!(snapshot.get("v", "s").unwrap().expose_secret(), "secret");
}

#[test]
fn default_key_file_is_created_once_and_not_recreated_after_loss() {
    let dir = TempDir::new("key-file");
    Store::open_unlocked(dir.path(), &MasterKeySource::DefaultFile).unwrap();
    let key_file = dir.path().join(crate::DEFAULT_KEY_FILE);
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let db = dir.path().join(crate::DB_FILE);
    assert_eq!(
        std::fs::metadata(db).unwrap().permissions().mode() & 0o777,
        0o600
    );
    Store::open_unlocked(dir.path(), &MasterKeySource::DefaultFile).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let err = Store::open_unlocked(dir.path(), &MasterKeySource::DefaultFile).unwrap_err();
    assert!(matches!(err, StoreError::MasterKeyMissing { .. }), "{err}");
    assert!(!key_file.exists());
}

/// Opens the raw database to play the attacker.
fn raw(dir: &TempDir) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.path().join(crate::DB_FILE)).unwrap()
}

#[test]
fn tampered_ciphertext_is_detected_not_returned() {
    let dir = TempDir::new("tamper");
    let store = unlocked(&dir);
    let vault = store.create_vault("v", "").unwrap();
    store
        .create_secret(&vault.id, "s", &value("original"), "")
        .unwrap();
    store
        .create_secret(&vault.id, "t", &value("untouched"), "")
        .unwrap();
    raw(&dir)
        .execute(
            "UPDATE secrets SET ciphertext = CAST(zeroblob(length(ciphertext)) AS BLOB) WHERE name = 's'",
            [],
        )
        .unwrap();
    let snapshot = store.load_snapshot().unwrap();
    assert!(matches!(
        snapshot.get("v", "s"),
        Err(SecretError::Unavailable(_))
    ));
    assert_eq!(snapshot.get("v", "t").unwrap().expose_secret(), "untouched");
}

#[test]
fn swapped_ciphertexts_fail_authentication() {
    let dir = TempDir::new("swap");
    let store = unlocked(&dir);
    let vault = store.create_vault("v", "").unwrap();
    store
        .create_secret(&vault.id, "low", &value("low-privilege"), "")
        .unwrap();
    store
        .create_secret(&vault.id, "high", &value("high-privilege"), "")
        .unwrap();
    raw(&dir)
        .execute_batch(
            "UPDATE secrets SET (key_nonce, wrapped_key, value_nonce, ciphertext) = \
             (SELECT key_nonce, wrapped_key, value_nonce, ciphertext FROM secrets WHERE name = 'high') \
             WHERE name = 'low';",
        )
        .unwrap();
    let snapshot = store.load_snapshot().unwrap();
    assert!(matches!(
        snapshot.get("v", "low"),
        Err(SecretError::Unavailable(_))
    ));
    assert_eq!(
        snapshot.get("v", "high").unwrap().expose_secret(),
        "high-privilege"
    );
}

#[test]
fn snapshot_lookups_distinguish_missing_vaults_and_secrets() {
    let dir = TempDir::new("lookups");
    let store = unlocked(&dir);
    store.create_vault("empty", "").unwrap();
    let snapshot = store.load_snapshot().unwrap();
    assert!(snapshot.is_empty());
    assert_eq!(
        snapshot.get("empty", "x").unwrap_err(),
        SecretError::SecretNotFound {
            vault: "empty".into(),
            name: "x".into()
        }
    );
    assert_eq!(
        snapshot.get("nope", "x").unwrap_err(),
        SecretError::VaultNotFound("nope".into())
    );
}

#[test]
fn every_write_bumps_the_generation() {
    let dir = TempDir::new("generation");
    let store = unlocked(&dir);
    let g0 = store.generation().unwrap();
    let vault = store.create_vault("v", "").unwrap();
    let g1 = store.generation().unwrap();
    store
        .create_secret(&vault.id, "s", &value("x"), "")
        .unwrap();
    let g2 = store.generation().unwrap();
    assert!(g0 < g1 && g1 < g2);
    // A refused write changes nothing.
    store.create_vault("v", "").unwrap_err();
    assert_eq!(store.generation().unwrap(), g2);
    assert_eq!(store.load_snapshot().unwrap().generation(), g2);
}

#[test]
fn no_plaintext_or_key_reaches_the_disk() {
    let dir = TempDir::new("plaintext");
    let store = Store::open_unlocked(dir.path(), &MasterKeySource::DefaultFile).unwrap();
    let vault = store.create_vault("v", "").unwrap();
    let needle = "plaintext-needle-0123456789";
    let secret = store
        .create_secret(&vault.id, "s", &value(needle), "")
        .unwrap();
    store
        .update_secret(&secret.id, Some(&value("second-needle-9876543210")), None)
        .unwrap();
    let check = |stage: &str| {
        for (path, bytes) in all_file_bytes(dir.path()) {
            for n in [needle, "second-needle-9876543210"] {
                assert!(
                    !bytes.windows(n.len()).any(|w| w == n.as_bytes()),
                    "{stage}: {} contains the value",
                    path.display()
                );
            }
        }
    };
    check("with WAL");
    store
        .connection()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    check("after checkpoint");
    assert!(format!("{store:?}").contains("REDACTED"));
}

#[test]
fn a_version_1_database_is_upgraded_in_place() {
    let dir = TempDir::new("upgrade");
    let store = unlocked(&dir);
    let vault = store.create_vault("v", "").unwrap();
    store
        .create_secret(&vault.id, "s", &value("kept"), "")
        .unwrap();
    drop(store);
    // Roll the file back to what a version 1 keygate wrote.
    let conn = raw(&dir);
    conn.execute_batch(
        "DROP TABLE ip_policy_rules; DROP TABLE ip_policies; DROP TABLE schema_components; \
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(conn);

    let store = unlocked(&dir);
    let version: i64 = store
        .connection()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 2);
    // The IP policy tables come with the upgrade.
    assert!(store.list_ip_policies().unwrap().is_empty());
    store.migrate_component("extra", &[]).unwrap();
    assert_eq!(
        store
            .load_snapshot()
            .unwrap()
            .get("v", "s")
            .unwrap()
            .expose_secret(),
        "kept"
    );
}

#[test]
fn component_migrations_run_once_in_order_and_refuse_newer_versions() {
    let dir = TempDir::new("components");
    let store = Store::open(dir.path()).unwrap();
    let v1 = ["CREATE TABLE extra (id TEXT PRIMARY KEY);"];
    let v2 = [v1[0], "ALTER TABLE extra ADD COLUMN note TEXT;"];
    store.migrate_component("extra", &v1).unwrap();
    // Running the same steps again is a no-op (the table exists, so a rerun would fail).
    store.migrate_component("extra", &v1).unwrap();
    Store::open(dir.path())
        .unwrap()
        .migrate_component("extra", &v2)
        .unwrap();
    store
        .connection()
        .execute("INSERT INTO extra (id, note) VALUES ('a', 'b')", [])
        .unwrap();
    let err = store.migrate_component("extra", &v1).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UnsupportedComponent {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().starts_with("the extra tables in "), "{err}");
    // Migrations are not data changes: caches need not reload.
    assert_eq!(store.generation().unwrap(), 0);
}

#[test]
fn sealed_values_open_only_for_their_binding_and_derived_keys_need_the_key() {
    let dir = TempDir::new("seal");
    let locked = Store::open(dir.path()).unwrap();
    let binding = Binding {
        record_id: "aigpk_a",
        owner_id: "aigk_a",
        name: "openai",
    };
    assert!(matches!(
        locked.seal(&binding, b"x"),
        Err(StoreError::Locked)
    ));
    assert!(matches!(locked.derive_key("test"), Err(StoreError::Locked)));
    let store = unlocked(&dir);
    let sealed = store.seal(&binding, b"sk-value").unwrap();
    let opened = store.open_text(&binding, &sealed).unwrap().unwrap();
    assert_eq!(opened.expose_secret(), "sk-value");
    let moved = Binding {
        owner_id: "aigk_b",
        ..binding
    };
    assert!(store.open_text(&moved, &sealed).unwrap().is_none());
    assert_eq!(
        *store.derive_key("test").unwrap(),
        *unlocked(&dir).derive_key("test").unwrap()
    );
}
