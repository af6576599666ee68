//! `keygate serve --config FILE`: `serve`'s settings in a TOML file.
//!
//! Each top-level key is a `serve` flag's long name without its leading `--` (`admin-listen =
//! "0.0.0.0:9090"`). The file's settings become those flags on the command line, inserted after
//! `serve`, except where the flag itself or its `KEYGATE_*` variable is given (or a flag it
//! conflicts with is): so a flag beats its variable, which beats the file, which beats the
//! default, and clap stays the one place that names, parses, checks and defaults every setting.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::builder::Resettable;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};
use toml::de::{DeTable, DeValue};

/// The subcommand that takes a config file.
const SUBCOMMAND: &str = "serve";
/// The id of its `--config` flag.
const CONFIG_ID: &str = "config";

/// `cli` with `serve --config FILE` (or `KEYGATE_CONFIG`).
pub fn with_flag(cli: Command) -> Command {
    cli.mut_subcommand(SUBCOMMAND, |serve| {
        serve.arg(
            Arg::new(CONFIG_ID)
                .long(CONFIG_ID)
                .env("KEYGATE_CONFIG")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .display_order(0)
                .help(
                    "TOML file of these settings, keyed by flag name (admin-listen = \"0.0.0.0:9090\"); \
                     flags and KEYGATE_* variables override it",
                ),
        )
    })
}

/// The command line `args` with the settings of `serve --config FILE` inserted as flags. `args`
/// come back unchanged when they name no config file (an empty `KEYGATE_CONFIG` names none), or
/// do not parse (the real parse reports why). `Err` is one line naming the file, and the line and key at fault.
pub fn expand(cli: &Command, mut args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let Ok(matches) = cli.clone().ignore_errors(true).try_get_matches_from(&args) else {
        return Ok(args);
    };
    let Some((SUBCOMMAND, given)) = matches.subcommand() else {
        return Ok(args);
    };
    let Some(path) = given
        .get_one::<PathBuf>(CONFIG_ID)
        .filter(|path| !path.as_os_str().is_empty())
    else {
        return Ok(args);
    };
    let Some(serve) = cli.find_subcommand(SUBCOMMAND) else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read the config file {}: {err}", path.display()))?;
    let flags = flags(serve, given, path, &text)?;
    // argv[1] is the subcommand: `keygate` has no options that take a value before it.
    let at = args
        .iter()
        .skip(1)
        .position(|arg| arg == SUBCOMMAND)
        .map_or(args.len(), |i| i + 2);
    args.splice(at..at, flags.into_iter().map(OsString::from));
    Ok(args)
}

/// The flags `text` (the config file at `path`) stands for, leaving out the settings `given`
/// (the command line as parsed without the file) already has from a flag or variable.
fn flags(
    serve: &Command,
    given: &ArgMatches,
    path: &Path,
    text: &str,
) -> Result<Vec<String>, String> {
    let table = DeTable::parse(text)
        .map_err(|err| format!("{}: {}", path.display(), err.to_string().trim_end()))?;
    let mut flags = Vec::new();
    for (key, value) in table.get_ref() {
        let line = text[..key.span().start].matches('\n').count() + 1;
        let at = |why: String| format!("{}:{line}: {}: {why}", path.display(), key.get_ref());
        let arg =
            setting(serve, key.get_ref()).ok_or_else(|| at(unknown_key(serve, key.get_ref())))?;
        if is_set(given, arg)
            || serve
                .get_arg_conflicts_with(arg)
                .iter()
                .any(|other| is_set(given, other))
        {
            continue;
        }
        for flag in as_flags(arg, value.get_ref()).map_err(at)? {
            check_value(arg, &flag).map_err(at)?;
            flags.push(flag);
        }
    }
    Ok(flags)
}

