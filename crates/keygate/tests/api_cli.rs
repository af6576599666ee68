//! `keygate api vaults|secrets ...` driven through the real binary.

mod api_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use api_support::*;
use base64::Engine as _;
use keygate_cel::SecretSource;
use keygate_secrets::{MasterKeySource, Store};
use secrecy::ExposeSecret;

/// The decrypted value of a secret, read through the library with the directory's key file.
fn stored_value(dir: &DataDir, vault: &str, name: &str) -> String {
    let store = Store::open_unlocked(dir.path(), &MasterKeySource::DefaultFile).unwrap();
    let snapshot = store.load_snapshot().unwrap();
    snapshot
        .get(vault, name)
        .unwrap()
        .expose_secret()
        .to_owned()
}

#[test]
fn vaults_round_trip() {
    let dir = DataDir::new("vaults");
    let vault = dir.json(&[
        "vaults",
        "create",
        "--name",
        "gateway-auth",
        "--description",
        "client tokens",
    ]);
    let id = str_field(&vault, "id").to_owned();
    assert!(
        id.starts_with("vault_") && id.len() == "vault_".len() + 26,
        "{id}"
    );
    assert_eq!(str_field(&vault, "name"), "gateway-auth");
    assert_eq!(str_field(&vault, "description"), "client tokens");
    assert!(str_field(&vault, "created_at").ends_with('Z'));
    assert_eq!(vault["created_at"], vault["updated_at"]);

    assert_eq!(dir.json(&["vaults", "get", &id]), vault);
    assert_eq!(
        dir.json(&["vaults", "list"]),
        serde_json::json!({ "vaults": [vault] })
    );

    let renamed = dir.json(&["vaults", "update", &id, "--name", "auth"]);
    assert_eq!(str_field(&renamed, "name"), "auth");
    assert_eq!(str_field(&renamed, "description"), "client tokens");
    let described = dir.json(&["vaults", "update", &id, "--description", "new"]);
    assert_eq!(
        (
            str_field(&described, "name"),
            str_field(&described, "description")
        ),
        ("auth", "new")
    );
    assert_eq!(dir.json(&["vaults", "get", &id]), described);

    let nothing = dir.run(&["vaults", "update", &id]);
    assert_eq!(nothing.status.code(), Some(2));

    let deleted = dir.run(&["vaults", "delete", &id]);
    assert!(deleted.status.success() && deleted.stdout.is_empty());
    assert_fails(
        &dir.run(&["vaults", "get", &id]),
        2,
        &format!("error: vault '{id}' not found"),
    );
    assert_eq!(
        dir.json(&["vaults", "list"]),
        serde_json::json!({ "vaults": [] })
    );
}

