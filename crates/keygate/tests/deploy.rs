//! The deployment files, checked without Docker or a cluster: the Dockerfile's build and
//! runtime rules, the compose file and Kubernetes manifests parsed and cross-checked (ports,
//! probes, labels, mounts, the variables and flags they name against `keygate serve --help`),
//! the shipped config file and ConfigMap policy run through the real binary, the systemd unit
//! through `systemd-analyze`, and a ConfigMap update (the kubelet's `..data` symlink swap)
//! reloading a running gateway.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{send, Gateway, Options, Req, TempDir, BIN};
use keygate_policy::document::{parse, Node, NodeValue};
use keygate_test_support::parts;

fn root() -> PathBuf {
    parts::workspace_root()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|err| panic!("{path}: {err}"))
}

fn yaml(path: &str) -> Node {
    parse(&read(path))
        .unwrap_or_else(|err| panic!("{path}:{}:{}: {}", err.pos.line, err.pos.col, err.message))
}

/// The value at `path` (dot-separated keys; a number indexes a list), following YAML merge keys
/// (`<<: *anchor`) as compose does; panics naming the path when absent.
fn at<'a>(node: &'a Node, path: &str) -> &'a Node {
    path.split('.').fold(node, |node, key| {
        lookup(node, key).unwrap_or_else(|| panic!("no `{path}` (at `{key}`)"))
    })
}

fn lookup<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    if let (NodeValue::Seq(items), Ok(index)) = (&node.value, key.parse::<usize>()) {
        return items.get(index);
    }
    node.get(key)
        .or_else(|| node.get("<<").and_then(|merged| lookup(merged, key)))
}

fn text<'a>(node: &'a Node, path: &str) -> &'a str {
    match &at(node, path).value {
        NodeValue::Str(text) => text,
        other => panic!("`{path}` is not a string: {other:?}"),
    }
}

fn int(node: &Node, path: &str) -> i64 {
    match at(node, path).value {
        NodeValue::Int(n) => n,
        ref other => panic!("`{path}` is not an integer: {other:?}"),
    }
}

fn items<'a>(node: &'a Node, path: &str) -> &'a [Node] {
    match &at(node, path).value {
        NodeValue::Seq(items) => items,
        other => panic!("`{path}` is not a list: {other:?}"),
    }
}

fn entries<'a>(node: &'a Node, path: &str) -> Vec<(&'a str, &'a Node)> {
    match &at(node, path).value {
        NodeValue::Map(entries) => entries.iter().map(|(k, v)| (k.as_str(), v)).collect(),
        other => panic!("`{path}` is not a map: {other:?}"),
    }
}

fn strings(node: &Node, path: &str) -> Vec<String> {
    items(node, path)
        .iter()
        .map(|item| match &item.value {
            NodeValue::Str(text) => text.clone(),
            other => panic!("an item of `{path}` is not a string: {other:?}"),
        })
        .collect()
}

/// `keygate serve --help`: the flags and `KEYGATE_*` variables that exist.
struct ServeHelp {
    flags: BTreeSet<String>,
    variables: BTreeSet<String>,
}

fn serve_help() -> ServeHelp {
    let output = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    let words = |prefix: &str| -> BTreeSet<String> {
        help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .filter(|word| word.starts_with(prefix) && word.len() > prefix.len())
            .map(str::to_owned)
            .collect()
    };
    let help = ServeHelp {
        flags: words("--"),
        variables: words("KEYGATE_"),
    };
    assert!(help.flags.contains("--config") && help.variables.contains("KEYGATE_REDIS"));
    help
}

/// The `--name` of `--name=value` or `--name`.
fn flag_name(arg: &str) -> &str {
    arg.split_once('=').map_or(arg, |(name, _)| name)
}

/// The port of `host:port`.
fn port(address: &str) -> u16 {
    address.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// The settings of the image's config file, `deploy/keygate.toml` (`key = "value"` lines).
fn image_setting(key: &str) -> String {
    read("deploy/keygate.toml")
        .lines()
        .find_map(|line| {
            let (k, v) = line.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| panic!("deploy/keygate.toml sets no `{key}`"))
}

// ---- Dockerfile ----

/// One instruction of a Dockerfile: its keyword (upper case) and the rest, continuation lines
/// joined.
struct Instruction {
    keyword: String,
    args: String,
}

fn dockerfile() -> Vec<Instruction> {
    let text = read("Dockerfile");
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, args) = current.split_once(' ').unwrap_or((&current, ""));
                instructions.push(Instruction {
                    keyword: keyword.to_ascii_uppercase(),
                    args: args.trim().to_owned(),
                });
                current.clear();
            }
        }
    }
    instructions
}