/// The `serve` flag a key names: any long flag but `--config` itself (and help).
fn setting<'a>(serve: &'a Command, key: &str) -> Option<&'a Arg> {
    serve.get_arguments().find(|arg| {
        arg.get_long() == Some(key)
            && arg.get_id() != CONFIG_ID
            && !matches!(arg.get_action(), ArgAction::Help | ArgAction::Version)
    })
}

/// Why `key` names no setting, with the flag it was probably meant to be.
fn unknown_key(serve: &Command, key: &str) -> String {
    let spelled = key
        .trim_start_matches('-')
        .to_ascii_lowercase()
        .replace('_', "-");
    match setting(serve, &spelled) {
        Some(_) => format!("unknown key: did you mean `{spelled}`?"),
        None => "unknown key (the keys are the long flags of `keygate serve --help`, without \
                 their `--`)"
            .into(),
    }
}

/// Whether `arg` was given as a flag or through its environment variable.
fn is_set(given: &ArgMatches, arg: &Arg) -> bool {
    matches!(
        given.value_source(arg.get_id().as_str()),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// `value` as command-line flags for `arg`: a switch takes `true` (or `false`, no flag), a
/// repeatable flag a list (or one value), any other flag one string or number.
fn as_flags(arg: &Arg, value: &DeValue) -> Result<Vec<String>, String> {
    let long = arg.get_long().unwrap_or_default();
    match (arg.get_action(), value) {
        (ArgAction::SetTrue, DeValue::Boolean(on)) => {
            Ok(on.then(|| format!("--{long}")).into_iter().collect())
        }
        (ArgAction::SetTrue, other) => Err(format!("expected true or false, got {}", kind(other))),
        (ArgAction::Append, DeValue::Array(items)) => items
            .iter()
            .map(|item| scalar(item.get_ref()).map(|v| format!("--{long}={v}")))
            .collect(),
        (_, other) => Ok(vec![format!("--{long}={}", scalar(other)?)]),
    }
}

/// A string or number as the text of a flag's value.
fn scalar(value: &DeValue) -> Result<String, String> {
    match value {
        DeValue::String(text) => Ok(text.to_string()),
        DeValue::Integer(number) => i128::from_str_radix(number.as_str(), number.radix())
            .map(|n| n.to_string())
            .map_err(|err| format!("invalid integer: {err}")),
        DeValue::Float(number) => Ok(number.as_str().to_owned()),
        other => Err(format!(
            "expected a string or a number, got {}",
            kind(other)
        )),
    }
}

fn kind(value: &DeValue) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) | DeValue::Float(_) => "a number",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table (settings are top-level keys)",
    }
}

/// Parses `flag` with `arg`'s own value parser, alone, so a bad value is reported with the file
/// and line it came from rather than as a flag nobody typed.
fn check_value(arg: &Arg, flag: &str) -> Result<(), String> {
    alone(arg)
        .try_get_matches_from([flag])
        .map(drop)
        .map_err(|err| {
            let rendered = err.render().to_string();
            let first = rendered.lines().next().unwrap_or_default();
            first.strip_prefix("error: ").unwrap_or(first).to_owned()
        })
}

