use super::{string, Fixture};
use crate::Value;

fn auth_fixture() -> Fixture {
    Fixture::new(&[
        ("Host", "gw.example.com:8443"),
        ("Authorization", "Bearer s3cret-token"),
        ("X-Multi", "one"),
        ("X-Multi", "two"),
        ("Content-Type", "application/json; charset=utf-8"),
        ("Content-Length", "42"),
        ("User-Agent", "openai-python/1.0"),
    ])
}

#[test]
fn request_basics() {
    let fx = auth_fixture();
    assert_eq!(fx.value("req.method"), string("POST"));
    assert_eq!(fx.value("req.version"), string("HTTP/1.1"));
    assert_eq!(fx.value("req.host"), string("gw.example.com:8443"));
    assert_eq!(fx.value("req.id"), string("req_0123"));
    assert_eq!(fx.value("req.user_agent"), string("openai-python/1.0"));
    assert_eq!(fx.value("req.content_length"), Value::Int(42));
    assert_eq!(fx.value("req.content_type"), string("application/json"));
    assert_eq!(
        fx.value("req.content_type.raw"),
        string("application/json; charset=utf-8")
    );
    assert_eq!(
        fx.value("req.content_type.parameters.charset"),
        string("utf-8")
    );
}

#[test]
fn url_and_sub_fields() {
    let fx = auth_fixture();
    assert_eq!(
        fx.value("req.url"),
        string("https://gw.example.com:8443/v1/chat/completions?model=gpt-4o&Tag=a&tag=b")
    );
    assert_eq!(fx.value("req.url.scheme"), string("https"));
    assert_eq!(fx.value("req.url.authority"), string("gw.example.com:8443"));
    assert_eq!(fx.value("req.url.host"), string("gw.example.com"));
    assert_eq!(fx.value("req.url.port"), Value::Int(8443));
    assert_eq!(fx.value("req.url.path"), string("/v1/chat/completions"));
    assert_eq!(
        fx.value("req.url.query"),
        string("model=gpt-4o&Tag=a&tag=b")
    );
    assert_eq!(
        fx.value("req.url.uri"),
        string("/v1/chat/completions?model=gpt-4o&Tag=a&tag=b")
    );
    assert!(fx.truth("req.url.startsWith('https://') && req.url.path.endsWith('/completions')"));
    assert!(fx.truth("req.url.query_params['model'] == ['gpt-4o']"));
    assert!(fx.truth("req.query_params['TAG'] == ['a', 'b']"));
    assert!(fx.truth("size(req.url.query_params) == 2"));
}

#[test]
fn path_is_decoded_and_raw_path_is_not() {
    let fx = Fixture::with_uri("/a%20b/c", &[("Host", "h")]);
    assert_eq!(fx.value("req.url.path"), string("/a b/c"));
    assert_eq!(fx.value("req.url.raw_path"), string("/a%20b/c"));
    assert_eq!(fx.value("req.url.port"), Value::Int(443), "https default");
}

#[test]
fn headers_are_case_insensitive_lists() {
    let fx = auth_fixture();
    assert_eq!(
        fx.value("req.headers['authorization']"),
        Value::List(vec![string("Bearer s3cret-token")].into())
    );
    assert!(fx.truth("req.headers['Authorization'][0] == 'Bearer s3cret-token'"));
    assert!(fx.truth("req.headers['AUTHORIZATION'][0].startsWith('Bearer ')"));
    assert!(fx.truth("req.headers['x-multi'] == ['one', 'two']"));
    assert!(fx.truth("['one', 'two'] == req.headers['x-multi']"));
    assert!(fx.truth("size(req.headers['x-multi']) == 2 && req.headers['x-multi'][1] == 'two'"));
    assert!(fx.truth("'two' in req.headers['x-multi']"));
    assert!(fx.truth("req.headers['x-multi'].exists(v, v == 'one')"));
    assert!(fx.truth("req.headers['x-multi'].join(',') == 'one,two'"));
    assert!(fx.truth("req.headers.authorization[0] != ''"));
}

#[test]
fn missing_header_is_an_empty_list_whose_first_element_is_empty() {
    let fx = Fixture::new(&[]);
    assert_eq!(
        fx.value("req.headers['authorization']"),
        Value::List(vec![].into())
    );
    assert_eq!(fx.value("req.headers['authorization'][0]"), string(""));
    assert!(fx.truth("size(req.headers['authorization']) == 0"));
    assert!(fx.truth("req.headers['authorization'][0] != 'Bearer ' + secrets.get('gateway-auth', 'access-token')"));
    assert!(fx
        .error("req.headers['authorization'][-1]")
        .contains("out of bounds"));
}