#[test]
fn secrets_round_trip_never_prints_values() {
    let dir = DataDir::new("secrets");
    let vault = dir.json(&["vaults", "create", "--name", "gateway-auth"]);
    let vault_id = str_field(&vault, "id").to_owned();
    let (v1, v2, v3) = (
        random_value("one"),
        random_value("two"),
        random_value("three"),
    );

    let mut outputs = Vec::new();
    let create = dir.run(&[
        "secrets",
        "create",
        "--name",
        "access-token",
        "--value",
        &v1,
        "--vault-id",
        &vault_id,
    ]);
    let by_id = parse_ok(&create);
    outputs.push(create);
    let secret_id = str_field(&by_id, "id").to_owned();
    assert!(secret_id.starts_with("secret_") && secret_id.len() == "secret_".len() + 26);
    assert_eq!(
        by_id["vault"],
        serde_json::json!({ "id": vault_id, "name": "gateway-auth" })
    );
    assert_eq!(str_field(&by_id, "description"), "");

    let create = dir.run(&[
        "secrets",
        "create",
        "--name",
        "client-b",
        "--value",
        &v2,
        "--vault-name",
        "gateway-auth",
        "--description",
        "second client",
    ]);
    let by_name = parse_ok(&create);
    outputs.push(create);
    assert_eq!(str_field(&by_name, "description"), "second client");
    assert_eq!(by_name["vault"]["id"], vault_id.as_str());

    let other = dir.json(&["vaults", "create", "--name", "openai"]);
    let other_id = str_field(&other, "id").to_owned();
    let in_other = dir.json(&[
        "secrets",
        "create",
        "--name",
        "api-key",
        "--value",
        &v3,
        "--vault-id",
        &other_id,
    ]);

    let list = dir.run(&["secrets", "list"]);
    assert_eq!(
        parse_ok(&list),
        serde_json::json!({ "secrets": [by_id, by_name, in_other] })
    );
    outputs.push(list);
    let only = dir.json(&["secrets", "list", "--vault-id", &other_id]);
    assert_eq!(only, serde_json::json!({ "secrets": [in_other] }));
    let get = dir.run(&["secrets", "get", &secret_id]);
    assert_eq!(parse_ok(&get), by_id);
    outputs.push(get);

    let described = dir.json(&[
        "secrets",
        "update",
        &secret_id,
        "--description",
        "rotated soon",
    ]);
    assert_eq!(str_field(&described, "description"), "rotated soon");
    let new_value = random_value("rotated");
    let update = dir.run(&["secrets", "update", &secret_id, "--value", &new_value]);
    assert_eq!(str_field(&parse_ok(&update), "description"), "rotated soon");
    outputs.push(update);
    assert_eq!(
        stored_value(&dir, "gateway-auth", "access-token"),
        new_value
    );
    assert_eq!(stored_value(&dir, "gateway-auth", "client-b"), v2);

    for out in &outputs {
        for value in [&v1, &v2, &v3, &new_value] {
            assert!(!contains(&out.stdout, value) && !contains(&out.stderr, value));
        }
    }

    let deleted = dir.run(&["secrets", "delete", &secret_id]);
    assert!(deleted.status.success() && deleted.stdout.is_empty());
    assert_fails(&dir.run(&["secrets", "get", &secret_id]), 2, "not found");

    let refused = dir.run(&["vaults", "delete", &vault_id]);
    assert_fails(&refused, 2, "--force");
    assert_eq!(
        dir.json(&["secrets", "list", "--vault-id", &vault_id])["secrets"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(dir
        .run(&["vaults", "delete", &vault_id, "--force"])
        .status
        .success());
    assert_eq!(
        dir.json(&["secrets", "list"]),
        serde_json::json!({ "secrets": [in_other] })
    );
}

#[test]
fn value_dash_reads_stdin_and_strips_one_trailing_newline() {
    let dir = DataDir::new("stdin");
    let vault = dir.json(&["vaults", "create", "--name", "v"]);
    let vault_id = str_field(&vault, "id");
    let value = random_value("piped");
    let create = [
        "secrets",
        "create",
        "--name",
        "piped",
        "--value",
        "-",
        "--vault-id",
        vault_id,
    ];
    let out = dir.run_with_stdin(&create, format!("{value}\n").as_bytes());
    let secret = parse_ok(&out);
    assert!(!contains(&out.stdout, &value));
    assert_eq!(stored_value(&dir, "v", "piped"), value);

    let crlf = [
        "secrets",
        "create",
        "--name",
        "crlf",
        "--value",
        "-",
        "--vault-id",
        vault_id,
    ];
    parse_ok(&dir.run_with_stdin(&crlf, b"windows\r\n"));
    assert_eq!(stored_value(&dir, "v", "crlf"), "windows");

    let update = [
        "secrets",
        "update",
        str_field(&secret, "id"),
        "--value",
        "-",
    ];
    parse_ok(&dir.run_with_stdin(&update, b"two lines\nkept\n\n"));
    assert_eq!(stored_value(&dir, "v", "piped"), "two lines\nkept\n");

    let empty = [
        "secrets",
        "create",
        "--name",
        "empty",
        "--value",
        "-",
        "--vault-id",
        vault_id,
    ];
    assert_fails(
        &dir.run_with_stdin(&empty, b"\n"),
        2,
        "secret value is empty",
    );
    let big = vec![b'x'; 64 * 1024 + 1];
    assert_fails(&dir.run_with_stdin(&empty, &big), 2, "64 KiB");
    assert_fails(&dir.run_with_stdin(&empty, b"\xff\xfe"), 2, "UTF-8");
    parse_ok(&dir.run_with_stdin(&empty, &big[..64 * 1024]));
}

#[test]
fn data_dir_holds_no_plaintext_even_in_the_wal() {
    let dir = DataDir::new("plaintext");
    dir.json(&["vaults", "create", "--name", "v"]);
    // An open connection keeps the WAL file in place while the CLI writes.
    let watcher = rusqlite::Connection::open(dir.path().join("keygate.db")).unwrap();
    let vaults: i64 = watcher
        .query_row("SELECT COUNT(*) FROM vaults", [], |row| row.get(0))
        .unwrap();
    assert_eq!(vaults, 1);
    let (arg_value, piped_value, updated) = (
        random_value("arg"),
        random_value("piped"),
        random_value("updated"),
    );
    let created = dir.json(&[
        "secrets",
        "create",
        "--name",
        "a",
        "--value",
        &arg_value,
        "--vault-name",
        "v",
    ]);
    let piped = [
        "secrets",
        "create",
        "--name",
        "b",
        "--value",
        "-",
        "--vault-name",
        "v",
    ];
    parse_ok(&dir.run_with_stdin(&piped, piped_value.as_bytes()));
    dir.json(&[
        "secrets",
        "update",
        str_field(&created, "id"),
        "--value",
        &updated,
    ]);

    let scan = |stage: &str| {
        assert_absent_from_files(dir.path(), stage, &[&arg_value, &piped_value, &updated])
    };
    assert!(dir.path().join("keygate.db-wal").exists());
    assert!(scan("before checkpoint") >= 3);
    watcher
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    scan("after checkpoint");
    drop(watcher);
    scan("after close");

    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dir.path()), 0o700);
    assert_eq!(mode(&dir.path().join("master.key")), 0o600);
    assert_eq!(mode(&dir.path().join("keygate.db")), 0o600);
    assert_eq!(stored_value(&dir, "v", "a"), updated);
}

