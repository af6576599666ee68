use super::{string, Fixture};
use crate::Value;

fn fx() -> Fixture {
    Fixture::new(&[("Host", "gw.example.com")])
}

#[test]
fn hashes_global_and_methods() {
    let fx = fx();
    let sha256 = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    assert_eq!(fx.value("hash.sha256('hello')"), string(sha256));
    assert_eq!(fx.value("'hello'.sha256()"), string(sha256));
    assert_eq!(fx.value("hash.sha256(b'hello', 'hex')"), string(sha256));
    assert_eq!(
        fx.value("'hello'.sha256('base64')"),
        string("LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=")
    );
    assert_eq!(
        fx.value("hash.md5('hello')"),
        string("5d41402abc4b2a76b9719d911017c592")
    );
    assert_eq!(
        fx.value("'hello'.sha1()"),
        string("aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d")
    );
    assert_eq!(fx.value("hash.crc32('hello')"), string("3610a686"));
    assert_eq!(
        fx.value("hash.crc64('123456789')"),
        string("b90956c775a41001")
    );
    assert_eq!(
        fx.value("hash.xxhash64('hello')"),
        string("26c7827d889f6da3")
    );
    assert!(fx.truth("hash.sha512('hello').startsWith('9b71d224bd62f378')"));
    assert!(fx
        .error("hash.md5('x', 'hex2')")
        .contains("unknown encoding"));
}

#[test]
fn base64_and_basic_auth() {
    let fx = fx();
    assert_eq!(
        fx.value("base64.encode(b'hi there')"),
        string("aGkgdGhlcmU=")
    );
    assert_eq!(
        fx.value("base64.encode('hi there')"),
        string("aGkgdGhlcmU=")
    );
    assert_eq!(
        fx.value("'hi there'.encodeBase64()"),
        string("aGkgdGhlcmU=")
    );
    assert_eq!(
        fx.value("base64.decode('aGkgdGhlcmU=')"),
        Value::Bytes(b"hi there".to_vec().into())
    );
    assert_eq!(fx.value("'aGkgdGhlcmU'.decodeBase64()"), string("hi there"));
    assert!(fx.error("base64.decode('***')").contains("invalid base64"));
    assert_eq!(
        fx.value("basic_auth.encode('user', 'pass')"),
        string("Basic dXNlcjpwYXNz")
    );
}