/// The value the `ENV` instructions of `stage` give `name` (`ENV NAME=VALUE ...`).
fn image_env(stage: &[Instruction], name: &str) -> String {
    stage
        .iter()
        .filter(|i| i.keyword == "ENV")
        .flat_map(|i| i.args.split_whitespace())
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no ENV {name}"))
        .to_owned()
}

/// A JSON-array (exec form) argument list, e.g. of `HEALTHCHECK ... CMD [...]`.
fn exec_form(args: &str) -> Vec<String> {
    let list = &args[args.find('[').expect("exec form")..];
    serde_json::from_str(list).unwrap_or_else(|err| panic!("not a JSON list: {list}: {err}"))
}

#[test]
fn the_dockerfile_builds_locked_in_stages_and_runs_unprivileged_with_a_healthcheck() {
    let instructions = dockerfile();
    let stages: Vec<&Instruction> = instructions
        .iter()
        .filter(|i| i.keyword == "FROM")
        .collect();
    assert!(
        stages.len() >= 2,
        "multi-stage: a build and a runtime stage"
    );
    for from in &stages {
        let image = from.args.split_whitespace().next().unwrap();
        let (name, tag) = image
            .split_once('@')
            .map(|(name, _digest)| (name, "digest"))
            .or_else(|| image.rsplit_once(':'))
            .unwrap_or((image, ""));
        assert!(
            !tag.is_empty() && tag != "latest" && !tag.contains('/') && !name.ends_with('/'),
            "base image not pinned to a release or digest: {image}"
        );
    }
    let build_stage = stages[0]
        .args
        .split_whitespace()
        .skip_while(|word| !word.eq_ignore_ascii_case("AS"))
        .nth(1)
        .expect("the build stage is named");
    assert!(
        stages[0].args.contains("bookworm"),
        "builder on Debian bookworm, as the runtime"
    );
    assert!(
        stages.last().unwrap().args.contains("debian12"),
        "runtime on Debian 12: the binary links the builder's glibc"
    );
    let runtime_at = instructions
        .iter()
        .rposition(|i| i.keyword == "FROM")
        .unwrap();
    let (build, runtime) = instructions.split_at(runtime_at);
    assert!(
        build
            .iter()
            .any(|i| i.keyword == "RUN"
                && i.args.contains("cargo build --release --locked -p keygate")),
        "the build is `cargo build --release --locked -p keygate`"
    );
    assert!(
        runtime
            .iter()
            .any(|i| i.keyword == "COPY" && i.args.contains(&format!("--from={build_stage}"))),
        "the runtime stage copies the binary from the build stage"
    );
    for add in instructions.iter().filter(|i| i.keyword == "ADD") {
        assert!(
            !add.args.contains("://"),
            "ADD of a URL (unverified download): {}",
            add.args
        );
    }
    let user = runtime
        .iter()
        .rfind(|i| i.keyword == "USER")
        .expect("the runtime stage sets USER");
    let uid = user.args.split(':').next().unwrap();
    assert!(
        !matches!(uid, "0" | "root"),
        "runs as root: USER {}",
        user.args
    );
    let volume = runtime
        .iter()
        .find(|i| i.keyword == "VOLUME")
        .expect("VOLUME");
    assert!(volume.args.contains(&image_setting("data-dir")));
    let healthcheck = runtime
        .iter()
        .find(|i| i.keyword == "HEALTHCHECK")
        .expect("HEALTHCHECK");
    let command = exec_form(&healthcheck.args);
    assert_eq!(command[..2], ["/usr/local/bin/keygate", "healthcheck"]);
    assert!(
        !command.iter().any(|arg| arg.starts_with("--url")),
        "the URL comes from KEYGATE_HEALTHCHECK_URL, which `docker run -e` can change"
    );
    assert_eq!(
        image_env(runtime, "KEYGATE_HEALTHCHECK_URL"),
        format!(
            "http://127.0.0.1:{}/healthz",
            port(&image_setting("admin-listen"))
        ),
        "the health check asks the admin listener the image's config file sets"
    );
    assert_eq!(
        image_env(runtime, "KEYGATE_CONFIG"),
        "/etc/keygate/keygate.toml"
    );
    let entrypoint = runtime.iter().find(|i| i.keyword == "ENTRYPOINT").unwrap();
    assert_eq!(exec_form(&entrypoint.args), ["/usr/local/bin/keygate"]);
}

