//! `keygate serve --config FILE` through the real binary: a gateway started with only the file
//! serves on its listeners with its policy; flags beat `KEYGATE_*` variables, which beat the
//! file; a bad file stops the start with its name, line and key. Also `keygate healthcheck`.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, send, Req, TempDir, BIN};

const POLICY: &str = "on_http_request:\n  - actions:\n      - type: custom-response\n        config:\n          status_code: 203\n          body: from the config file's policy\n";

/// A running `keygate serve`, killed on drop.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `keygate` with `args` and `env`, and no other `KEYGATE_*` variable.
fn keygate(args: &[&str], env: &[(&str, String)]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args);
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("KEYGATE_")) {
        command.env_remove(name);
    }
    command.envs(env.iter().map(|(name, value)| (name, value)));
    command
}

/// Starts `keygate serve ARGS` and waits until `ready` accepts connections; `Err` with what it
/// printed when it exited first.
fn start(args: &[&str], env: &[(&str, String)], ready: SocketAddr) -> Result<Serve, String> {
    let child = keygate(&["serve"], env)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keygate serve");
    let mut serve = Serve(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = serve.0.try_wait() {
            let mut stderr = String::new();
            let _ = serve
                .0
                .stderr
                .take()
                .map(|mut s| s.read_to_string(&mut stderr));
            return Err(format!("({status}) {stderr}"));
        }
        if std::net::TcpStream::connect(ready).is_ok() {
            return Ok(serve);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("keygate did not start");
}

fn addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Writes the policy and a config file naming it, `listen` and `admin`; returns the config's path.
fn config(dir: &Path, listen: SocketAddr, admin: SocketAddr) -> String {
    std::fs::write(dir.join("policy.yml"), POLICY).unwrap();
    let path = dir.join("keygate.toml");
    std::fs::write(
        &path,
        format!(
            "# written by the test\npolicy = {policy:?}\ndata-dir = {data:?}\nlisten = \"{listen}\"\n\
             admin-listen = \"{admin}\"\nno-usage-ledger = true\nlog-format = \"pretty\"\n",
            policy = dir.join("policy.yml"),
            data = dir.join("data"),
        ),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

/// Starts a gateway from a fresh config file; tries new ports when one was taken meanwhile.
fn start_configured(
    dir: &Path,
    extra: impl Fn() -> (
        Vec<String>,
        Vec<(&'static str, String)>,
        SocketAddr,
        SocketAddr,
    ),
) -> (Serve, SocketAddr, SocketAddr) {
    for attempt in 1.. {
        let (file_listen, file_admin) = (addr(), addr());
        let path = config(dir, file_listen, file_admin);
        let (flags, env, listen, admin) = extra();
        let listen = if listen.port() == 0 {
            file_listen
        } else {
            listen
        };
        let admin = if admin.port() == 0 { file_admin } else { admin };
        let mut args = vec!["--config", &path];
        args.extend(flags.iter().map(String::as_str));
        match start(&args, &env, admin) {
            Ok(serve) => return (serve, listen, admin),
            Err(printed) if attempt < 3 && printed.contains("Address already in use") => {}
            Err(printed) => panic!("keygate exited early: {printed}"),
        }
    }
    unreachable!()
}

async fn answer(listen: SocketAddr) -> (u16, String) {
    let reply = send(listen, Req::get("/")).await.expect("request");
    (reply.status, reply.text())
}

#[tokio::test]
async fn a_gateway_started_with_only_a_config_file_serves_what_it_says() {
    let dir = TempDir::new("config-only");
    let unset = SocketAddr::from(([127, 0, 0, 1], 0));
    let (_serve, listen, admin) = start_configured(dir.path(), || (vec![], vec![], unset, unset));
    assert_eq!(
        answer(listen).await,
        (203, "from the config file's policy".to_owned())
    );
    let health = send(admin, Req::get("/healthz")).await.expect("healthz");
    assert_eq!(health.status, 200);
    assert!(dir.path().join("data/admin-token").exists(), "data-dir");
    assert!(
        !dir.path().join("data/usage.db").exists(),
        "no-usage-ledger"
    );
}

#[tokio::test]
async fn a_flag_beats_its_variable_which_beats_the_file() {
    let dir = TempDir::new("config-precedence");
    let (flag_listen, env_admin) = (addr(), addr());
    let (_serve, listen, admin) = start_configured(dir.path(), || {
        let env_listen = addr();
        (
            vec!["--listen".into(), flag_listen.to_string()],
            vec![
                ("KEYGATE_LISTEN", env_listen.to_string()),
                ("KEYGATE_ADMIN_LISTEN", env_admin.to_string()),
            ],
            flag_listen,
            env_admin,
        )
    });
    assert_eq!((listen, admin), (flag_listen, env_admin));
    assert_eq!(answer(flag_listen).await.0, 203);
    let health = send(env_admin, Req::get("/healthz"))
        .await
        .expect("healthz");
    assert_eq!(health.status, 200);
}

#[test]
fn a_bad_config_file_stops_the_start_naming_file_line_and_key() {
    let dir = TempDir::new("config-bad");
    let path = dir.path().join("keygate.toml");
    std::fs::write(
        &path,
        "policy = \"p.yml\"\n\nadmin_listen = \"0.0.0.0:9090\"\n",
    )
    .unwrap();
    let output = keygate(&["serve", "--config", &path.to_string_lossy()], &[])
        .output()
        .expect("run keygate serve");
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "error: {}:3: admin_listen: unknown key: did you mean `admin-listen`?\n",
            path.display()
        )
    );
}

#[test]
fn the_config_file_can_come_from_keygate_config() {
    let dir = TempDir::new("config-env");
    let path = dir.path().join("keygate.toml");
    std::fs::write(&path, "listen = \"nope\"\n").unwrap();
    let output = keygate(
        &["serve"],
        &[("KEYGATE_CONFIG", path.display().to_string())],
    )
    .output()
    .expect("run keygate serve");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: {}:1: listen: invalid value 'nope'",
            path.display()
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn healthcheck_exits_0_on_a_healthy_gateway_and_1_otherwise() {
    let dir = TempDir::new("config-healthcheck");
    let unset = SocketAddr::from(([127, 0, 0, 1], 0));
    let (serve, _, admin) = start_configured(dir.path(), || (vec![], vec![], unset, unset));
    let check = |url: String| {
        keygate(&["healthcheck", "--url", &url, "--timeout", "5s"], &[])
            .output()
            .expect("run keygate healthcheck")
    };
    let healthy = check(format!("http://{admin}/healthz"));
    assert_eq!(healthy.status.code(), Some(0), "{healthy:?}");
    let missing = check(format!("http://{admin}/no-such-page"));
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("answered 404"),
        "{missing:?}"
    );
    drop(serve);
    let down = check(format!("http://{admin}/healthz"));
    assert_eq!(down.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("cannot connect"),
        "{down:?}"
    );
}