#[test]
fn json_functions() {
    let fx = fx();
    assert_eq!(
        fx.value("json.encode({'a': [1, true, null]})"),
        string(r#"{"a":[1,true,null]}"#)
    );
    assert_eq!(fx.value("[1, 'x'].encodeJson()"), string(r#"[1,"x"]"#));
    assert!(fx.truth(r#"json.decode('{"model": "gpt-4o", "n": 2}').model == 'gpt-4o'"#));
    assert!(fx.truth(r#"'{"n": 2}'.decodeJson().n == 2"#));
    assert!(fx.truth(r#"'{"a": 1}'.isJson() && !'{a'.isJson()"#));
    assert!(fx.error("json.decode('{')").contains("invalid JSON"));
    assert_eq!(
        fx.value("json.encode(req.headers)"),
        string(r#"{"host":["gw.example.com"]}"#)
    );
}

#[test]
fn url_functions() {
    let fx = fx();
    assert_eq!(fx.value("url.escape('a b&c')"), string("a+b%26c"));
    assert_eq!(fx.value("'a b'.escapeUrl()"), string("a+b"));
    assert_eq!(fx.value("url.unescape('a+b%26c')"), string("a b&c"));
    assert_eq!(fx.value("'x%2Fy'.unescapeUrl()"), string("x/y"));
    assert!(fx.error("url.unescape('%zz')").contains("invalid escape"));
    assert!(fx.truth(
        "url.parse('https://u:p@example.com:8080/a%20b?x=1&x=2#f').host == 'example.com:8080'"
    ));
    let parsed = "'https://example.com/a%20b?x=1&x=2#f'.parseUrl()";
    assert!(fx.truth(&format!(
        "{parsed}.scheme == 'https' && {parsed}.hostname == 'example.com'"
    )));
    assert!(fx.truth(&format!(
        "{parsed}.path == '/a b' && {parsed}.raw_path == '/a%20b'"
    )));
    assert!(fx.truth(&format!(
        "{parsed}.query_params.x == ['1', '2'] && {parsed}.port == 443"
    )));
    assert!(fx.truth(&format!(
        "{parsed}.fragment == 'f' && {parsed}.raw_query == 'x=1&x=2'"
    )));
    assert!(fx.truth("'https://example.com'.isURL() && !'not a url'.isURL()"));
}

#[test]
fn cidr_functions() {
    let fx = fx();
    assert!(fx.truth("inCidrRange('10.1.2.3', '10.0.0.0/8')"));
    assert!(!fx.truth("inCidrRange('11.1.2.3', '10.0.0.0/8')"));
    assert!(!fx.truth("inCidrRange('10.1.2.3', 'garbage')"));
    assert!(!fx.truth("inCidrRange('garbage', '10.0.0.0/8')"));
    assert!(
        fx.truth("inCidrRange('::ffff:10.1.2.3', '10.0.0.0/8')"),
        "mapped v6 matches v4"
    );
    assert!(fx.truth("inCidrRange('10.1.2.3', '::ffff:10.0.0.0/104')"));
    assert!(fx.truth("inCidrRange('2001:db8::1', '2001:db8::/32')"));
    assert!(fx.truth("inCidrRange(conn.client_ip, '127.0.0.0/8')"));
    assert!(fx.truth("inCidrRanges(conn.client_ip, ['bad', '10.0.0.0/8', '127.0.0.2/32'])"));
    assert!(!fx.truth("inCidrRanges(conn.client_ip, ['bad', '10.0.0.0/8'])"));
    assert!(!fx.truth("inCidrRanges(conn.client_ip, [])"));
    assert!(fx.truth("isPrivateIp('192.168.1.1') && '10.0.0.1'.isPrivateIp()"));
    assert!(!fx.truth("isPrivateIp('8.8.8.8') || isPrivateIp('fd00::1') || isPrivateIp('x')"));
}

#[test]
fn strings_extension() {
    let fx = fx();
    assert_eq!(fx.value("'TacoCat'.lowerAscii()"), string("tacocat"));
    assert_eq!(
        fx.value("'a,b,c'.split(',')"),
        crate::from_json(&serde_json::json!(["a", "b", "c"]))
    );
    assert_eq!(fx.value("'aaa'.replace('a', 'b', 2)"), string("bba"));
    assert_eq!(fx.value("'Bearer xyz'.substring(7)"), string("xyz"));
    assert_eq!(fx.value("'  x  '.trim()"), string("x"));
    assert_eq!(fx.value("'hello'.indexOf('l')"), Value::Int(2));
    assert_eq!(fx.value("['a', 'b'].join('-')"), string("a-b"));
    assert_eq!(fx.value("'%s=%d'.format(['n', 3])"), string("n=3"));
    assert_eq!(fx.value("'abc'.reverse()"), string("cba"));
    assert_eq!(
        fx.value("[3, 1, 2].sort()"),
        crate::from_json(&serde_json::json!([1, 2, 3]))
    );
    assert!(fx.truth("'abc'.contains('b') && 'abc'.startsWith('a') && size('abc') == 3"));
}

#[test]
fn matches_with_a_literal_pattern_is_compiled_once() {
    let fx = fx();
    let expression = fx
        .compiler
        .expression(
            "req.url.path.matches('^/v1/(chat|responses)') && matches(req.method, 'POST|PUT')",
        )
        .unwrap();
    assert_eq!(expression.precompiled_regexes(), 2);
    assert!(expression.eval_bool(&fx.scope()).unwrap());
    assert!(!fx.truth("req.url.path.matches('^/v2/')"));
    let err = fx.compiler.expression("'a'.matches('(')").unwrap_err();
    assert!(err.message.contains("invalid regular expression"), "{err}");
    assert_eq!(err.offset, Some(12));
}

#[test]
fn matches_with_a_dynamic_pattern_uses_the_bounded_cache() {
    let fx = fx();
    let expression = fx.compiler.expression("'abc'.matches('^a' + 'b')").unwrap();
    assert_eq!(expression.precompiled_regexes(), 0);
    assert!(expression.eval_bool(&fx.scope()).unwrap());
    assert!(crate::functions::regex::dynamic_cache_len() >= 1);
    for i in 0..200 {
        assert!(fx.truth(&format!("'x{i}'.matches('x' + '{i}')")));
    }
    assert!(crate::functions::regex::dynamic_cache_len() <= 64);
}

#[test]
fn standard_macros_and_comprehensions() {
    let fx = fx();
    assert!(fx.truth("[1, 2, 3].all(x, x > 0) && [1, 2].exists_one(x, x == 2)"));
    assert!(fx.truth("[1, 2, 3].filter(x, x > 1) == [2, 3] && [1, 2].map(x, x * 2) == [2, 4]"));
    assert!(fx.truth("has({'a': 1}.a) && !has({'a': 1}.b)"));
    assert!(fx.truth("'req' == 'req' ? true : false"));
}

#[test]
fn get_metadata_reads_a_dotted_path_or_null() {
    let fx = fx();
    let model = "{'id': 'gpt-4o', 'metadata': {'region': 'eu', 'limits': {'rpm': 60}}}";
    assert_eq!(
        fx.value(&format!("{model}.getMetadata('region')")),
        string("eu")
    );
    assert_eq!(
        fx.value(&format!("{model}.getMetadata('limits.rpm')")),
        Value::Int(60)
    );
    for missing in ["zone", "limits.tpm", "region.deeper"] {
        assert!(
            fx.truth(&format!("{model}.getMetadata('{missing}') == null")),
            "{missing}"
        );
    }
    assert!(fx.truth("{'id': 'x'}.getMetadata('region') == null"));
    assert!(!fx.truth(&format!("{model}.getMetadata('zone') == 'eu'")));
}

#[test]
fn random_draws_stay_within_their_bounds() {
    let fx = fx();
    let mut defaults = std::collections::BTreeSet::new();
    for _ in 0..200 {
        assert!(fx.truth("rand.double() >= 0.0 && rand.double() < 1.0"));
        assert!(fx.truth("rand.int(3, 5) in [3, 4, 5]"));
        assert!(fx.truth("rand.int(7, 7) == 7"));
        match fx.value("rand.int()") {
            Value::Int(n) => defaults.insert(n),
            other => panic!("rand.int() gave {other:?}"),
        };
    }
    // Both ends of the default [0, 1] range come up (a miss in 200 draws is 2^-199).
    assert_eq!(defaults.into_iter().collect::<Vec<_>>(), vec![0, 1]);
    assert!(fx.error("rand.int(5, 3)").contains("min <= max"));
    assert!(fx.error("rand.int(-2, 3)").contains("min <= max"));
}