#[test]
fn the_dockerignore_keeps_what_the_build_needs_and_drops_the_rest() {
    let ignore = read(".dockerignore");
    let rules: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        rules.first(),
        Some(&"*"),
        "everything is left out unless listed"
    );
    for needed in [
        "!Cargo.toml",
        "!Cargo.lock",
        "!crates/",
        "!xtask/",
        "!deploy/keygate.toml",
    ] {
        assert!(rules.contains(&needed), "{needed}");
    }
    assert!(rules.contains(&"**/target/"));
    // Every workspace member is in the build context.
    let manifest = read("Cargo.toml");
    assert!(
        manifest.contains(r#"members = ["crates/*", "xtask"]"#),
        "update .dockerignore"
    );
}

/// The HEALTHCHECK's own command line, with the image's URL pointed at a running gateway's admin
/// listener: healthy, and unhealthy once the gateway is gone.
#[test]
fn the_image_healthcheck_command_checks_a_running_gateway() {
    let instructions = dockerfile();
    let healthcheck = instructions
        .iter()
        .find(|i| i.keyword == "HEALTHCHECK")
        .unwrap();
    let command = exec_form(&healthcheck.args);
    let url = image_env(&instructions, "KEYGATE_HEALTHCHECK_URL");
    let gw = Gateway::start("on_http_request: []\n", &[]);
    let url = url.replace("127.0.0.1:9090", &gw.admin.to_string());
    let run = || {
        Command::new(BIN)
            .args(&command[1..])
            .env("KEYGATE_HEALTHCHECK_URL", &url)
            .output()
            .unwrap()
    };
    let healthy = run();
    assert!(healthy.status.success(), "{healthy:?}");
    drop(gw);
    let gone = run();
    assert_eq!(gone.status.code(), Some(1), "{gone:?}");
}

/// `deploy/keygate.toml` (the image's and the systemd unit's file) starts a gateway: every key
/// in it is a setting, with the paths and addresses overridden by flags as a test must.
#[tokio::test]
async fn the_shipped_config_file_starts_a_gateway() {
    let config = root().join("deploy/keygate.toml");
    let gw = Gateway::start_with(
        "on_http_request:\n  - actions:\n      - type: custom-response\n        config:\n          body: configured\n",
        Options {
            args: vec!["--config".into(), config.display().to_string()],
            ..Options::default()
        },
    );
    let reply = send(gw.addr, Req::get("/")).await.unwrap();
    assert_eq!((reply.status, reply.text()), (200, "configured".to_owned()));
}

// ---- docker compose ----

