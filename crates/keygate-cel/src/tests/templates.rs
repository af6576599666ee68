use super::{string, Fixture};
use crate::Value;

#[test]
fn literal_templates() {
    let fx = Fixture::new(&[]);
    let template = fx.compiler.template("plain text").unwrap();
    assert_eq!(template.as_literal(), Some("plain text"));
    assert_eq!(template.source(), "plain text");
    assert_eq!(template.eval(&fx.scope()).unwrap(), string("plain text"));
    let empty = fx.compiler.template("").unwrap();
    assert_eq!(empty.as_literal(), Some(""));
    let dollar = fx.compiler.template("costs $5 {not cel}").unwrap();
    assert_eq!(dollar.as_literal(), Some("costs $5 {not cel}"));
}

#[test]
fn escape_writes_a_literal_interpolation() {
    let fx = Fixture::new(&[]);
    let template = fx
        .compiler
        .template("use $${req.method} for ${req.method}")
        .unwrap();
    assert_eq!(template.as_literal(), None);
    assert_eq!(
        template.eval_string(&fx.scope()).unwrap(),
        "use ${req.method} for POST"
    );
    let only_escape = fx.compiler.template("$${x}").unwrap();
    assert_eq!(only_escape.as_literal(), Some("${x}"));
}

#[test]
fn a_single_interpolation_keeps_its_type() {
    let mut fx = Fixture::new(&[]);
    fx.actions.set(
        "rate_limit",
        crate::from_json(&serde_json::json!({"remaining": 3})),
    );
    let scope = fx.scope();
    let int = fx.compiler.template("${1 + 2}").unwrap();
    assert_eq!(int.eval(&scope).unwrap(), Value::Int(3));
    assert_eq!(int.eval_string(&scope).unwrap(), "3");
    let list = fx.compiler.template("${['a', 1]}").unwrap();
    assert_eq!(
        list.eval(&scope).unwrap(),
        crate::from_json(&serde_json::json!(["a", 1]))
    );
    assert_eq!(list.eval_string(&scope).unwrap(), r#"["a",1]"#);
    let map = fx.compiler.template("${actions.ngrok.rate_limit}").unwrap();
    assert_eq!(map.eval_string(&scope).unwrap(), r#"{"remaining":3}"#);
    let boolean = fx.compiler.template("${req.method == 'POST'}").unwrap();
    assert_eq!(boolean.eval(&scope).unwrap(), Value::Bool(true));
}

#[test]
fn mixed_text_stringifies() {
    let fx = Fixture::new(&[("x-user", "ann")]);
    let scope = fx.scope();
    let cases = [
        ("user=${req.headers['x-user'][0]}!", "user=ann!"),
        ("${1.5} ${2.0} ${0.25}", "1.5 2 0.25"),
        ("ts=${conn.ts.start}", "ts=2024-06-24T15:30:00Z"),
        ("d=${duration('90s')}", "d=90s"),
        ("m=${{'k': [1, 2]}}", r#"m={"k":[1,2]}"#),
        ("n=${null} b=${true} u=${3u}", "n=null b=true u=3"),
        ("${'}'} and ${\"{\"}", "} and {"),
        ("${req.method}${req.method}", "POSTPOST"),
    ];
    for (source, expected) in cases {
        let template = fx.compiler.template(source).unwrap();
        assert_eq!(template.eval_string(&scope).unwrap(), expected, "{source}");
        assert_eq!(template.eval(&scope).unwrap(), string(expected), "{source}");
    }
}

#[test]
fn template_errors_point_into_the_source() {
    let fx = Fixture::new(&[]);
    let err = fx.compiler.template("abc ${req.method").unwrap_err();
    assert_eq!(err.offset, Some(4));
    let err = fx.compiler.template("abc ${}").unwrap_err();
    assert!(err.message.contains("empty"));
    let err = fx.compiler.template("ab ${1 + }").unwrap_err();
    assert!(err.offset.is_some_and(|o| o >= 5), "{err:?}");
    let err = fx.compiler.template("x ${'a'.matches('(')}").unwrap_err();
    assert_eq!(err.offset, Some(16), "{err:?}");
}

#[test]
fn runtime_errors_in_templates_propagate() {
    let fx = Fixture::new(&[]);
    let template = fx
        .compiler
        .template("key=${secrets.get('gateway-auth', 'missing')}")
        .unwrap();
    let err = template.eval_string(&fx.scope()).unwrap_err();
    assert!(err.message.contains("missing"), "{err}");
}

#[test]
fn json_round_trips() {
    let json = serde_json::json!({
        "s": "x", "i": -3, "u": 18446744073709551615u64, "f": 1.5, "b": true, "n": null,
        "l": [1, "two", [3]], "m": {"k": {"k2": []}}
    });
    let value = crate::from_json(&json);
    assert_eq!(crate::to_json(&value), json);
    let fx = Fixture::new(&[]);
    let bytes = fx.value("b'hi'");
    assert_eq!(crate::to_json(&bytes), serde_json::json!("aGk="));
    let ts = fx.value("timestamp('2024-06-24T15:30:00.5Z')");
    assert_eq!(
        crate::to_json(&ts),
        serde_json::json!("2024-06-24T15:30:00.500Z")
    );
    assert_eq!(
        crate::to_json(&Value::Float(f64::NAN)),
        serde_json::Value::Null
    );
}
