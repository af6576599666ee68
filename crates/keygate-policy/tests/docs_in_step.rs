//! docs/policy.md must list exactly what the code supports: every action type, variable and
//! function, and nothing else.

use std::collections::BTreeSet;

fn doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/policy.md"))
        .expect("docs/policy.md")
}

/// Backticked first cells of the table rows under `heading`.
fn table_names(doc: &str, heading: &str) -> BTreeSet<String> {
    let section = doc
        .split(heading)
        .nth(1)
        .expect("section")
        .split("\n## ")
        .next()
        .unwrap_or_default();
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(name, _)| name.to_owned()))
        .collect()
}

#[test]
fn every_action_type_is_documented_and_nothing_else() {
    let doc = doc();
    let documented: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("### `"))
        .filter_map(|l| l.strip_suffix('`'))
        .map(str::to_owned)
        .collect();
    let registered: BTreeSet<String> = keygate_policy::actions::REGISTRY
        .iter()
        .map(|k| k.name.to_owned())
        .collect();
    assert_eq!(documented, registered);
}

#[test]
fn variables_match() {
    let documented = table_names(&doc(), "## Variables");
    let supported: BTreeSet<String> = keygate_cel::VARIABLES
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert_eq!(documented, supported);
}

#[test]
fn functions_match() {
    let documented = table_names(&doc(), "## Functions and macros");
    let supported: BTreeSet<String> = keygate_cel::FUNCTIONS
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert_eq!(documented, supported);
}
