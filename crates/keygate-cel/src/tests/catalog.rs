//! `VARIABLES` and `FUNCTIONS` list exactly what works.

use super::Fixture;
use crate::{FUNCTIONS, VARIABLES};

/// One expression per documented function, each of which must compile and evaluate.
const SAMPLES: &[(&str, &str)] = &[
    ("getReqHeader", "getReqHeader('host')"),
    ("hasReqHeader", "hasReqHeader('host')"),
    (
        "getReqCookie",
        "!hasReqCookie('a') || getReqCookie('a').value == ''",
    ),
    ("hasReqCookie", "hasReqCookie('a')"),
    ("getQueryParam", "getQueryParam('a')"),
    ("hasQueryParam", "hasQueryParam('a')"),
    ("getResHeader", "getResHeader('x')"),
    ("hasResHeader", "hasResHeader('x')"),
    (
        "getResCookie",
        "!hasResCookie('a') || getResCookie('a').secure",
    ),
    ("hasResCookie", "hasResCookie('a')"),
    ("inCidrRange", "inCidrRange('10.0.0.1', '10.0.0.0/8')"),
    ("inCidrRanges", "inCidrRanges('10.0.0.1', ['10.0.0.0/8'])"),
    (
        "isPrivateIp",
        "isPrivateIp('10.0.0.1') && '10.0.0.1'.isPrivateIp()",
    ),
    ("secrets.get", "secrets.get('gateway-auth', 'access-token')"),
    ("base64.encode", "base64.encode(b'x')"),
    ("base64.decode", "base64.decode('eA==')"),
    ("encodeBase64", "'x'.encodeBase64()"),
    ("decodeBase64", "'eA=='.decodeBase64()"),
    ("basic_auth.encode", "basic_auth.encode('a', 'b')"),
    ("json.encode", "json.encode([1])"),
    ("json.decode", "json.decode('[1]')"),
    ("encodeJson", "{'a': 1}.encodeJson()"),
    ("decodeJson", "'{}'.decodeJson()"),
    ("isJson", "'1'.isJson()"),
    ("url.escape", "url.escape('a b')"),
    ("url.unescape", "url.unescape('a+b')"),
    ("url.parse", "url.parse('http://x/')"),
    ("escapeUrl", "'a b'.escapeUrl()"),
    ("unescapeUrl", "'a+b'.unescapeUrl()"),
    ("parseUrl", "'http://x/'.parseUrl()"),
    ("isURL", "'http://x/'.isURL()"),
    ("rand.double", "rand.double()"),
    ("rand.int", "rand.int() + rand.int(1, 2)"),
    ("hash.crc32", "hash.crc32('x')"),
    ("hash.crc64", "hash.crc64('x')"),
    ("hash.md5", "hash.md5('x')"),
    ("hash.sha1", "hash.sha1('x')"),
    ("hash.sha256", "hash.sha256('x')"),
    ("hash.sha512", "hash.sha512('x', 'base64')"),
    ("hash.xxhash64", "hash.xxhash64('x')"),
    ("crc32", "'x'.crc32()"),
    ("crc64", "'x'.crc64()"),
    ("md5", "'x'.md5()"),
    ("sha1", "'x'.sha1()"),
    ("sha256", "'x'.sha256()"),
    ("sha512", "'x'.sha512()"),
    ("xxhash64", "'x'.xxhash64('hex')"),
    ("has", "has({'a': 1}.a)"),
    ("all", "[1].all(x, x > 0)"),
    ("exists", "[1].exists(x, x > 0)"),
    ("exists_one", "[1].exists_one(x, x > 0)"),
    ("map", "[1].map(x, x + 1)"),
    ("filter", "[1].filter(x, x > 0)"),
    ("size", "size('abc') + [1].size()"),
    ("int", "int('1')"),
    ("uint", "uint(1)"),
    ("double", "double(1)"),
    ("string", "string(1)"),
    ("bytes", "bytes('x')"),
    ("bool", "bool('true')"),
    ("type", "type(1) == int"),
    ("dyn", "dyn(1)"),
    ("timestamp", "timestamp('2024-01-01T00:00:00Z')"),
    ("duration", "duration('1h')"),
    ("matches", "'abc'.matches('b') && matches('abc', 'c$')"),
    ("contains", "'abc'.contains('b')"),
    ("startsWith", "'abc'.startsWith('a')"),
    ("endsWith", "'abc'.endsWith('c')"),
    ("getDate", "timestamp(time.now).getDate()"),
    (
        "getDayOfMonth",
        "timestamp(time.now).getDayOfMonth('Europe/Paris')",
    ),
    ("getDayOfWeek", "timestamp(time.now).getDayOfWeek()"),
    ("getDayOfYear", "timestamp(time.now).getDayOfYear()"),
    ("getFullYear", "timestamp(time.now).getFullYear()"),
    ("getHours", "timestamp(time.now).getHours()"),
    ("getMinutes", "timestamp(time.now).getMinutes()"),
    ("getSeconds", "timestamp(time.now).getSeconds()"),
    ("getMilliseconds", "timestamp(time.now).getMilliseconds()"),
    ("getMonth", "timestamp(time.now).getMonth()"),
    ("charAt", "'abc'.charAt(1)"),
    ("indexOf", "'abc'.indexOf('b')"),
    ("lastIndexOf", "'abcb'.lastIndexOf('b')"),
    ("join", "['a'].join()"),
    ("lowerAscii", "'A'.lowerAscii()"),
    ("lower", "'É'.lower()"),
    ("getMetadata", "{'metadata': {}}.getMetadata('a')"),
    ("upper", "'é'.upper()"),
    ("upperAscii", "'a'.upperAscii()"),
    ("trim", "' a '.trim()"),
    ("replace", "'aa'.replace('a', 'b')"),
    ("split", "'a,b'.split(',')"),
    ("substring", "'abc'.substring(1, 2)"),
    ("format", "'%s'.format(['x'])"),
    ("reverse", "'abc'.reverse() + ['a', 'b'].reverse().join()"),
    ("strings.quote", "strings.quote('x')"),
    ("slice", "[1, 2, 3].slice(0, 1)"),
    ("flatten", "[[1]].flatten()"),
    ("distinct", "[1, 1].distinct()"),
    ("sort", "[2, 1].sort()"),
    ("sortBy", "[2, 1].sortBy(x, -x)"),
    ("lists.range", "lists.range(3)"),
];

#[test]
fn every_listed_function_has_a_working_sample() {
    let fx = Fixture::with_uri("/?a=1", &[("Host", "h")]).with_response(200, &[]);
    for name in FUNCTIONS {
        let (_, sample) = SAMPLES
            .iter()
            .find(|(listed, _)| listed == name)
            .unwrap_or_else(|| panic!("no sample for {name}"));
        fx.value(sample);
    }
    assert_eq!(
        SAMPLES.len(),
        FUNCTIONS.len(),
        "samples for unlisted functions"
    );
}

#[test]
fn every_listed_variable_resolves() {
    let mut fx = Fixture::new(&[
        ("Host", "h"),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", "3"),
    ])
    .with_tls()
    .with_response(
        200,
        &[("Content-Type", "text/plain"), ("Content-Length", "1")],
    );
    fx.vars.set("name", crate::Value::Int(1));
    fx.actions.set("rate_limit", crate::Value::Int(1));
    for path in VARIABLES {
        let path = path
            .replace("<name>", "name")
            .replace("<action>", "rate_limit");
        assert!(fx.truth(&format!("{path} != null")), "{path}");
    }
}