#[test]
fn in_and_has_on_headers() {
    let fx = auth_fixture();
    assert!(fx.truth("'authorization' in req.headers"));
    assert!(fx.truth("'Authorization' in req.headers"));
    assert!(!fx.truth("'x-missing' in req.headers"));
    assert!(fx.truth("hasReqHeader('User-Agent') && !hasReqHeader('x-missing')"));
    assert!(fx.truth("getReqHeader('X-MULTI') == ['one', 'two']"));
    assert!(fx.truth("getReqHeader('x-missing') == []"));
    assert!(fx.truth("req.headers.exists(h, h == 'x-multi')"));
    assert!(fx.truth("size(req.headers) == 6"));
}

#[test]
fn content_length_absent_is_a_missing_field() {
    let fx = Fixture::new(&[]);
    assert!(!fx.truth("has(req.content_length)"));
    assert!(fx.truth("!has(req.content_length) || req.content_length < 10"));
    assert!(fx
        .error("req.content_length > 1")
        .contains("content_length"));
    assert!(fx.truth("has(req.method)"));
    assert!(!fx.truth("has(req.content_type)"));
}

#[test]
fn query_param_helpers() {
    let fx = auth_fixture();
    assert!(fx.truth("getQueryParam('model') == ['gpt-4o']"));
    assert!(fx.truth("hasQueryParam('MODEL') && !hasQueryParam('nope')"));
    assert!(fx.truth("getQueryParam('nope')[0] == ''"));
}

#[test]
fn response_variables_only_in_response_phase() {
    let fx = auth_fixture();
    assert!(fx
        .error("res.status_code == 200")
        .contains("on_http_response"));
    let fx = auth_fixture().with_response(
        302,
        &[
            ("Location", "/elsewhere"),
            ("Content-Type", "text/plain"),
            ("Content-Length", "5"),
            ("X-Up", "1"),
        ],
    );
    assert_eq!(fx.value("res.status_code"), Value::Int(302));
    assert_eq!(fx.value("res.location"), string("/elsewhere"));
    assert_eq!(fx.value("res.content_type"), string("text/plain"));
    assert_eq!(fx.value("res.content_length"), Value::Int(5));
    assert!(fx.truth("res.headers['x-up'] == ['1'] && hasResHeader('X-Up')"));
    assert!(fx.truth("getResHeader('x-none') == [] && !hasResHeader('x-none')"));
}

#[test]
fn connection_variables() {
    let fx = Fixture::new(&[]);
    assert_eq!(fx.value("conn.client_ip"), string("127.0.0.2"));
    assert_eq!(fx.value("conn.client_port"), Value::Int(50123));
    assert_eq!(fx.value("conn.server_ip"), string("127.0.0.1"));
    assert_eq!(fx.value("conn.server_port"), Value::Int(8443));
    assert_eq!(fx.value("conn.tls.version"), string(""));
    assert_eq!(fx.value("conn.tls.sni"), string(""));
    assert_eq!(fx.value("conn.tls.session_resumed"), Value::Bool(false));
    assert!(fx.truth("string(conn.ts.start) == '2024-06-24T15:30:00Z'"));
    let fx = Fixture::new(&[]).with_tls();
    assert_eq!(fx.value("conn.tls.version"), string("TLSv1.3"));
    assert_eq!(
        fx.value("conn.tls.cipher_suite"),
        string("TLS13_AES_128_GCM_SHA256")
    );
    assert_eq!(fx.value("conn.tls.sni"), string("gw.example.com"));
    assert_eq!(fx.value("conn.tls.negotiated_alpn"), string("h2"));
}

#[test]
fn time_now_is_rfc3339_utc() {
    let fx = Fixture::new(&[]);
    let Value::String(now) = fx.value("time.now") else {
        panic!("time.now is a string");
    };
    assert!(now.ends_with('Z'), "{now}");
    assert!(fx.truth("timestamp(time.now) > timestamp('2024-01-01T00:00:00Z')"));
}

