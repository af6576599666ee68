//! Evaluation cost of the seed policies' expressions against a realistic request.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, Criterion};
use keygate_cel::{
    ActionResults, Compiler, ConnInfo, MemorySecrets, RequestView, Scope, Value, Vars,
};

const BEARER_RULE: &str =
    "req.headers['authorization'][0] != 'Bearer ' + secrets.get('gateway-auth', 'access-token')";

fn request(with_auth: bool) -> http::request::Parts {
    let mut builder = http::Request::builder()
        .method("POST")
        .uri("/v1/chat/completions?stream=true")
        .header("host", "gw.example.com")
        .header("user-agent", "OpenAI/Python 1.40.0")
        .header("content-type", "application/json")
        .header("content-length", "512")
        .header("accept", "application/json")
        .header("accept-encoding", "gzip, deflate")
        .header("x-stainless-lang", "python")
        .header("x-stainless-os", "Linux")
        .header("x-request-id", "req_01HZX");
    if with_auth {
        builder = builder.header("authorization", "Bearer s3cret-token-0123456789");
    }
    builder.body(()).unwrap().into_parts().0
}

fn conn() -> ConnInfo {
    ConnInfo {
        client_ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
        client_port: 50000,
        server_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        server_port: 8080,
        tls: None,
        started: SystemTime::now(),
        ip_intel: Default::default(),
    }
}

fn secrets() -> MemorySecrets {
    let mut secrets = MemorySecrets::default();
    secrets.insert("gateway-auth", "access-token", "s3cret-token-0123456789");
    secrets.insert("gateway-auth", "client-a-token", "token-a");
    secrets.insert("gateway-auth", "client-b-token", "token-b");
    secrets
}

fn scope<'a>(
    conn: &'a ConnInfo,
    head: &'a http::request::Parts,
    vars: &'a Vars,
    actions: &'a ActionResults,
    secrets: &'a MemorySecrets,
) -> Scope<'a> {
    Scope {
        conn,
        req: Some(RequestView {
            head,
            scheme: "https",
            id: "req_1",
        }),
        res: None,
        vars,
        actions,
        secrets,
        extra: &[],
    }
}

fn benches(c: &mut Criterion) {
    let compiler = Compiler::new();
    let conn = conn();
    let secrets = secrets();
    let actions = ActionResults::default();
    let empty_vars = Vars::default();
    let bearer = compiler.expression(BEARER_RULE).unwrap();

    for (name, with_auth) in [
        ("bearer_rule/header_present", true),
        ("bearer_rule/header_missing", false),
    ] {
        let head = request(with_auth);
        let scope = scope(&conn, &head, &empty_vars, &actions, &secrets);
        c.bench_function(name, |b| {
            b.iter(|| black_box(bearer.eval_bool(black_box(&scope))))
        });
    }

    let head = request(true);
    let templates = [
        compiler
            .template("${'Bearer ' + secrets.get('gateway-auth', 'client-a-token')}")
            .unwrap(),
        compiler
            .template("${'Bearer ' + secrets.get('gateway-auth', 'client-b-token')}")
            .unwrap(),
    ];
    let membership = compiler
        .expression("!(req.headers['authorization'][0] in vars.valid_auth_headers)")
        .unwrap();
    c.bench_function("set_vars_then_in", |b| {
        b.iter(|| {
            let mut vars = Vars::default();
            let values: Vec<Value> = {
                let scope = scope(&conn, &head, &vars, &actions, &secrets);
                templates.iter().map(|t| t.eval(&scope).unwrap()).collect()
            };
            vars.set("valid_auth_headers", Value::List(values.into()));
            let scope = scope(&conn, &head, &vars, &actions, &secrets);
            black_box(membership.eval_bool(&scope))
        })
    });

    let scope = scope(&conn, &head, &empty_vars, &actions, &secrets);
    let matches = compiler
        .expression("req.url.path.matches('^/v1/(chat/completions|responses|messages)$')")
        .unwrap();
    c.bench_function("matches_literal", |b| {
        b.iter(|| black_box(matches.eval_bool(&scope)))
    });
    let dynamic = compiler
        .expression("req.url.path.matches('^/v1/' + 'chat/completions$')")
        .unwrap();
    c.bench_function("matches_dynamic_cached", |b| {
        b.iter(|| black_box(dynamic.eval_bool(&scope)))
    });
    c.bench_function("compile_bearer_rule", |b| {
        b.iter(|| black_box(compiler.expression(black_box(BEARER_RULE))))
    });
    let has_header = compiler
        .expression("hasReqHeader('x-stainless-os')")
        .unwrap();
    c.bench_function("has_req_header", |b| {
        b.iter(|| black_box(has_header.eval_bool(&scope)))
    });
}

/// The pieces the seed rules are made of, for reading the totals below.
fn building_blocks(c: &mut Criterion) {
    let compiler = Compiler::new();
    let conn = conn();
    let secrets = secrets();
    let actions = ActionResults::default();
    let vars = Vars::default();
    let head = request(true);
    let scope = scope(&conn, &head, &vars, &actions, &secrets);
    for src in [
        "true",
        "'a' != 'b'",
        "req.method == 'POST'",
        "req.headers['authorization'][0] == ''",
        "secrets.get('gateway-auth', 'access-token') == ''",
        "'Bearer ' + 'x' == ''",
    ] {
        let e = compiler.expression(src).unwrap();
        c.bench_function(src, |b| b.iter(|| black_box(e.eval_bool(&scope))));
    }
}

criterion_group!(eval, building_blocks, benches);
criterion_main!(eval);