#[test]
fn compose_runs_two_gateways_sharing_one_redis_and_one_postgres_with_the_policy_read_only() {
    let compose = yaml("deploy/docker-compose.yml");
    let help = serve_help();
    let services = entries(&compose, "services");
    let names: Vec<&str> = services.iter().map(|(name, _)| *name).collect();
    assert!(names.contains(&"redis"), "{names:?}");
    assert!(names.contains(&"postgres"), "{names:?}");
    let gateways: Vec<&Node> = services
        .iter()
        .filter(|(name, _)| name.starts_with("gateway"))
        .map(|(_, service)| *service)
        .collect();
    assert_eq!(gateways.len(), 2);
    for service in ["redis", "postgres"] {
        let image = text(&compose, &format!("services.{service}.image"));
        assert!(
            image
                .rsplit_once(':')
                .is_some_and(|(_, tag)| tag != "latest"),
            "{image}"
        );
    }
    let postgres_env =
        |name: &str| text(&compose, &format!("services.postgres.environment.{name}"));
    let secrets: Vec<&str> = entries(&compose, "secrets")
        .iter()
        .map(|(n, _)| *n)
        .collect();
    let mut host_ports = BTreeSet::new();
    for gateway in gateways {
        assert_eq!(text(gateway, "build.context"), "..");
        assert!(matches!(
            at(gateway, "read_only").value,
            NodeValue::Bool(true)
        ));
        assert_eq!(strings(gateway, "cap_drop"), ["ALL"]);
        assert!(strings(gateway, "security_opt").contains(&"no-new-privileges:true".into()));
        // Each gateway on its own host ports, for the client and the admin listener.
        let mut container_ports = BTreeSet::new();
        for mapping in strings(gateway, "ports") {
            let (host, container) = mapping.split_once(':').unwrap();
            assert!(
                host_ports.insert(host.to_owned()),
                "host port {host} used twice"
            );
            container_ports.insert(container.parse::<u16>().unwrap());
        }
        assert_eq!(
            container_ports,
            BTreeSet::from([
                port(&image_setting("listen")),
                port(&image_setting("admin-listen"))
            ])
        );
        let environment = entries(gateway, "environment");
        for (name, _) in &environment {
            assert!(
                help.variables.contains(*name),
                "not a keygate serve variable: {name}"
            );
        }
        let env = |name: &str| text(gateway, &format!("environment.{name}"));
        // Rate limits shared through the compose file's one Redis.
        assert_eq!(env("KEYGATE_REDIS"), "redis://redis:6379/");
        // Vaults, keys and the ledger in its one PostgreSQL, with the credentials it is set up with.
        let database = url::Url::parse(env("KEYGATE_DATABASE")).unwrap();
        assert_eq!(database.scheme(), "postgres");
        assert_eq!(database.host_str(), Some("postgres"));
        assert_eq!(database.username(), postgres_env("POSTGRES_USER"));
        assert_eq!(database.password(), Some(postgres_env("POSTGRES_PASSWORD")));
        assert_eq!(database.path(), format!("/{}", postgres_env("POSTGRES_DB")));
        // The master key from a compose secret, never a value in the file.
        assert!(environment
            .iter()
            .all(|(name, _)| *name != "KEYGATE_MASTER_KEY"));
        let key_file = env("KEYGATE_MASTER_KEY_FILE");
        let secret = key_file
            .strip_prefix("/run/secrets/")
            .expect("a compose secret");
        assert!(strings(gateway, "secrets").contains(&secret.to_owned()));
        assert!(secrets.contains(&secret), "secret {secret} is not defined");
        // The policy comes from a read-only mount of a directory of the repository.
        let policy = env("KEYGATE_POLICY");
        let mount = strings(gateway, "volumes")
            .into_iter()
            .find(|volume| {
                let target = volume.split(':').nth(1).unwrap();
                policy.starts_with(&format!("{target}/"))
            })
            .expect("the policy's directory is mounted");
        let parts: Vec<&str> = mount.split(':').collect();
        assert_eq!(parts.get(2), Some(&"ro"), "{mount}");
        let on_host = root()
            .join("deploy")
            .join(parts[0])
            .join(policy.strip_prefix(&format!("{}/", parts[1])).unwrap());
        assert!(on_host.is_file(), "{}", on_host.display());
        // The data directory is a named volume (the image's only writable path).
        assert!(strings(gateway, "volumes")
            .iter()
            .any(|v| v.ends_with(&format!(":{}", image_setting("data-dir")))));
        for dependency in ["redis", "postgres"] {
            assert_eq!(
                text(gateway, &format!("depends_on.{dependency}.condition")),
                "service_healthy"
            );
        }
    }
}

// ---- Kubernetes ----

/// Every manifest kustomization.yaml lists, by kind; each file in deploy/k8s is listed.
fn k8s() -> Vec<(String, Node)> {
    let kustomization = yaml("deploy/k8s/kustomization.yaml");
    let listed = strings(&kustomization, "resources");
    let mut on_disk: Vec<String> = std::fs::read_dir(root().join("deploy/k8s"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") && name != "kustomization.yaml")
        .collect();
    on_disk.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(sorted, on_disk, "kustomization.yaml lists every manifest");
    listed
        .iter()
        .map(|file| {
            let node = yaml(&format!("deploy/k8s/{file}"));
            (text(&node, "kind").to_owned(), node)
        })
        .collect()
}

fn kind<'a>(manifests: &'a [(String, Node)], kind: &str) -> &'a Node {
    let mut found = manifests.iter().filter(|(k, _)| k == kind);
    let (_, node) = found.next().unwrap_or_else(|| panic!("no {kind}"));
    assert!(found.next().is_none(), "one {kind}");
    node
}

