//! End to end: IP intelligence through the real binary. Small MaxMind DB files (written by
//! keygate-test-support's writer) and a category file place each loopback source address
//! somewhere; clients connect from those addresses and get different answers.
//!
//! | source     | City            | ASN                   | categories                |
//! |------------|-----------------|-----------------------|---------------------------|
//! | 127.0.0.2  | Amsterdam, NL   | 64500 Example Transit |                           |
//! | 127.0.0.3  | Boston, US      | 64500 Example Transit |                           |
//! | 127.0.0.4  | Amsterdam, NL   | 64666 Bad Hosting     |                           |
//! | 127.0.0.5  | Amsterdam, NL   | 64500 Example Transit | proxy.anonymous.tor       |
//! | 127.0.0.6  | Amsterdam, NL   | 64500 Example Transit | blocklist.firehol.level1  |
//! | 127.0.0.9  | (none)          | (none)                |                           |

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{send, Gateway, Req, TempDir};
use keygate_test_support::mmdb::{asn_value, MmdbWriter, AMSTERDAM, BOSTON};
use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;

/// The files, in a directory that lives as long as the value.
struct Files {
    dir: TempDir,
}

impl Files {
    fn write() -> Self {
        let dir = TempDir::new("ipintel");
        let nl = AMSTERDAM.value();
        let city = MmdbWriter::new("GeoLite2-City")
            .insert("127.0.0.0/29", &nl)
            .insert("127.0.0.3/32", &BOSTON.value())
            .to_bytes();
        let transit = asn_value(64500, "Example Transit");
        let asn = MmdbWriter::new("GeoLite2-ASN")
            .insert("127.0.0.0/29", &transit)
            .insert("127.0.0.4/32", &asn_value(64666, "Bad Hosting"))
            .to_bytes();
        std::fs::write(dir.path().join("city.mmdb"), city).unwrap();
        std::fs::write(dir.path().join("asn.mmdb"), asn).unwrap();
        std::fs::write(
            dir.path().join("categories.txt"),
            "# test feed\n127.0.0.5 proxy.anonymous.tor\n127.0.0.6/32 blocklist.firehol.level1\n",
        )
        .unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `--ip-intel-db` for `dbs` and `--ip-categories` unless `categories` is false.
    fn flags(&self, dbs: &[&str], categories: bool) -> Vec<String> {
        let mut flags = Vec::new();
        for db in dbs {
            flags.push("--ip-intel-db".to_owned());
            flags.push(arg(&self.path(db)));
        }
        if categories {
            flags.push("--ip-categories".to_owned());
            flags.push(arg(&self.path("categories.txt")));
        }
        flags
    }

    fn all(&self) -> Vec<String> {
        self.flags(&["city.mmdb", "asn.mmdb"], true)
    }
}

fn arg(path: &Path) -> String {
    path.display().to_string()
}

fn start(policy: &str, flags: &[String]) -> Gateway {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Gateway::start(policy, &flags)
}

/// ngrok's "block by country", "deny Tor" and blocklist examples, an ASN rule, and a reply that
/// shows what the gateway knows about the client.
const POLICY: &str = r#"
on_http_request:
  - name: Block countries
    expressions:
      - conn.geo.country_code in ['US', 'KP']
    actions:
      - type: custom-response
        config:
          status_code: 451
          body: 'not available in ${conn.geo.country} (${conn.client_ip.geo.location.city})'
  - name: Block a hosting provider
    expressions:
      - conn.client_ip.as.number == 64666
    actions:
      - type: deny
        config:
          status_code: 403
  - name: Deny Tor
    expressions:
      - ('proxy.anonymous.tor' in conn.client_ip.categories)
    actions:
      - type: deny
        config:
          status_code: 403
  - name: Blocklisted
    expressions:
      - conn.client_ip.is_on_blocklist
    actions:
      - type: custom-response
        config:
          status_code: 429
          body: blocklisted
  - actions:
      - type: custom-response
        config:
          status_code: 200
          headers:
            x-geo: '${conn.geo.city}|${conn.geo.subdivision}|${conn.geo.latitude}|${conn.geo.radius}'
            x-location: '${conn.client_ip.geo.location.continent}|${conn.client_ip.geo.location.is_eu}|${conn.client_ip.geo.location.timezone}|${conn.client_ip.geo.location.postal_code}'
            x-as: '${conn.client_ip.as.number}|${conn.client_ip.as.organization}'
            x-categories: '${conn.client_ip.categories}|${conn.client_ip.is_tor_node}'
          body: 'hello ${conn.client_ip} from ${conn.geo.country_code}'
"#;

async fn from(gw: &Gateway, ip: &str) -> common::Reply {
    send(gw.addr, Req::get("/").from(ip)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_get_answers_by_where_they_come_from() {
    let files = Files::write();
    let gw = start(POLICY, &files.all());
    assert!(
        gw.output().contains(
            r#""message":"IP intelligence loaded","geo":true,"asn":true,"categories":true"#
        ),
        "{}",
        gw.output()
    );

    let nl = from(&gw, "127.0.0.2").await;
    assert_eq!(nl.status, 200, "{}", nl.text());
    assert_eq!(nl.text(), "hello 127.0.0.2 from NL");
    assert_eq!(
        nl.header("x-geo"),
        Some("Amsterdam|North Holland|52.3759|20")
    );
    assert_eq!(
        nl.header("x-location"),
        Some("EU|true|Europe/Amsterdam|1012")
    );
    assert_eq!(nl.header("x-as"), Some("64500|Example Transit"));
    assert_eq!(nl.header("x-categories"), Some("[]|false"));

    let us = from(&gw, "127.0.0.3").await;
    assert_eq!(us.status, 451, "{}", us.text());
    assert_eq!(us.text(), "not available in United States (Boston)");

    let hosting = from(&gw, "127.0.0.4").await;
    assert_eq!(hosting.status, 403, "{}", hosting.text());

    let tor = from(&gw, "127.0.0.5").await;
    assert_eq!(tor.status, 403, "{}", tor.text());

    let listed = from(&gw, "127.0.0.6").await;
    assert_eq!(
        (listed.status, listed.text().as_str()),
        (429, "blocklisted")
    );

    // In no file: empty values, so every rule passes it, as ngrok does.
    let unknown = from(&gw, "127.0.0.9").await;
    assert_eq!(unknown.status, 200, "{}", unknown.text());
    assert_eq!(unknown.text(), "hello 127.0.0.9 from ");
    assert_eq!(unknown.header("x-geo"), Some("|||"));
    assert_eq!(unknown.header("x-as"), Some("0|"));
}

/// Connects from `ip` and reads what the gateway sends before closing (nothing when refused).
async fn raw_exchange(addr: std::net::SocketAddr, ip: &str) -> Vec<u8> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    let request = format!("GET / HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    // A refused connection may be closed before the write lands.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn on_tcp_connect_drops_tor_and_countries_before_http() {
    let policy = r#"
on_tcp_connect:
  - expressions:
      - conn.client_ip.is_tor_node || conn.geo.country_code == 'US'
    actions:
      - type: log
        config:
          metadata:
            country: ${conn.geo.country_code}
            tor: ${conn.client_ip.is_tor_node}
      - type: close-connection
on_http_request:
  - actions:
      - type: custom-response
        config:
          status_code: 200
          body: welcome from ${conn.geo.country_code}
"#;
    let files = Files::write();
    let gw = start(policy, &files.all());
    let welcome = String::from_utf8_lossy(&raw_exchange(gw.addr, "127.0.0.2").await).into_owned();
    assert!(welcome.starts_with("HTTP/1.1 200"), "{welcome}");
    assert!(welcome.ends_with("welcome from NL"), "{welcome}");
    for refused in ["127.0.0.3", "127.0.0.5"] {
        let reply = raw_exchange(gw.addr, refused).await;
        assert!(
            reply.is_empty(),
            "{refused}: {:?}",
            String::from_utf8_lossy(&reply)
        );
    }
    assert!(
        gw.wait_for_output(r#""client_ip":"127.0.0.5""#, Duration::from_secs(5)),
        "{}",
        gw.output()
    );
    // The log action's metadata, as the refusal line prints it.
    let output = gw.output();
    let refused = |ip: &str| {
        output
            .lines()
            .find(|l| l.contains("connection refused") && l.contains(&format!("\"{ip}\"")))
            .unwrap_or_else(|| panic!("no refusal of {ip}: {output}"))
    };
    assert!(
        refused("127.0.0.3").contains(r#"String(\"US\")"#),
        "{output}"
    );
    assert!(
        refused("127.0.0.5").contains(r#"\"tor\": Bool(true)"#),
        "{output}"
    );
}

#[test]
fn serve_refuses_a_policy_reading_facts_no_file_provides() {
    let files = Files::write();
    let policy = "on_http_request:\n  - expressions:\n      - conn.client_ip.as.number == 64666\n    actions:\n      - type: deny\n";
    for flags in [Vec::new(), files.flags(&["city.mmdb"], true)] {
        let dir = TempDir::new("ipintel-refused");
        let path = dir.path().join("policy.yml");
        std::fs::write(&path, policy).unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_keygate"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .arg("--policy")
            .arg(&path)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(&flags)
            .env_remove("KEYGATE_MASTER_KEY")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("conn.client_ip.as.number needs a GeoIP2/GeoLite2 ASN database (--ip-intel-db FILE)"),
            "{stderr}"
        );
        assert!(
            stderr.contains(":3:"),
            "the line of the expression: {stderr}"
        );
    }
}

#[test]
fn serve_refuses_a_file_it_cannot_use() {
    let dir = TempDir::new("ipintel-bad");
    std::fs::write(
        dir.path().join("cats.txt"),
        "127.0.0.1 tor\nnot-an-ip tor\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("policy.yml"), "on_http_request: []\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--policy")
        .arg(dir.path().join("policy.yml"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--ip-categories")
        .arg(dir.path().join("cats.txt"))
        .env_remove("KEYGATE_MASTER_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cats.txt:2: `not-an-ip` is not a CIDR network"),
        "{stderr}"
    );
}

#[test]
fn policy_check_warns_without_files_and_checks_with_them() {
    let files = Files::write();
    let dir = TempDir::new("ipintel-check");
    let path = dir.path().join("policy.yml");
    std::fs::write(&path, POLICY).unwrap();
    let check = |flags: &[String]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_keygate"))
            .args(["policy", "check"])
            .arg(&path)
            .args(flags)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = check(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    for warning in [
        "warning: `keygate serve` refuses this policy without a GeoIP2/GeoLite2 ASN database (--ip-intel-db FILE), for conn.client_ip.as.number, conn.client_ip.as.organization; here they read as empty",
        "without an IP categories file (--ip-categories FILE), for conn.client_ip.categories, conn.client_ip.is_on_blocklist, conn.client_ip.is_tor_node;",
        "without a GeoIP2/GeoLite2 City or Country database (--ip-intel-db FILE), for conn.client_ip.geo.location.city, conn.client_ip.geo.location.continent,",
    ] {
        assert!(stderr.contains(warning), "{warning}\n{stderr}");
    }

    let (code, stderr) = check(&files.all());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");

    let (code, stderr) = check(&files.flags(&["city.mmdb", "asn.mmdb"], false));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "conn.client_ip.categories needs an IP categories file (--ip-categories FILE)"
        ),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_rereads_changed_files() {
    let files = Files::write();
    let gw = start(POLICY, &files.all());
    assert_eq!(from(&gw, "127.0.0.2").await.status, 200);
    std::fs::write(
        files.path("categories.txt"),
        "127.0.0.2 blocklist.spamhaus.drop\n",
    )
    .unwrap();
    gw.signal("HUP");
    assert!(
        gw.wait_for_output("policy reloaded", Duration::from_secs(10)),
        "{}",
        gw.output()
    );
    let listed = from(&gw, "127.0.0.2").await;
    assert_eq!(
        (listed.status, listed.text().as_str()),
        (429, "blocklisted")
    );
    // 127.0.0.6 is no longer in the file.
    assert_eq!(from(&gw, "127.0.0.6").await.status, 200);

    // A file that no longer parses keeps the data loaded before.
    std::fs::write(files.path("categories.txt"), "bad line\n").unwrap();
    gw.signal("HUP");
    assert!(
        gw.wait_for_output(
            "IP intelligence files not reloaded",
            Duration::from_secs(10)
        ),
        "{}",
        gw.output()
    );
    assert_eq!(from(&gw, "127.0.0.2").await.status, 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_files_can_come_from_the_config_file() {
    let files = Files::write();
    let config = files.path("keygate.toml");
    let list = |names: &[&str]| {
        let paths: Vec<String> = names
            .iter()
            .map(|n| format!("{:?}", arg(&files.path(n))))
            .collect();
        format!("[{}]", paths.join(", "))
    };
    std::fs::write(
        &config,
        format!(
            "ip-intel-db = {}\nip-categories = {}\n",
            list(&["city.mmdb", "asn.mmdb"]),
            list(&["categories.txt"])
        ),
    )
    .unwrap();
    let gw = start(POLICY, &["--config".to_owned(), arg(&config)]);
    assert_eq!(from(&gw, "127.0.0.3").await.status, 451);
    assert_eq!(from(&gw, "127.0.0.5").await.status, 403);
    assert_eq!(
        from(&gw, "127.0.0.2").await.header("x-as"),
        Some("64500|Example Transit")
    );
}

/// The examples load in `policy check` given the files, with nothing to warn about.
#[test]
fn the_examples_check_clean_against_the_files() {
    let files = Files::write();
    for example in ["ip-intelligence.yml", "ip-intelligence-tcp-connect.yml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(example);
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_keygate"))
            .args(["policy", "check"])
            .arg(&path)
            .args(files.all())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{example}: {stderr}");
        assert!(stderr.is_empty(), "{example}: {stderr}");
    }
}

/// `keygate policy test` answers the fields from the files given to it, so a case can check a
/// geo rule by its `client_ip`.
#[test]
fn policy_test_cases_run_against_the_files() {
    let files = Files::write();
    let policy = files.path("policy.yml");
    std::fs::write(&policy, POLICY).unwrap();
    let cases = files.path("policy.test.yml");
    std::fs::write(
        &cases,
        r#"
cases:
  - name: Boston is blocked
    client_ip: 127.0.0.3
    expect:
      status: 451
      body_contains: not available in United States (Boston)
      rules: [Block countries]
  - name: Amsterdam gets through
    client_ip: 127.0.0.2
    expect:
      status: 200
      headers:
        x-as: 64500|Example Transit
  - name: a Tor exit is denied
    client_ip: 127.0.0.5
    expect:
      status: 403
      rules: [Deny Tor]
"#,
    )
    .unwrap();
    let run = |flags: &[String]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_keygate"))
            .args(["policy", "test"])
            .arg(&policy)
            .arg(&cases)
            .args(flags)
            .output()
            .unwrap()
    };
    let output = run(&files.all());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("test result: ok. 3 passed, 0 failed"),
        "{stdout}"
    );

    // Without the files every field is empty: every case fails, and a warning says why.
    let output = run(&[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("0 passed, 3 failed"), "{stdout}");
    assert!(stderr.contains("here they read as empty"), "{stderr}");
}
