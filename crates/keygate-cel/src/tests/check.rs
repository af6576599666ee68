//! Load-time checks: unknown names with suggestions, arity, non-bool conditions; backticks.

use super::Fixture;
use crate::Compiler;

/// `(source, offset of the error, words the message must contain)`.
fn rejected(source: &str, condition: bool) -> crate::CompileError {
    let compiler = Compiler::new();
    let result = if condition {
        compiler.condition(source)
    } else {
        compiler.expression(source)
    };
    match result {
        Ok(_) => panic!("`{source}` compiled"),
        Err(err) => err,
    }
}

#[test]
fn misspelt_names_point_at_the_name_and_suggest() {
    let cases: &[(&str, &str, &str)] = &[
        ("req.url.pth == '/'", "pth", "did you mean 'path'"),
        (
            "req.header['x'][0] == 'a'",
            "header",
            "did you mean 'headers'",
        ),
        ("rq.method == 'GET'", "rq", "did you mean 'req'"),
        ("req.methd == 'GET'", "methd", "did you mean 'method'"),
        (
            "conn.client_pi == '1'",
            "client_pi",
            "did you mean 'client_ip'",
        ),
        ("conn.tls.snii == 'a'", "snii", "did you mean 'sni'"),
        ("time.nw != ''", "nw", "did you mean 'now'"),
        (
            "req.url.path.startWith('/v1')",
            "startWith",
            "did you mean 'startsWith'",
        ),
        (
            "hasReqHeadr('x')",
            "hasReqHeadr",
            "did you mean 'hasReqHeader'",
        ),
        (
            "secrets.gte('a', 'b') == ''",
            "gte",
            "did you mean 'secrets.get'",
        ),
        (
            "hash.sha265('a') == ''",
            "sha265",
            "did you mean 'hash.sha256'",
        ),
        ("[1].exist(x, x == 1)", "exist", "did you mean 'exists'"),
        (
            "actions.ngrok.rate_limt.limited",
            "rate_limt",
            "did you mean 'rate_limit'",
        ),
        (
            "actions.ngork.rate_limit.limited",
            "ngork",
            "did you mean 'ngrok'",
        ),
        (
            "inCidrRange(conn.client_ip)",
            "inCidrRange",
            "takes 2 arguments, got 1",
        ),
        (
            "req.url.path.startsWith()",
            "startsWith",
            "takes 1 argument, got 0",
        ),
        (
            "req.method.foo == 'x'",
            "foo",
            "'req.method' has no field 'foo'",
        ),
        (
            "req.url.path.pa == 'x'",
            ".pa ",
            "'req.url.path' has no field 'pa'",
        ),
        ("(req).url.pat == 'x'", "pat", "did you mean 'path'"),
        (
            "rand.int(9) > 1",
            "int",
            "takes no arguments or 2 (min, max), got 1",
        ),
        (
            "rand.double(1.0) < 0.5",
            "double",
            "takes 0 arguments, got 1",
        ),
        (
            "getReqCookie() == ''",
            "getReqCookie",
            "takes 1 argument, got 0",
        ),
        (
            "hasResCookie('a', 'b')",
            "hasResCookie",
            "takes 1 argument, got 2",
        ),
        (
            "getReqCooky('a')",
            "getReqCooky",
            "did you mean 'getReqCookie'",
        ),
    ];
    for (source, at, words) in cases {
        let err = rejected(source, false);
        assert!(err.message.contains(words), "`{source}`: {}", err.message);
        let at = source
            .find(at)
            .map(|i| i + usize::from(at.starts_with('.')));
        assert_eq!(err.offset, at, "`{source}`: {}", err.message);
    }
}