fn labels(node: &Node, path: &str) -> BTreeSet<(String, String)> {
    entries(node, path)
        .into_iter()
        .map(|(k, v)| match &v.value {
            NodeValue::Str(v) => (k.to_owned(), v.clone()),
            other => panic!("label {k}: {other:?}"),
        })
        .collect()
}

#[test]
fn the_deployment_runs_two_unprivileged_replicas_probed_on_the_admin_port() {
    let manifests = k8s();
    let help = serve_help();
    let deployment = kind(&manifests, "Deployment");
    assert_eq!(text(deployment, "apiVersion"), "apps/v1");
    assert_eq!(int(deployment, "spec.replicas"), 2);
    let selector = labels(deployment, "spec.selector.matchLabels");
    let pod_labels = labels(deployment, "spec.template.metadata.labels");
    assert!(selector.is_subset(&pod_labels));
    let pod = at(deployment, "spec.template.spec");
    assert!(matches!(
        at(pod, "securityContext.runAsNonRoot").value,
        NodeValue::Bool(true)
    ));
    // The image's user, which owns its data directory.
    let image_user = dockerfile()
        .into_iter()
        .rfind(|i| i.keyword == "USER")
        .unwrap()
        .args;
    assert_eq!(
        format!(
            "{}:{}",
            int(pod, "securityContext.runAsUser"),
            int(pod, "securityContext.runAsGroup")
        ),
        image_user
    );
    assert_eq!(
        text(pod, "securityContext.seccompProfile.type"),
        "RuntimeDefault"
    );
    assert!(
        int(pod, "terminationGracePeriodSeconds") > 30,
        "longer than the default --shutdown-grace"
    );
    let containers = items(pod, "containers");
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    let security = at(container, "securityContext");
    for (path, want) in [
        ("runAsNonRoot", true),
        ("readOnlyRootFilesystem", true),
        ("allowPrivilegeEscalation", false),
    ] {
        assert!(
            matches!(at(security, path).value, NodeValue::Bool(b) if b == want),
            "securityContext.{path} must be {want}"
        );
    }
    assert_eq!(strings(security, "capabilities.drop"), ["ALL"]);
    for path in ["requests.cpu", "requests.memory", "limits.memory"] {
        text(at(container, "resources"), path);
    }
    // Named ports at the image's listeners; probes on the admin one.
    let ports: Vec<(String, i64)> = items(container, "ports")
        .iter()
        .map(|p| (text(p, "name").to_owned(), int(p, "containerPort")))
        .collect();
    assert_eq!(
        ports,
        [
            ("http".to_owned(), i64::from(port(&image_setting("listen")))),
            (
                "admin".to_owned(),
                i64::from(port(&image_setting("admin-listen")))
            ),
        ]
    );
    assert_eq!(text(container, "readinessProbe.httpGet.path"), "/readyz");
    assert_eq!(text(container, "readinessProbe.httpGet.port"), "admin");
    assert_eq!(text(container, "livenessProbe.httpGet.path"), "/healthz");
    assert_eq!(text(container, "livenessProbe.httpGet.port"), "admin");
    // Flags and variables that exist.
    let args = strings(container, "args");
    assert_eq!(args[0], "serve");
    for arg in &args[1..] {
        assert!(
            help.flags.contains(flag_name(arg)),
            "not a serve flag: {arg}"
        );
    }
    for variable in items(container, "env") {
        let name = text(variable, "name");
        assert!(
            help.variables.contains(name),
            "not a serve variable: {name}"
        );
    }
    // The policy from the ConfigMap, mounted whole (a subPath mount never sees updates).
    let arg = |flag: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("{flag}=")))
            .unwrap_or_else(|| panic!("no {flag}"))
            .to_owned()
    };
    let mounts = items(container, "volumeMounts");
    let volumes = items(pod, "volumes");
    let mount_of = |file: &str| {
        let mount = mounts
            .iter()
            .find(|m| file.starts_with(&format!("{}/", text(m, "mountPath"))))
            .unwrap_or_else(|| panic!("{file} is on no mounted volume"));
        assert!(
            lookup(mount, "subPath").is_none(),
            "subPath mounts miss updates"
        );
        let name = text(mount, "name");
        let volume = volumes.iter().find(|v| text(v, "name") == name).unwrap();
        let key = file.rsplit('/').next().unwrap().to_owned();
        (mount, volume, key)
    };
    let (mount, volume, key) = mount_of(&arg("--policy"));
    assert!(matches!(at(mount, "readOnly").value, NodeValue::Bool(true)));
    let configmap = kind(&manifests, "ConfigMap");
    assert_eq!(
        text(volume, "configMap.name"),
        text(configmap, "metadata.name")
    );
    assert!(
        lookup(at(configmap, "data"), &key).is_some(),
        "no data.{key}"
    );
    // The master key from the Secret, readable by the pod's group.
    let key_file = items(container, "env")
        .iter()
        .find(|v| text(v, "name") == "KEYGATE_MASTER_KEY_FILE")
        .map(|v| text(v, "value").to_owned())
        .expect("KEYGATE_MASTER_KEY_FILE");
    let (mount, volume, key) = mount_of(&key_file);
    assert!(matches!(at(mount, "readOnly").value, NodeValue::Bool(true)));
    let secret = kind(&manifests, "Secret");
    assert_eq!(
        text(volume, "secret.secretName"),
        text(secret, "metadata.name")
    );
    assert!(
        lookup(at(secret, "stringData"), &key).is_some(),
        "no stringData.{key}"
    );
    // The shared store's URL from the same Secret, so every replica uses one database.
    let database = items(container, "env")
        .iter()
        .find(|v| text(v, "name") == "KEYGATE_DATABASE")
        .expect("KEYGATE_DATABASE");
    assert_eq!(
        text(database, "valueFrom.secretKeyRef.name"),
        text(secret, "metadata.name")
    );
    let url_key = text(database, "valueFrom.secretKeyRef.key");
    let url = text(at(secret, "stringData"), url_key);
    assert!(
        url.starts_with("postgres://") && url.contains("sslmode=require"),
        "{url}"
    );
    // Kubernetes reads YAML's 0440 as octal; this parser (YAML 1.2) as decimal digits.
    let mode = i64::from_str_radix(&int(volume, "secret.defaultMode").to_string(), 8).unwrap();
    assert_eq!(
        mode & 0o047,
        0o040,
        "group-readable, not world-readable: {mode:o}"
    );
    assert_eq!(
        int(pod, "securityContext.fsGroup"),
        int(pod, "securityContext.runAsGroup")
    );
    // Writable: only the data directory and /tmp.
    let writable: BTreeSet<&str> = mounts
        .iter()
        .filter(|m| lookup(m, "readOnly").is_none())
        .map(|m| text(m, "mountPath"))
        .collect();
    assert_eq!(
        writable,
        BTreeSet::from([image_setting("data-dir").as_str(), "/tmp"])
    );
}