/// A command of `arg` alone, without its ties to the other flags or its variable.
fn alone(arg: &Arg) -> Command {
    let arg = arg
        .clone()
        .required(false)
        .requires(Resettable::Reset)
        .conflicts_with(Resettable::Reset)
        .env(None);
    Command::new("keygate")
        .no_binary_name(true)
        .disable_help_flag(true)
        .arg(arg)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use clap::CommandFactory;

    use super::*;

    /// Writes `toml` to a new file; returns its path.
    fn file(toml: &str) -> PathBuf {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "keygate-config-test-{}-{}.toml",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, toml).unwrap();
        path
    }

    /// The error of `keygate serve --config FILE`, FILE holding `toml` (its path shown as FILE).
    fn error(toml: &str) -> String {
        let path = file(toml);
        let args = vec![
            "keygate".into(),
            "serve".into(),
            "--config".into(),
            path.clone().into(),
        ];
        let result = expand(&with_flag(crate::Cli::command()), args);
        let _ = std::fs::remove_file(&path);
        result
            .unwrap_err()
            .replace(&*path.to_string_lossy(), "FILE")
    }

    /// The flags `keygate serve EXTRA... --config FILE` gets from FILE holding `toml`, after
    /// checking they went right after `serve`.
    fn inserted(toml: &str, extra: &[&str]) -> Vec<String> {
        let path = file(toml);
        let mut args: Vec<OsString> = vec!["keygate".into(), "serve".into()];
        args.extend(extra.iter().map(OsString::from));
        args.push("--config".into());
        args.push(path.clone().into());
        let cli = with_flag(crate::Cli::command());
        let result = expand(&cli, args.clone());
        let _ = std::fs::remove_file(&path);
        let expanded = result.unwrap();
        assert_eq!(expanded[..2], args[..2], "the flags go after `serve`");
        assert_eq!(expanded[expanded.len() - args.len() + 2..], args[2..]);
        expanded[2..expanded.len() - args.len() + 2]
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn every_kind_of_setting_becomes_its_flag() {
        let flags = inserted(
            r#"
policy = "/etc/keygate/policy.yml"
listen = "0.0.0.0:8080"
max-body-bytes = 1_048_576
shutdown-grace = 0x10
no-ui = true
open-usage-api = false
trust-forwarded-for = ["10.0.0.0/8", "192.168.0.0/16"]
provider-url = "openai=http://127.0.0.1:9999/v1"
upstream-connect-timeout = "500ms"
"#,
            &[],
        );
        // Keys come in their TOML table's (sorted) order.
        assert_eq!(
            flags,
            [
                "--listen=0.0.0.0:8080",
                "--max-body-bytes=1048576",
                "--no-ui",
                "--policy=/etc/keygate/policy.yml",
                "--provider-url=openai=http://127.0.0.1:9999/v1",
                "--shutdown-grace=16",
                "--trust-forwarded-for=10.0.0.0/8",
                "--trust-forwarded-for=192.168.0.0/16",
                "--upstream-connect-timeout=500ms",
            ]
        );
    }

    #[test]
    fn the_expanded_command_line_parses_into_the_settings() {
        let path = file("policy = \"p.yml\"\nlisten = \"127.0.0.9:81\"\nworkers = 3\n");
        let cli = with_flag(crate::Cli::command());
        let args = ["keygate", "serve", "--workers", "2", "--config"].map(OsString::from);
        let mut args = args.to_vec();
        args.push(path.clone().into());
        let args = expand(&cli, args).unwrap();
        let _ = std::fs::remove_file(&path);
        let matches = cli.try_get_matches_from(args).unwrap();
        let serve = matches.subcommand_matches("serve").unwrap();
        assert_eq!(
            serve.get_one::<PathBuf>("policy").unwrap(),
            Path::new("p.yml")
        );
        assert_eq!(
            serve
                .get_one::<std::net::SocketAddr>("listen")
                .unwrap()
                .to_string(),
            "127.0.0.9:81"
        );
        // The flag, not the file.
        assert_eq!(serve.get_one::<u16>("workers"), Some(&2));
    }

    #[test]
    fn a_flag_on_the_command_line_wins_over_the_file() {
        let flags = inserted(
            "listen = \"0.0.0.0:8080\"\npolicy = \"a.yml\"\n",
            &["--listen", "127.0.0.1:1"],
        );
        assert_eq!(flags, ["--policy=a.yml"]);
    }

    #[test]
    fn a_flag_conflicting_with_a_setting_wins_over_it() {
        let flags = inserted(
            "admin-token-file = \"/run/token\"\npolicy = \"a.yml\"\n",
            &["--admin-token-secret", "admin/token"],
        );
        assert_eq!(flags, ["--policy=a.yml"]);
    }

    #[test]
    fn false_leaves_a_switch_off() {
        assert_eq!(inserted("no-ui = false\n", &[]), Vec::<String>::new());
    }

    #[test]
    fn an_unknown_key_is_named_with_its_file_and_line() {
        let err = error("policy = \"a.yml\"\n\nlistne = \"x\"\n");
        assert_eq!(
            err,
            "FILE:3: listne: unknown key (the keys are the long flags of `keygate serve --help`, \
             without their `--`)"
        );
    }

    #[test]
    fn a_key_spelt_with_underscores_gets_the_flag_name() {
        let err = error("admin_listen = \"0.0.0.0:9090\"\n");
        assert_eq!(
            err,
            "FILE:1: admin_listen: unknown key: did you mean `admin-listen`?"
        );
    }

    #[test]
    fn config_and_help_are_not_settings() {
        for key in ["config", "help"] {
            let err = error(&format!("{key} = \"x\"\n"));
            assert!(
                err.starts_with(&format!("FILE:1: {key}: unknown key")),
                "{err}"
            );
        }
    }

    #[test]
    fn a_bad_value_is_named_with_its_file_and_line() {
        let err = error("\nlisten = \"nope\"\n");
        assert_eq!(
            err,
            "FILE:2: listen: invalid value 'nope' for '--listen <LISTEN>': invalid socket address \
             syntax"
        );
        let err = error("workers = 0\n");
        assert!(
            err.starts_with("FILE:1: workers: invalid value '0'"),
            "{err}"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_is_refused() {
        for (toml, why) in [
            (
                "no-ui = \"yes\"\n",
                "FILE:1: no-ui: expected true or false, got a string",
            ),
            (
                "listen = true\n",
                "FILE:1: listen: expected a string or a number, got a boolean",
            ),
            (
                "listen = [\"0.0.0.0:1\"]\n",
                "FILE:1: listen: expected a string or a number, got a list",
            ),
            (
                "trust-forwarded-for = [[\"10.0.0.0/8\"]]\n",
                "FILE:1: trust-forwarded-for: expected a string or a number, got a list",
            ),
        ] {
            assert_eq!(error(toml), why);
        }
    }

    #[test]
    fn a_table_is_not_a_setting() {
        let err = error("[serve]\nlisten = \"0.0.0.0:1\"\n");
        assert!(err.starts_with("FILE:1: serve: unknown key"), "{err}");
    }

    #[test]
    fn malformed_toml_is_reported_with_the_file() {
        let err = error("listen = \n");
        assert!(err.starts_with("FILE: TOML parse error at line 1"), "{err}");
        let err = error("policy = \"a\"\npolicy = \"b\"\n");
        assert!(err.contains("duplicate key"), "{err}");
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let cli = with_flag(crate::Cli::command());
        let args =
            ["keygate", "serve", "--config", "/nonexistent/keygate.toml"].map(OsString::from);
        let err = expand(&cli, args.to_vec()).unwrap_err();
        assert!(
            err.starts_with("cannot read the config file /nonexistent/keygate.toml: "),
            "{err}"
        );
    }

    #[test]
    fn without_a_config_file_the_command_line_is_unchanged() {
        let cli = with_flag(crate::Cli::command());
        for args in [
            &["keygate", "serve", "--policy", "p.yml"][..],
            &["keygate", "serve", "--help"],
            &["keygate", "policy", "check", "p.yml"],
            &["keygate", "--version"],
        ] {
            let args: Vec<OsString> = args.iter().map(OsString::from).collect();
            assert_eq!(expand(&cli, args.clone()).unwrap(), args);
        }
    }

    #[test]
    fn every_serve_flag_can_be_checked_alone() {
        let cli = with_flag(crate::Cli::command());
        let serve = cli.find_subcommand(SUBCOMMAND).unwrap();
        let mut checked = 0;
        for arg in serve.get_arguments().filter(|arg| arg.get_long().is_some()) {
            alone(arg).debug_assert();
            checked += 1;
        }
        assert!(checked > 20, "{checked}");
    }
}
