use std::os::unix::fs::PermissionsExt;

use keygate_cel::{SecretError, SecretSource};
use secrecy::{ExposeSecret, SecretString};

use super::*;
use crate::test_support::{all_file_bytes, inline_key, TempDir};
use keygate_test_support::{on_both_backends, TestDatabase};

fn value(text: &str) -> SecretString {
    SecretString::from(text)
}

fn sqlite(dir: &TempDir) -> Location {
    Location::Sqlite(dir.path().join(crate::DB_FILE))
}

on_both_backends!(
    vault_crud_round_trip,
    duplicate_and_invalid_vault_names_are_refused,
    secret_crud_round_trip_without_exposing_values,
    secret_rules_duplicates_and_unknown_vaults,
    values_need_the_master_key_but_metadata_does_not,
    force_delete_removes_the_vaults_secrets,
    wrong_master_key_is_a_clear_error,
    snapshot_lookups_distinguish_missing_vaults_and_secrets,
    every_write_bumps_the_generation,
);

fn location(db: &TestDatabase) -> Location {
    Location::parse(&db.url).unwrap()
}

fn open(db: &TestDatabase) -> Result<Store> {
    Store::open_database(db.dir.path(), &location(db))
}

fn unlocked_with(db: &TestDatabase, key: u8) -> Result<Store> {
    let mut store = open(db)?;
    store.unlock(&inline_key(key))?;
    Ok(store)
}

fn unlocked(db: &TestDatabase) -> Store {
    unlocked_with(db, 1).unwrap()
}

fn unlocked_dir(dir: &TempDir) -> Store {
    Store::open_unlocked(dir.path(), &inline_key(1)).unwrap()
}