#[test]
fn the_service_and_disruption_budget_select_the_gateway_pods() {
    let manifests = k8s();
    let deployment = kind(&manifests, "Deployment");
    let pod_labels = labels(deployment, "spec.template.metadata.labels");
    let service = kind(&manifests, "Service");
    assert!(labels(service, "spec.selector").is_subset(&pod_labels));
    let container_ports: BTreeSet<&str> =
        items(at(deployment, "spec.template.spec"), "containers.0.ports")
            .iter()
            .map(|p| text(p, "name"))
            .collect();
    for service_port in items(service, "spec.ports") {
        assert!(container_ports.contains(text(service_port, "targetPort")));
    }
    let pdb = kind(&manifests, "PodDisruptionBudget");
    assert_eq!(text(pdb, "apiVersion"), "policy/v1");
    assert_eq!(int(pdb, "spec.minAvailable"), 1);
    assert!(labels(pdb, "spec.selector.matchLabels").is_subset(&pod_labels));
    let kustomization = yaml("deploy/k8s/kustomization.yaml");
    let namespace = text(&kustomization, "namespace");
    assert_eq!(
        text(kind(&manifests, "Namespace"), "metadata.name"),
        namespace
    );
    assert_eq!(
        text(&kustomization, "images.0.name"),
        text(deployment, "spec.template.spec.containers.0.image")
    );
}

