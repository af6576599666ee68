//! String comparisons evaluated without the interpreter give the interpreter's answers.

use super::Fixture;

/// Expressions of the recognised shape.
const TAKEN: &[&str] = &[
    "req.headers['authorization'][0] != 'Bearer ' + secrets.get('gateway-auth', 'access-token')",
    "'Bearer ' + secrets.get('gateway-auth', 'access-token') == req.headers['Authorization'][0]",
    "req.headers['x-api-key'][0] == secrets.get('gateway-auth', 'access-token')",
    "req.headers['x-tag'][0] == 'a' + 'b' + 'c'",
    "req.headers['not a header name'][0] == ''",
    "secrets.get('gateway-auth', 'client-a-token') != 'token-a'",
];

/// Expressions left to the interpreter.
const LEFT: &[&str] = &[
    "req.headers['x-tag'][1] == 'b'",
    "req.headers['x-tag'] == ['abc']",
    "res.headers['x-tag'][0] == 'abc'",
    "req.url.path == '/v1/chat/completions'",
    "req.headers['x-tag'][0] in ['abc']",
    "req.headers['x-tag'][0] + 1 == 'abc1'",
];

fn fixtures() -> Vec<Fixture> {
    let cases: [&[(&str, &str)]; 6] = [
        &[],
        &[("authorization", "Bearer s3cret-token"), ("x-tag", "abc")],
        &[("Authorization", "Bearer s3cret-tokenX"), ("x-tag", "ab")],
        &[("authorization", "bearer s3cret-token")],
        &[
            ("x-api-key", "s3cret-token"),
            ("x-tag", "abc"),
            ("x-tag", "b"),
        ],
        &[("x-api-key", "s3cret-toke"), ("x-tag", "")],
    ];
    cases.iter().map(|headers| Fixture::new(headers)).collect()
}

#[test]
fn recognised_shapes_only() {
    let fx = Fixture::new(&[]);
    for source in TAKEN {
        let expression = fx.compiler.expression(source).unwrap();
        assert!(expression.compares_strings_directly(), "{source}");
    }
    for source in LEFT {
        let expression = fx.compiler.expression(source).unwrap();
        assert!(!expression.compares_strings_directly(), "{source}");
    }
}

/// `(e) == true` is not of the recognised shape, so it runs `e` in the interpreter.
#[test]
fn same_answers_as_the_interpreter() {
    let mut answers = Vec::new();
    for fx in fixtures() {
        for source in TAKEN {
            let direct = fx.truth(source);
            assert_eq!(direct, fx.truth(&format!("({source}) == true")), "{source}");
            answers.push(direct);
        }
    }
    // The fixtures exercise both outcomes of every expression.
    for (i, source) in TAKEN.iter().enumerate() {
        let outcomes: Vec<bool> = answers
            .iter()
            .skip(i)
            .step_by(TAKEN.len())
            .copied()
            .collect();
        if !source.contains("not a header name") && !source.starts_with("secrets.get") {
            assert!(
                outcomes.contains(&true) && outcomes.contains(&false),
                "{source}: {outcomes:?}"
            );
        }
    }
}

#[test]
fn a_missing_secret_is_still_the_interpreter_error() {
    let fx = Fixture::new(&[("authorization", "Bearer x")]);
    let source =
        "req.headers['authorization'][0] != 'Bearer ' + secrets.get('gateway-auth', 'nope')";
    assert!(fx
        .compiler
        .expression(source)
        .unwrap()
        .compares_strings_directly());
    let error = fx.error(source);
    assert!(
        error.contains("nope") && error.contains("gateway-auth"),
        "{error}"
    );
}