#[test]
fn conditions_must_be_bool() {
    for (source, kind) in [
        ("1", "int"),
        ("'yes'", "string"),
        ("1 + 2", "int"),
        ("req.method", "string"),
        ("req.url.port * 2", "int"),
        ("'a' + req.method", "string"),
        ("[true]", "list"),
    ] {
        let err = rejected(source, true);
        assert!(err.message.contains(kind), "`{source}`: {}", err.message);
        assert_eq!(err.offset, Some(0));
        // The same source is fine where any value may be written (bucket keys, templates).
        Compiler::new().expression(source).unwrap();
    }
    for ok in [
        "vars.flag",
        "req.method == 'GET'",
        "size(req.url.path) > 1",
        "true",
    ] {
        Compiler::new().condition(ok).unwrap();
    }
}

#[test]
fn dynamic_places_stay_dynamic() {
    let compiler = Compiler::new();
    for ok in [
        "req.headers.authorization[0] == 'x'",
        "has(req.headers.x_api_key)",
        "req.url.query_params.foo.size() > 0",
        "vars.anything.deep.down == 1",
        "actions.ngrok.jwt_validation.tokens[0].payload.sub == 'a'",
        "[1, 2].all(req, req > 0)",
        "[{'a': 1}].exists(m, m.a == 1)",
        "{'a': {'b': 1}}.a.b == 1",
        "type(req.method) == string",
        "ai.models.size() > 0",
        "json.decode('{}').foo == 1",
        "req.content_type.parameters.charset == 'utf-8'",
        "conn.ts.start < timestamp('2030-01-01T00:00:00Z')",
    ] {
        compiler
            .condition(ok)
            .unwrap_or_else(|e| panic!("`{ok}`: {e}"));
    }
}

#[test]
fn templates_report_offsets_in_the_whole_string() {
    let err = Compiler::new()
        .template("Bearer ${req.headrs['x'][0]}")
        .unwrap_err();
    assert!(
        err.message.contains("did you mean 'headers'"),
        "{}",
        err.message
    );
    assert_eq!(err.offset, Some("Bearer ${req.".len()));
}

#[test]
fn backtick_fields_select_names_with_punctuation() {
    let fx = Fixture::new(&[("Content-Type", "text/plain")]);
    for source in [
        "{'content-type': 'a'}.`content-type` == 'a'",
        "{'a.b/c d': 1}.`a.b/c d` == 1",
        "{'x': {'y-z': true}}.x.`y-z`",
        "has({'a-b': 1}.`a-b`)",
        "!has({'a-b': 1}.`a-c`)",
        "req.headers.`content-type`[0] == 'text/plain'",
        "{'`': 1}['`'] == 1",
        "{'q': 1}.`q` == 1",
    ] {
        assert!(fx.truth(source), "{source}");
    }
    // Not after a dot, or with a character cel-spec does not allow: still refused.
    for source in ["`a` == 1", "{'a': 1}.`a+b` == 1", "{'a': 1}.`` == 1"] {
        assert!(Compiler::new().expression(source).is_err(), "{source}");
    }
    // The offsets of later errors stay exact.
    let err = Compiler::new()
        .expression("{'a-b': 1}.`a-b` == req.url.pth")
        .unwrap_err();
    assert_eq!(err.offset, Some("{'a-b': 1}.`a-b` == req.url.".len()));
}

#[test]
fn ordering_values_of_different_types_is_refused() {
    for (source, words) in [
        ("res.status_code < '200'", "cannot order int < string"),
        ("req.method >= 3", "cannot order string >= int"),
        ("size(req.url.path) > '1'", "cannot order int > string"),
        ("[1] <= [2]", "cannot order list <= list"),
    ] {
        let err = rejected(source, true);
        assert!(err.message.contains(words), "`{source}`: {}", err.message);
    }
    for ok in [
        "res.status_code >= 500",
        "req.url.port < 1000 && 1 < 2.5",
        "req.method > 'A'",
        "vars.limit < 10",
        "timestamp(time.now) > timestamp('2024-01-01T00:00:00Z')",
    ] {
        Compiler::new().condition(ok).unwrap();
    }
}