#[test]
fn the_configmap_policy_passes_policy_check() {
    let manifests = k8s();
    let configmap = kind(&manifests, "ConfigMap");
    let dir = TempDir::new("k8s-policy");
    for (name, policy) in entries(configmap, "data") {
        let NodeValue::Str(policy) = &policy.value else {
            panic!("data.{name} is not text");
        };
        let path = dir.path().join(name);
        std::fs::write(&path, policy).unwrap();
        let output = Command::new(BIN)
            .args(["policy", "check"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// A ConfigMap volume as the kubelet writes it: `policy.yml -> ..data/policy.yml`, `..data ->
/// ..TIMESTAMP`; an update writes a new `..TIMESTAMP` directory, points `..data_tmp` at it,
/// renames that over `..data` and removes the old directory. No event names `policy.yml`.
#[tokio::test]
async fn a_configmap_update_reloads_the_policy() {
    let answering = |text: &str| {
        format!("on_http_request:\n  - actions:\n      - type: custom-response\n        config:\n          body: {text}\n")
    };
    let gw = Gateway::start(&answering("v1"), &[]);
    // Answered: the watcher is up (it starts before the listeners serve).
    wait_for_body(&gw, "v1").await;
    let dir = gw.policy_path.parent().unwrap().to_owned();
    let publish = |version: &str, text: &str| -> PathBuf {
        let timestamped = dir.join(format!("..2026_12_07_{version}"));
        std::fs::create_dir(&timestamped).unwrap();
        std::fs::write(timestamped.join("policy.yml"), answering(text)).unwrap();
        let tmp = dir.join("..data_tmp");
        std::os::unix::fs::symlink(timestamped.file_name().unwrap(), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
        timestamped
    };
    // Into the ConfigMap layout (this step renames a link over policy.yml itself).
    let first = publish("a", "v2");
    let link = dir.join("policy.yml.tmp");
    std::os::unix::fs::symlink("..data/policy.yml", &link).unwrap();
    std::fs::rename(&link, &gw.policy_path).unwrap();
    wait_for_body(&gw, "v2").await;
    // The kubelet's update.
    publish("b", "v3");
    std::fs::remove_dir_all(first).unwrap();
    wait_for_body(&gw, "v3").await;
}

async fn wait_for_body(gw: &Gateway, body: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = send(gw.addr, Req::get("/")).await.unwrap();
        if reply.text() == body {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still answering {:?}, not {body:?}:\n{}",
            reply.text(),
            gw.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- systemd ----

/// The unit with its binary path pointed at the built `keygate`, in a scratch directory.
fn unit_for_this_build(dir: &Path) -> PathBuf {
    let unit = read("deploy/systemd/keygate.service");
    assert!(unit.contains("ExecStart=/usr/local/bin/keygate "));
    let path = dir.join("keygate.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/keygate", BIN)).unwrap();
    path
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let Some(analyze) = parts::require(parts::systemd_analyze()) else {
        return;
    };
    let dir = TempDir::new("systemd");
    let unit = unit_for_this_build(dir.path());
    let verify = Command::new(&analyze)
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    // systemd-analyze exits 0 on "Unknown key ..., ignoring": any output is a finding.
    assert!(
        verify.status.success() && verify.stderr.is_empty() && verify.stdout.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    // Exposure 2.0 or less ("OK" in systemd-analyze's words); the unit scores 1.2.
    let security = Command::new(&analyze)
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    assert!(
        security.status.success(),
        "{}",
        String::from_utf8_lossy(&security.stdout)
    );
    let text = read("deploy/systemd/keygate.service");
    let settings: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .collect();
    for required in [
        "DynamicUser=yes",
        "StateDirectory=keygate",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "SystemCallFilter=@system-service",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "MemoryDenyWriteExecute=yes",
        "LockPersonality=yes",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ExecStart=/usr/local/bin/keygate serve --config /etc/keygate/keygate.toml",
    ] {
        assert!(settings.contains(required), "missing {required}");
    }
    // The state directory is the data directory of the config file it runs.
    assert_eq!(image_setting("data-dir"), "/var/lib/keygate");
}

#[test]
fn the_systemd_env_file_names_real_variables() {
    let help = serve_help();
    let env = read("deploy/systemd/keygate.env");
    let mut named = 0;
    for line in env.lines() {
        let line = line.trim_start_matches('#');
        let Some((name, _)) = line.split_once('=') else {
            continue;
        };
        if name.starts_with("KEYGATE_") && !name.contains(' ') {
            named += 1;
            // KEYGATE_MASTER_KEY and KEYGATE_LOG are read outside clap (docs/secrets.md).
            assert!(
                help.variables.contains(name)
                    || ["KEYGATE_MASTER_KEY", "KEYGATE_LOG"].contains(&name),
                "not a keygate variable: {name}"
            );
        }
    }
    assert!(named >= 2);
}
