use super::{string, Fixture};
use crate::functions::compare::ct_str_eq;
use crate::Value;

const BEARER_RULE: &str =
    "req.headers['authorization'][0] != 'Bearer ' + secrets.get('gateway-auth', 'access-token')";

#[test]
fn bearer_rule_fires_on_missing_or_wrong_header_only() {
    assert!(Fixture::new(&[]).truth(BEARER_RULE), "missing header");
    assert!(Fixture::new(&[("authorization", "Bearer nope")]).truth(BEARER_RULE));
    assert!(Fixture::new(&[("authorization", "bearer s3cret-token")]).truth(BEARER_RULE));
    assert!(!Fixture::new(&[("Authorization", "Bearer s3cret-token")]).truth(BEARER_RULE));
}

#[test]
fn api_key_rule() {
    let rule = "req.headers['x-api-key'][0] != secrets.get('gateway-auth', 'access-token')";
    assert!(Fixture::new(&[]).truth(rule));
    assert!(Fixture::new(&[("x-api-key", "s3cret-tokenX")]).truth(rule));
    assert!(!Fixture::new(&[("X-Api-Key", "s3cret-token")]).truth(rule));
}

#[test]
fn secret_on_the_left_compares_too() {
    let fx = Fixture::new(&[("authorization", "Bearer s3cret-token")]);
    assert!(fx.truth("'Bearer ' + secrets.get('gateway-auth', 'access-token') == req.headers['authorization'][0]"));
    assert!(fx.truth("secrets.get('gateway-auth', 'access-token') == 's3cret-token'"));
    assert!(fx.truth(
        "req.headers['authorization'][0].endsWith(secrets.get('gateway-auth', 'access-token'))"
    ));
}

/// The set-vars pattern of the seed guide: a list of templates, then `in`.
#[test]
fn valid_auth_headers_list_from_templates() {
    let templates = [
        "${'Bearer ' + secrets.get('gateway-auth', 'client-a-token')}",
        "${'Bearer ' + secrets.get('gateway-auth', 'client-b-token')}",
    ];
    let rule = "!(req.headers['authorization'][0] in vars.valid_auth_headers)";
    for (header, fires) in [
        (Some("Bearer token-b"), false),
        (Some("Bearer token-a"), false),
        (Some("Bearer token-c"), true),
        (None, true),
    ] {
        let headers: Vec<(&str, &str)> = header.map(|h| ("authorization", h)).into_iter().collect();
        let mut fx = Fixture::new(&headers);
        let values: Vec<Value> = templates
            .iter()
            .map(|t| {
                let template = fx.compiler.template(t).unwrap();
                assert!(template.reads_secrets());
                template.eval(&fx.scope()).unwrap()
            })
            .collect();
        fx.vars
            .set("valid_auth_headers", Value::List(values.into()));
        assert_eq!(fx.truth(rule), fires, "{header:?}");
    }
}

#[test]
fn missing_secret_is_an_error_naming_vault_and_secret() {
    let fx = Fixture::new(&[]);
    let message = fx.error("secrets.get('gateway-auth', 'nope') == 'x'");
    assert!(
        message.contains("'nope'") && message.contains("'gateway-auth'"),
        "{message}"
    );
    let message = fx.error("secrets.get('no-vault', 'access-token') == 'x'");
    assert!(message.contains("'no-vault'"), "{message}");
    assert!(!message.contains("s3cret"), "{message}");
}

#[test]
fn errors_after_reading_a_secret_do_not_leak_it() {
    let fx = Fixture::new(&[]);
    for source in [
        "int(secrets.get('gateway-auth', 'access-token')) == 1",
        "secrets.get('gateway-auth', 'access-token') + 1 == 1",
        "{'a': 1}[secrets.get('gateway-auth', 'access-token')] == 1",
        "'x'.matches(secrets.get('gateway-auth', 'access-token') + '[')",
        "timestamp(secrets.get('gateway-auth', 'access-token')) > timestamp(0)",
    ] {
        let message = fx.error(source);
        assert!(!message.contains("s3cret"), "{source}: {message}");
    }
}

#[test]
fn template_string_of_a_secret_is_plain() {
    let fx = Fixture::new(&[]);
    let template = fx
        .compiler
        .template("Bearer ${secrets.get('gateway-auth', 'access-token')}")
        .unwrap();
    assert!(template.reads_secrets());
    assert_eq!(
        template.eval_string(&fx.scope()).unwrap(),
        "Bearer s3cret-token"
    );
    assert_eq!(
        template.eval(&fx.scope()).unwrap(),
        string("Bearer s3cret-token")
    );
    let missing = fx
        .compiler
        .template("${secrets.get('gateway-auth', 'nope')}")
        .unwrap();
    let error = missing.eval_string(&fx.scope()).unwrap_err();
    assert!(error.message.contains("'nope'"), "{}", error.message);
}

#[test]
fn constant_time_equality_is_still_equality() {
    assert!(ct_str_eq("", ""));
    assert!(ct_str_eq("token", "token"));
    assert!(!ct_str_eq("token", "tokeN"));
    assert!(!ct_str_eq("token", "token2"));
    assert!(!ct_str_eq("", "x"));
    let fx = Fixture::new(&[]);
    assert!(fx.truth("'a' in ['b', 'a', 'c'] && !('d' in ['b', 'a'])"));
    assert!(fx.truth("1 in [1, 2] && 2.0 == 2.0 && 1 != 2 && [1] == [1] && {'a': 1} == {'a': 1}"));
    assert!(fx.truth("'a' in {'a': 1} && !('b' in {'a': 1})"));
}

#[test]
fn secrets_is_not_a_plain_variable() {
    let fx = Fixture::new(&[]);
    assert!(fx.error("secrets == 1").contains("secrets"));
}

#[test]
fn computed_secret_names_take_the_indexing_path() {
    let fx = Fixture::new(&[("authorization", "Bearer s3cret-token")]);
    assert!(fx.truth("req.headers['authorization'][0] == 'Bearer ' + secrets.get('gateway-' + 'auth', 'access' + '-token')"));
    let message = fx.error("secrets.get('gateway-auth', 'nope' + '') == ''");
    assert!(
        message.contains("'nope'") && message.contains("'gateway-auth'"),
        "{message}"
    );
    let message = fx.error("secrets.get('gateway-auth', 1) == ''");
    assert!(message.contains("string"), "{message}");
}