fn vault_crud_round_trip(db: &TestDatabase) {
    let store = open(db).unwrap();
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

fn duplicate_and_invalid_vault_names_are_refused(db: &TestDatabase) {
    let store = open(db).unwrap();
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

fn secret_crud_round_trip_without_exposing_values(db: &TestDatabase) {
    let store = unlocked(db);
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

fn secret_rules_duplicates_and_unknown_vaults(db: &TestDatabase) {
    let store = unlocked(db);
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

fn values_need_the_master_key_but_metadata_does_not(db: &TestDatabase) {
    let vault_id = {
        let store = unlocked(db);
        let vault = store.create_vault("v", "").unwrap();
        store
            .create_secret(&vault.id, "s", &value("secret"), "")
            .unwrap();
        vault.id
    };
    let store = open(db).unwrap();
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

    let existing = Store::open_existing(db.dir.path(), &location(db)).unwrap();
    assert!(existing.secret_exists("v", "s").unwrap());
}

#[test]
fn opening_an_existing_store_works_when_no_other_connection_is_open() {
    let dir = TempDir::new("read-only-closed");
    {
        let store = unlocked_dir(&dir);
        let vault = store.create_vault("gateway-auth", "").unwrap();
        store
            .create_secret(&vault.id, "access-token", &value("t"), "")
            .unwrap();
    }
    let store = Store::open_existing(dir.path(), &sqlite(&dir)).unwrap();
    assert!(store.secret_exists("gateway-auth", "access-token").unwrap());
    assert!(!store.secret_exists("gateway-auth", "other").unwrap());
}

#[test]
fn opening_a_missing_store_as_existing_creates_nothing() {
    let dir = TempDir::new("read-only");
    assert!(matches!(
        Store::open_existing(dir.path(), &sqlite(&dir)),
        Err(StoreError::NotInitialized(_))
    ));
    assert!(!dir.path().exists());
}

fn force_delete_removes_the_vaults_secrets(db: &TestDatabase) {
    let store = unlocked(db);
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

fn wrong_master_key_is_a_clear_error(db: &TestDatabase) {
    let store = unlocked(db);
    let vault = store.create_vault("v", "").unwrap();
    store
        .create_secret(&vault.id, "s", &value("secret"), "")
        .unwrap();
    drop(store);
    let err = unlocked_with(db, 2).unwrap_err();
    assert!(matches!(err, StoreError::WrongMasterKey(_)));
    assert!(
        err.to_string()
            .starts_with("master key does not match the one the database"),
        "{err}"
    );
    assert!(!err.is_invalid_input());
    // The right key still works.
    let snapshot = unlocked_with(db, 1).unwrap().load_snapshot().unwrap();
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
    let store = unlocked_dir(&dir);
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
    let store = unlocked_dir(&dir);
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

fn snapshot_lookups_distinguish_missing_vaults_and_secrets(db: &TestDatabase) {
    let store = unlocked(db);
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

fn every_write_bumps_the_generation(db: &TestDatabase) {
    let store = unlocked(db);
    let generation = || store.generation("secrets").unwrap();
    let g0 = generation();
    let vault = store.create_vault("v", "").unwrap();
    let g1 = generation();
    store
        .create_secret(&vault.id, "s", &value("x"), "")
        .unwrap();
    let g2 = generation();
    assert!(g0 < g1 && g1 < g2);
    // A refused write changes nothing.
    store.create_vault("v", "").unwrap_err();
    assert_eq!(generation(), g2);
    assert_eq!(store.load_snapshot().unwrap().generation(), g2);
    // Other components' caches are not woken.
    assert_eq!(store.generation("ip-policies").unwrap(), 0);
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
    raw(&dir)
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    check("after checkpoint");
    assert!(format!("{store:?}").contains("REDACTED"));
}

/// Turns a data directory written by this keygate back into what a keygate from before the migration
/// record left: `PRAGMA user_version` and `schema_components` instead of `store_migrations`, a
/// `generation` column in `meta`, no `seq` columns, and (at user_version 1) no IP policy tables.
fn roll_back_to_the_first_schema(dir: &TempDir, user_version: i64) {
    let conn = raw(dir);
    conn.execute_batch(
        "DROP TABLE store_migrations; DROP TABLE store_generations;
         ALTER TABLE meta ADD COLUMN generation INTEGER NOT NULL DEFAULT 7;
         ALTER TABLE vaults DROP COLUMN seq; ALTER TABLE secrets DROP COLUMN seq;
         ALTER TABLE ip_policies DROP COLUMN seq; ALTER TABLE ip_policy_rules DROP COLUMN seq;
         CREATE TABLE schema_components (name TEXT PRIMARY KEY, version INTEGER NOT NULL);
         INSERT INTO schema_components VALUES ('ip-policies', 1), ('extra', 1);
         CREATE TABLE extra (id TEXT PRIMARY KEY);",
    )
    .unwrap();
    if user_version == 1 {
        conn.execute_batch(
            "DROP TABLE ip_policy_rules; DROP TABLE ip_policies; DROP TABLE schema_components;",
        )
        .unwrap();
    }
    conn.pragma_update(None, "user_version", user_version)
        .unwrap();
}

#[test]
fn a_data_directory_from_before_the_migration_record_is_adopted() {
    const EXTRA: keygate_store::Component = keygate_store::Component {
        name: "extra",
        steps: &[
            keygate_store::Step::same("CREATE TABLE extra (id TEXT PRIMARY KEY);"),
            keygate_store::Step::same("ALTER TABLE extra ADD COLUMN note TEXT;"),
        ],
    };
    for user_version in [1, 2] {
        let dir = TempDir::new("adopt");
        let store = unlocked_dir(&dir);
        let first = store.create_vault("first", "").unwrap();
        let second = store.create_vault("second", "").unwrap();
        store
            .create_secret(&second.id, "s", &value("kept"), "")
            .unwrap();
        let policy = store.create_ip_policy("office").unwrap();
        drop(store);
        roll_back_to_the_first_schema(&dir, user_version);

        let store = unlocked_dir(&dir);
        // Nothing ran twice (step 1 would fail on the existing tables); the order survives.
        assert_eq!(
            store.list_vaults().unwrap(),
            [first.clone(), second.clone()]
        );
        let third = store.create_vault("third", "").unwrap();
        assert_eq!(store.list_vaults().unwrap(), [first, second, third]);
        assert_eq!(
            store
                .load_snapshot()
                .unwrap()
                .get("second", "s")
                .unwrap()
                .expose_secret(),
            "kept"
        );
        let policies = store.list_ip_policies().unwrap();
        if user_version == 1 {
            // IP policies came later: their tables are created by the upgrade.
            assert!(policies.is_empty());
        } else {
            assert_eq!(policies, [policy]);
            // Another crate's component is adopted at its recorded version; only its new step runs.
            store.migrate_component(&EXTRA).unwrap();
            store
                .write_unannounced(|tx| {
                    tx.execute("INSERT INTO extra (id, note) VALUES ('a', 'b')", &[])
                })
                .unwrap();
        }
        let versions = store
            .read("secrets", |tx, _| {
                tx.query(
                    "SELECT component, MAX(version) FROM store_migrations GROUP BY component ORDER BY component",
                    &[],
                )?
                .iter()
                .map(|row| Ok((row.get::<String>(0)?, row.get::<i64>(1)?)))
                .collect::<keygate_store::Result<Vec<_>>>()
            })
            .unwrap();
        let expected: &[(&str, i64)] = if user_version == 1 {
            &[("ip-policies", 2), ("secrets", 2), ("store", 1)]
        } else {
            &[
                ("extra", 2),
                ("ip-policies", 2),
                ("secrets", 2),
                ("store", 1),
            ]
        };
        let expected: Vec<_> = expected.iter().map(|(c, v)| (c.to_string(), *v)).collect();
        assert_eq!(versions, expected, "user_version {user_version}");
    }
}

#[test]
fn a_component_newer_than_the_binary_is_refused() {
    let dir = TempDir::new("components");
    let store = Store::open(dir.path()).unwrap();
    const STEPS: &[keygate_store::Step] = &[
        keygate_store::Step::same("CREATE TABLE extra (id TEXT PRIMARY KEY);"),
        keygate_store::Step::same("ALTER TABLE extra ADD COLUMN note TEXT;"),
    ];
    let newer = keygate_store::Component {
        name: "extra",
        steps: STEPS,
    };
    store.migrate_component(&newer).unwrap();
    let older = keygate_store::Component {
        name: "extra",
        steps: &STEPS[..1],
    };
    let err = store.migrate_component(&older).unwrap_err();
    assert!(err.to_string().contains("upgrade keygate"), "{err}");
    // Migrations are not data changes: caches need not reload.
    assert_eq!(store.generation("extra").unwrap(), 0);
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
    let store = unlocked_dir(&dir);
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
        *unlocked_dir(&dir).derive_key("test").unwrap()
    );
}