#[test]
fn vars_actions_and_extra() {
    let mut fx = Fixture::new(&[]);
    fx.vars.set("tier", string("gold"));
    fx.vars.set(
        "limits",
        Value::List(vec![Value::Int(1), Value::Int(2)].into()),
    );
    fx.actions.set(
        "rate_limit",
        crate::from_json(&serde_json::json!({"limited": false, "remaining": 9})),
    );
    fx.extra.push((
        "ai",
        crate::Variable::new(crate::from_json(&serde_json::json!({"models": ["a", "b"]}))),
    ));
    assert_eq!(fx.value("vars.tier"), string("gold"));
    assert!(fx.truth("vars['tier'] == 'gold' && 'tier' in vars && has(vars.tier)"));
    assert!(!fx.truth("has(vars.nope) || 'nope' in vars"));
    assert!(fx.error("vars.nope == 1").contains("nope"));
    assert!(fx.truth("vars.limits[1] == 2 && 2 in vars.limits"));
    assert!(fx.truth("actions.ngrok.rate_limit.remaining == 9"));
    assert!(fx.truth("!actions.ngrok.rate_limit.limited"));
    assert!(!fx.truth("has(actions.ngrok.ai_gateway)"));
    assert!(fx.truth("ai.models.exists(m, m == 'b')"));
}

#[test]
fn vars_debug_hides_values() {
    let mut vars = crate::Vars::default();
    vars.set("auth", string("Bearer token-a"));
    let debug = format!("{vars:?}");
    assert!(
        debug.contains("auth") && !debug.contains("token-a"),
        "{debug}"
    );
}

#[test]
fn has_on_header_and_query_maps_tests_presence() {
    let fx = auth_fixture();
    assert!(fx.truth("has(req.headers.authorization)"));
    assert!(!fx.truth("has(req.headers.cookie)"));
    assert!(fx.truth("has(req.url.query_params.model) && !has(req.query_params.nope)"));
    let fx = auth_fixture().with_response(200, &[("x-up", "1")]);
    assert!(fx.truth("!has(res.headers.x_up) && hasResHeader('x-up') && !has(res.headers.date)"));
}

#[test]
fn literal_and_computed_header_names_agree() {
    let fx = auth_fixture();
    for name in ["authorization", "X-Multi", "x-missing"] {
        let literal = fx.value(&format!("req.headers['{name}']"));
        let computed = fx.value(&format!("req.headers['{name}' + '']"));
        let helper = fx.value(&format!("getReqHeader('{name}')"));
        assert_eq!(literal, computed, "{name}");
        assert_eq!(literal, helper, "{name}");
    }
    assert!(fx.truth(
        "req.headers['x-multi' + ''][1] == 'two' && req.headers['x-missing' + ''][0] == ''"
    ));
}

#[test]
fn comprehension_variables_named_like_roots_shadow_them() {
    let fx = auth_fixture();
    assert!(fx.truth("[{'method': 'X'}].all(req, req.method == 'X')"));
    assert!(fx.truth("[{'tier': 'gold'}].exists(vars, vars.tier == 'gold')"));
    assert!(fx.truth("{'a': 1}.all(conn, conn == 'a')"));
    assert!(fx.truth("req.method == 'POST' && [1].all(x, req.method == 'POST')"));
}

#[test]
fn collapsed_and_selected_paths_agree() {
    let fx = auth_fixture().with_tls();
    assert!(fx.truth("req['url'] == req.url && req['method'] == req.method"));
    assert!(fx.truth("conn['tls'].sni == conn.tls.sni && conn.tls['version'] == 'TLSv1.3'"));
    // `req.url` itself is a string: its parts are reached by their full names only.
    assert!(fx
        .error("req.url['path'] == ''")
        .contains("no matching overload"));
    let message = Fixture::new(&[]).error("req.content_length > 0");
    assert!(
        message.contains("'req.content_length' is not set"),
        "{message}"
    );
    let message = Fixture::new(&[]).error("vars.missing == 1");
    assert!(message.contains("'vars.missing' is not set"), "{message}");
}

#[test]
fn invalid_header_names_are_simply_absent() {
    let fx = auth_fixture();
    assert!(fx.truth("req.headers['bad name'] == [] && !('bad name' in req.headers)"));
    assert!(fx.truth("req.headers['ünïcode'][0] == '' && !hasReqHeader('')"));
    // A name longer than http accepts (64 KiB).
    assert!(fx.truth("req.headers[lists.range(7000).map(i, 'xxxxxxxxxx').join()] == []"));
}

