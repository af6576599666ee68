//! Installing Debian packages when this user may (root, or password-less sudo).

use std::process::{Command, Stdio};
use std::sync::Once;

/// Installs `package` with apt-get, refreshing the package lists once per run first (a fresh
/// machine has none). `Err` names the package and how to install it by hand when this user
/// cannot.
pub fn install(package: &str) -> Result<(), String> {
    let by_hand = format!("install it with `sudo apt-get install {package}` and run again");
    if keygate_test_support::parts::find_on_path("apt-get").is_none() {
        return Err(format!("no apt-get on this machine: {by_hand}"));
    }
    let Some(prefix) = privilege() else {
        return Err(format!("not root and no password-less sudo: {by_hand}"));
    };
    static UPDATE: Once = Once::new();
    UPDATE.call_once(|| {
        // A failed refresh shows up as a failed install below, with apt's own message.
        let _ = apt_get(prefix, &["update", "-qq"]);
    });
    if apt_get(
        prefix,
        &["install", "-y", "-qq", "--no-install-recommends", package],
    ) {
        Ok(())
    } else {
        Err(format!("apt-get install {package} failed: {by_hand}"))
    }
}

/// The command prefix that runs apt-get as root: none when root already, `sudo -n` when it needs
/// no password.
fn privilege() -> Option<&'static [&'static str]> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() == "0" {
        return Some(&[]);
    }
    let sudo = Command::new("sudo")
        .args(["-n", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    sudo.is_ok_and(|s| s.success()).then_some(&["sudo", "-n"])
}

fn apt_get(prefix: &[&str], args: &[&str]) -> bool {
    let mut command = match prefix.split_first() {
        Some((program, rest)) => {
            let mut command = Command::new(program);
            command.args(rest).arg("apt-get");
            command
        }
        None => Command::new("apt-get"),
    };
    command
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