#[test]
fn wrong_master_key_is_refused_with_a_clear_error() {
    let dir = DataDir::new("wrong-key");
    let key = |byte: u8| base64::engine::general_purpose::STANDARD.encode([byte; 32]);
    let vault = dir.json(&["vaults", "create", "--name", "v"]);
    let vault_id = str_field(&vault, "id").to_owned();
    let create = |name: &str| {
        [
            "secrets",
            "create",
            "--name",
            name,
            "--value",
            "x",
            "--vault-id",
            &vault_id,
        ]
        .map(str::to_owned)
    };
    let with_key = |args: &[String], key: &str| {
        dir.command(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .env("KEYGATE_MASTER_KEY", key)
            .output()
            .unwrap()
    };
    parse_ok(&with_key(&create("first"), &key(1)));
    // The inline key was used: no key file was written.
    assert!(!dir.path().join("master.key").exists());

    let wrong = with_key(&create("second"), &key(2));
    let stderr = assert_fails(
        &wrong,
        1,
        "error: master key does not match the one the database",
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let other_file = dir.path().join("other.key");
    std::fs::write(&other_file, format!("{}\n", key(3))).unwrap();
    let mut args = create("third").to_vec();
    args.extend([
        "--master-key-file".to_owned(),
        other_file.display().to_string(),
    ]);
    let by_file = dir
        .command(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .output()
        .unwrap();
    assert_fails(
        &by_file,
        1,
        "master key does not match the one the database",
    );

    // The default key file is never created once the directory has a key: that key could decrypt nothing.
    let missing = dir.run(
        &create("fourth")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_fails(&missing, 1, "does not exist");
    assert!(!dir.path().join("master.key").exists());

    assert_fails(
        &with_key(&create("fifth"), "not-base64!"),
        1,
        "invalid master key in KEYGATE_MASTER_KEY",
    );
    assert_fails(&with_key(&args, &key(1)), 2, "set only one");

    // Metadata shows only the secret stored under the right key.
    let names: Vec<_> = dir.json(&["secrets", "list"])["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| str_field(s, "name").to_owned())
        .collect();
    assert_eq!(names, ["first"]);
}

#[test]
fn concurrent_processes_all_succeed() {
    for round in 0..3 {
        let dir = DataDir::new(&format!("concurrent-{round}"));
        // Fresh directory: the processes race on creating the directory, the database and its schema.
        let spawn = |args: &[&str]| -> Child {
            dir.command(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let vault_names: Vec<String> = (0..4).map(|i| format!("vault-{i}")).collect();
        let children: Vec<Child> = vault_names
            .iter()
            .map(|name| spawn(&["vaults", "create", "--name", name]))
            .collect();
        for child in children {
            parse_ok(&child.wait_with_output().unwrap());
        }
        // Then they race on creating the master key file and writing secrets.
        let values: Vec<String> = (0..4).map(|i| random_value(&format!("value{i}"))).collect();
        let children: Vec<Child> = values
            .iter()
            .enumerate()
            .map(|(i, value)| {
                let name = format!("secret-{i}");
                spawn(&[
                    "secrets",
                    "create",
                    "--name",
                    &name,
                    "--value",
                    value,
                    "--vault-name",
                    "vault-0",
                ])
            })
            .collect();
        for child in children {
            parse_ok(&child.wait_with_output().unwrap());
        }
        assert_eq!(
            dir.json(&["vaults", "list"])["vaults"]
                .as_array()
                .unwrap()
                .len(),
            4
        );
        assert_eq!(
            dir.json(&["secrets", "list"])["secrets"]
                .as_array()
                .unwrap()
                .len(),
            4
        );
        for (i, value) in values.iter().enumerate() {
            assert_eq!(
                &stored_value(&dir, "vault-0", &format!("secret-{i}")),
                value
            );
        }
    }
}

#[test]
fn invalid_input_exits_2_with_one_sentence() {
    let dir = DataDir::new("invalid");
    let vault = dir.json(&["vaults", "create", "--name", "v"]);
    let vault_id = str_field(&vault, "id");
    assert_fails(
        &dir.run(&["vaults", "create", "--name", "has space"]),
        2,
        "invalid vault name 'has space'",
    );
    assert_fails(
        &dir.run(&["vaults", "create", "--name", "v"]),
        2,
        "a vault named 'v' already exists",
    );
    assert_fails(
        &dir.run(&["vaults", "update", "vault_nope", "--name", "w"]),
        2,
        "vault 'vault_nope' not found",
    );
    assert_fails(
        &dir.run(&["vaults", "delete", "vault_nope"]),
        2,
        "not found",
    );
    let create = |name: &str, value: &str| {
        dir.run(&[
            "secrets",
            "create",
            "--name",
            name,
            "--value",
            value,
            "--vault-id",
            vault_id,
        ])
    };
    parse_ok(&create("s", "value"));
    assert_fails(
        &create("s", "again"),
        2,
        "a secret named 's' already exists in vault 'v'",
    );
    assert_fails(&create("bad/name", "x"), 2, "invalid secret name");
    assert_fails(&create("e", ""), 2, "secret value is empty");
    assert_fails(
        &dir.run(&[
            "secrets",
            "create",
            "--name",
            "x",
            "--value",
            "y",
            "--vault-name",
            "nope",
        ]),
        2,
        "nope",
    );
    assert_fails(
        &dir.run(&[
            "secrets",
            "create",
            "--name",
            "x",
            "--value",
            "y",
            "--vault-id",
            "vault_x",
        ]),
        2,
        "not found",
    );
    assert_fails(
        &dir.run(&["secrets", "list", "--vault-id", "vault_x"]),
        2,
        "not found",
    );
    assert_fails(
        &dir.run(&["secrets", "update", "secret_x", "--description", "d"]),
        2,
        "not found",
    );
    assert_fails(
        &dir.run(&["secrets", "delete", "secret_x"]),
        2,
        "secret 'secret_x' not found",
    );
    // Usage errors from the argument parser also exit 2.
    assert_eq!(
        dir.run(&["secrets", "create", "--name", "x", "--value", "y"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        dir.run(&["secrets", "update", "secret_x"]).status.code(),
        Some(2)
    );
    assert_eq!(
        dir.json(&["secrets", "list"])["secrets"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn data_dir_comes_from_the_environment_too() {
    let dir = DataDir::new("env");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keygate"));
    cmd.args(["api", "vaults", "create", "--name", "from-env"])
        .env("KEYGATE_DATA_DIR", dir.path())
        .env_remove("KEYGATE_MASTER_KEY")
        .env_remove("KEYGATE_MASTER_KEY_FILE");
    parse_ok(&cmd.output().unwrap());
    // Global flags are accepted right after `api` as well as at the end.
    let out = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(["api", "--data-dir"])
        .arg(dir.path())
        .args(["vaults", "list"])
        .output()
        .unwrap();
    assert_eq!(parse_ok(&out)["vaults"][0]["name"], "from-env");
}