#[test]
fn cookies_grouped_by_name_in_header_order() {
    let fx = Fixture::new(&[
        ("Cookie", "theme=dark; basket=\"two items\""),
        ("Cookie", "theme=light; =orphan; bare"),
    ]);
    assert!(fx.truth("size(req.cookies) == 2"));
    assert!(fx.truth("req.cookies['theme'].map(c, c.value) == ['dark', 'light']"));
    assert!(fx.truth("req.cookies.basket[0].name == 'basket'"));
    assert!(fx.truth("getReqCookie('basket').value == 'two items'"));
    assert!(fx.truth("getReqCookie('theme').value == 'dark'"));
    assert!(fx.truth("hasReqCookie('theme') && !hasReqCookie('bare')"));
    // Cookie names are case-sensitive, unlike header names.
    assert!(fx.truth("!hasReqCookie('Theme') && !('THEME' in req.cookies)"));
    assert!(!fx.error("getReqCookie('absent').value").is_empty());

    let none = Fixture::new(&[("Host", "h")]);
    assert!(none.truth("size(req.cookies) == 0 && !hasReqCookie('theme')"));
}

#[test]
fn response_cookies_carry_their_attributes_longest_path_first() {
    let fx = Fixture::new(&[("Host", "h")]).with_response(
        200,
        &[
            ("Set-Cookie", "sid=root; Path=/"),
            (
                "Set-Cookie",
                "sid=\"deep\"; Path=/app/admin; Domain=example.test; Secure; HttpOnly; \
                 SameSite=Strict; Max-Age=3600; Expires=Wed, 21 Oct 2015 07:28:00 GMT; Priority=High",
            ),
            ("Set-Cookie", "pref=compact; Expires=Thu, 01-Jan-2099 00:00:00 GMT"),
            ("Set-Cookie", "no-equals-sign"),
        ],
    );
    assert!(fx.truth("size(res.cookies) == 2"));
    assert!(fx.truth("res.cookies['sid'].map(c, c.value) == ['deep', 'root']"));
    let deep = "getResCookie('sid')";
    assert!(fx.truth(&format!(
        "{deep}.path == '/app/admin' && {deep}.domain == 'example.test'"
    )));
    assert!(fx.truth(&format!(
        "{deep}.secure && {deep}.http_only && {deep}.same_site == 'Strict'"
    )));
    assert!(fx.truth(&format!("{deep}.max_age == duration('1h')")));
    assert!(fx.truth(&format!(
        "{deep}.expires == timestamp('2015-10-21T07:28:00Z')"
    )));
    assert!(fx.truth(&format!(
        "{deep}.unparsed_attributes == {{'Priority': 'High'}}"
    )));
    let root = "res.cookies['sid'][1]";
    assert!(fx.truth(&format!(
        "!{root}.secure && !has({root}.max_age) && !has({root}.expires)"
    )));
    assert!(fx.truth("getResCookie('pref').expires == timestamp('2099-01-01T00:00:00Z')"));
    assert!(fx.truth("hasResCookie('pref') && !hasResCookie('no-equals-sign')"));
}

#[test]
fn user_password_is_the_userinfo_of_an_absolute_form_target() {
    let with = Fixture::with_uri("http://ann:pw@gw.example.com/x", &[]);
    assert!(with.truth("req.url.user_password == 'ann:pw'"));
    assert!(with.truth("req.url.host == 'gw.example.com'"));
    let without = Fixture::new(&[("Host", "gw.example.com")]);
    assert!(without.truth("req.url.user_password == ''"));
}

#[test]
fn user_agent_sub_fields_come_from_the_parsed_header() {
    let edge = Fixture::new(&[(
        "User-Agent",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
         Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
    )]);
    assert!(edge.truth("req.user_agent.name == 'Edge' && req.user_agent.os == 'Windows'"));
    assert!(edge.truth("req.user_agent.is_desktop && !req.user_agent.is_bot"));
    // The plain value is still the whole header.
    assert!(edge.truth("req.user_agent.contains('Edg/120')"));

    let crawler = Fixture::new(&[(
        "User-Agent",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.1; \
         +https://openai.com/gptbot)",
    )]);
    assert!(crawler.truth("req.user_agent.is_bot"));
    assert!(crawler.truth("req.user_agent.name in ['GPTBot', 'ChatGPT-User']"));
    assert!(crawler.truth("req.user_agent.url == 'https://openai.com/gptbot'"));

    let none = Fixture::new(&[("Host", "h")]);
    assert!(none.truth("req.user_agent.name == '' && !req.user_agent.is_mobile"));
}
