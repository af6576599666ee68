//! `keygate policy test`: runs a policy offline, in process, against requests described in a YAML
//! test file and checks what it answers; `--explain` prints the trace of each rule.
//!
//! Each case gets a freshly compiled policy with its own in-memory secrets and rate limiter (on a
//! manual clock that only `interval` moves), every built-in `ai-gateway` provider answered by the
//! built-in mock, and a stub upstream for requests no action answers. File format:
//! `docs/policy-testing.md`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use keygate_cel::{to_json, Compiler, ConnInfo, EvalError, MemorySecrets, TlsInfo};
use keygate_policy::document::{from_node, parse};
use keygate_policy::{
    ActionError, ActionStep, Body, Deps, Exchange, Observer, Outcome, Phase, Policy, RequestBody,
};
use keygate_ratelimit::{ManualClock, MemoryConfig, MemoryLimiter};
use serde::Deserialize;
use serde_json::Value as Json;

#[derive(clap::Args)]
pub struct TestArgs {
    /// The policy file (YAML or JSON).
    policy: PathBuf,
    /// The test file (YAML): cases with requests and expectations.
    testfile: Option<PathBuf>,
    /// Print the trace of every case, passed or not.
    #[arg(short, long)]
    verbose: bool,
    /// Print the trace of one request given on the command line (`--request`), or of every case.
    #[arg(long)]
    explain: bool,
    /// Run only the cases whose name contains this text.
    #[arg(long)]
    case: Option<String>,
    /// With --explain: the request as `METHOD PATH[?QUERY]`, e.g. `POST /v1/chat/completions`.
    #[arg(long, requires = "explain")]
    request: Option<String>,
    /// With --request: a header `name: value` (repeatable).
    #[arg(short = 'H', long = "header", requires = "request")]
    headers: Vec<String>,
    /// With --request: the request body.
    #[arg(long, requires = "request")]
    body: Option<String>,
    /// With --request: the client IP (default 127.0.0.1).
    #[arg(long, requires = "request")]
    client_ip: Option<IpAddr>,
    /// With --request: a vault secret `VAULT/NAME=VALUE` (repeatable).
    #[arg(long = "secret", requires = "request")]
    secrets: Vec<String>,
    #[command(flatten)]
    ip_intel: crate::ip_intel::IpIntelArgs,
}

/// A test file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TestFile {
    /// Vault secrets every case sees: `{vault: {name: value}}`.
    #[serde(default)]
    secrets: BTreeMap<String, BTreeMap<String, String>>,
    /// The stub upstream's answer for cases that do not give their own.
    #[serde(default)]
    upstream: Option<Upstream>,
    cases: Vec<Case>,
}

/// One case: a request (sent `repeat` times), what the upstream answers, what to expect.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    path: Option<String>,
    /// A query string (`a=1&b=2`) or a map of names to a value or a list of values.
    #[serde(default)]
    query: Option<Json>,
    /// Header names to a value or a list of values.
    #[serde(default)]
    headers: BTreeMap<String, Json>,
    #[serde(default)]
    client_ip: Option<String>,
    /// A string, or any other YAML value sent as JSON.
    #[serde(default)]
    body: Option<Json>,
    /// TLS handshake facts: the request then arrives over `https`.
    #[serde(default)]
    tls: Option<Tls>,
    /// Secrets added to (or replacing) the file's.
    #[serde(default)]
    secrets: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    upstream: Option<Upstream>,
    /// How many times the request is sent; the expectations check the last answer.
    #[serde(default)]
    repeat: Option<u32>,
    /// How far the rate limiter's clock moves before each repeat (`500ms`, `2s`, `1m`).
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    expect: Expect,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct Tls {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    cipher_suite: Option<String>,
    #[serde(default)]
    sni: Option<String>,
    #[serde(default)]
    alpn: Option<String>,
}

/// The stub upstream's answer (default: 200, empty body).
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct Upstream {
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<Json>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Expect {
    #[serde(default)]
    status: Option<u16>,
    /// Header values; `null` means the header must be absent.
    #[serde(default)]
    headers: BTreeMap<String, Option<String>>,
    /// Text (or texts) the body must contain.
    #[serde(default)]
    body_contains: Option<Json>,
    /// The whole body.
    #[serde(default)]
    body: Option<String>,
    /// The rules that matched, in order (both phases).
    #[serde(default)]
    rules: Option<Vec<String>>,
    /// `vars` after the request phase.
    #[serde(default)]
    vars: BTreeMap<String, Json>,
    /// Headers of the request as forwarded to the (stub) upstream; `null` means absent.
    #[serde(default)]
    upstream_headers: BTreeMap<String, Option<String>>,
    /// The action type that answered (`custom-response`), or `null` for none.
    #[serde(default, deserialize_with = "some")]
    terminated_by: Option<Option<String>>,
    /// Whether a policy action closed the connection.
    #[serde(default)]
    closed: Option<bool>,
}

fn some<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

pub fn run(args: TestArgs) -> ExitCode {
    let (policy_name, policy_text) = match crate::check::read_policy_file(&args.policy) {
        Ok(file) => file,
        Err(code) => return code,
    };
    let file = match load_cases(&args) {
        Ok(file) => file,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let compiler = match args.ip_intel.check_compiler() {
        Ok(compiler) => compiler,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    // Compile once up front so an invalid policy is reported once, with every error.
    match compile(
        &compiler,
        &policy_name,
        &policy_text,
        &file.secrets,
        &Case::default(),
    ) {
        Ok(compiled) => {
            for warning in &compiled.policy.warnings {
                eprintln!("{}", warning.in_file(&policy_name));
            }
            for warning in crate::ip_intel::unanswered(&compiler) {
                eprintln!("{policy_name}: warning: {warning}");
            }
        }
        Err(err) => {
            for diagnostic in &err.diagnostics {
                eprintln!("{}", diagnostic.in_file(&policy_name));
            }
            return ExitCode::from(2);
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let selected: Vec<&Case> = file
        .cases
        .iter()
        .filter(|c| args.case.as_ref().is_none_or(|n| c.name.contains(n)))
        .collect();
    if selected.is_empty() {
        eprintln!("no case to run");
        return ExitCode::from(2);
    }
    let (mut passed, mut failed) = (0, 0);
    for case in selected {
        let report = runtime.block_on(run_case(&compiler, &policy_name, &policy_text, &file, case));
        let show_trace = args.verbose || args.explain || !report.failures.is_empty();
        if report.failures.is_empty() {
            passed += 1;
            println!("ok    {}", case.name);
        } else {
            failed += 1;
            println!("FAIL  {}", case.name);
            for failure in &report.failures {
                println!("      - {failure}");
            }
        }
        if show_trace {
            for line in report.trace.lines() {
                println!("      | {line}");
            }
        }
    }
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    println!("test result: {verdict}. {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The cases: the test file's, or one built from `--request`.
fn load_cases(args: &TestArgs) -> Result<TestFile, String> {
    if let Some(request) = &args.request {
        if args.testfile.is_some() {
            return Err("give either a test file or --request, not both".into());
        }
        return request_case(args, request);
    }
    let Some(path) = &args.testfile else {
        return Err("missing the test file (or --explain --request 'METHOD PATH')".into());
    };
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("{name}: cannot read the test file: {err}"))?;
    let root = parse(&text).map_err(|err| {
        format!(
            "{name}:{}:{}: invalid YAML: {}",
            err.pos.line, err.pos.col, err.message
        )
    })?;
    from_node(&root, "").map_err(|err| match &err.at {
        Some((pos, path)) => format!("{name}:{}:{}: {path}: {}", pos.line, pos.col, err.message),
        None => format!("{name}: {}", err.message),
    })
}

fn request_case(args: &TestArgs, request: &str) -> Result<TestFile, String> {
    let (method, target) = request
        .trim()
        .split_once(' ')
        .ok_or("--request must be `METHOD PATH`, e.g. `GET /`")?;
    let (path, query) = match target.trim().split_once('?') {
        Some((path, query)) => (path, Some(Json::String(query.to_owned()))),
        None => (target.trim(), None),
    };
    let mut headers = BTreeMap::new();
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| format!("header `{header}` must be `name: value`"))?;
        let entry = headers
            .entry(name.trim().to_owned())
            .or_insert_with(|| Json::Array(Vec::new()));
        if let Json::Array(values) = entry {
            values.push(Json::String(value.trim().to_owned()));
        }
    }
    let mut secrets: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for secret in &args.secrets {
        let (key, value) = secret
            .split_once('=')
            .ok_or_else(|| format!("secret `{secret}` must be `VAULT/NAME=VALUE`"))?;
        let (vault, name) = key
            .split_once('/')
            .ok_or_else(|| format!("secret `{secret}` must be `VAULT/NAME=VALUE`"))?;
        secrets
            .entry(vault.to_owned())
            .or_default()
            .insert(name.to_owned(), value.to_owned());
    }
    Ok(TestFile {
        secrets,
        upstream: None,
        cases: vec![Case {
            name: format!("{method} {target}"),
            method: Some(method.to_owned()),
            path: Some(path.to_owned()),
            query,
            headers,
            client_ip: args.client_ip.map(|ip| ip.to_string()),
            body: args.body.clone().map(Json::String),
            ..Case::default()
        }],
    })
}

/// Every built-in provider answered by the built-in mock (`mock://`), in process.
fn mock_provider_urls() -> HashMap<String, String> {
    keygate_ai::Catalog::builtin()
        .providers
        .iter()
        .map(|p| (p.id.clone(), "mock://local".to_owned()))
        .collect()
}

fn secrets_for(
    file: &BTreeMap<String, BTreeMap<String, String>>,
    case: &Case,
) -> Arc<MemorySecrets> {
    let mut secrets = MemorySecrets::default();
    for source in [file, &case.secrets] {
        for (vault, values) in source {
            for (name, value) in values {
                secrets.insert(vault, name, value);
            }
        }
    }
    Arc::new(secrets)
}

struct Compiled {
    policy: Policy,
    secrets: Arc<MemorySecrets>,
    clock: ManualClock,
}

fn compile(
    compiler: &Compiler,
    name: &str,
    text: &str,
    file_secrets: &BTreeMap<String, BTreeMap<String, String>>,
    case: &Case,
) -> Result<Compiled, keygate_policy::PolicyError> {
    let secrets = secrets_for(file_secrets, case);
    let clock = ManualClock::new(0);
    // Offline: nothing is fetched while building (JWKS are fetched when a token needs them).
    let deps = Deps {
        rate_limiter: Arc::new(MemoryLimiter::with_clock(
            MemoryConfig::default(),
            clock.clone(),
        )),
        provider_urls: Arc::new(mock_provider_urls()),
        ..Deps::offline(secrets.clone())
    };
    let policy = Policy::compile(name, text, compiler, &deps)?;
    Ok(Compiled {
        policy,
        secrets,
        clock,
    })
}

struct Report {
    failures: Vec<String>,
    trace: String,
}

async fn run_case(
    compiler: &Compiler,
    policy_name: &str,
    policy_text: &str,
    file: &TestFile,
    case: &Case,
) -> Report {
    let fail = |message: String| Report {
        failures: vec![message],
        trace: String::new(),
    };
    let compiled = match compile(compiler, policy_name, policy_text, &file.secrets, case) {
        Ok(compiled) => compiled,
        Err(err) => return fail(format!("the policy does not compile: {err}")),
    };
    let repeat = case.repeat.unwrap_or(1).max(1);
    let interval = match case.interval.as_deref().map(parse_interval).transpose() {
        Ok(interval) => interval.unwrap_or_default(),
        Err(message) => return fail(message),
    };
    let upstream = case.upstream.as_ref().or(file.upstream.as_ref());
    let mut last = None;
    for i in 0..repeat {
        if i > 0 {
            compiled
                .clock
                .advance(u64::try_from(interval.as_millis()).unwrap_or(u64::MAX));
        }
        match send(&compiled, case, upstream, i).await {
            Ok(result) => last = Some(result),
            Err(message) => return fail(message),
        }
    }
    let Some(mut result) = last else {
        return fail("no request was sent".into());
    };
    if repeat > 1 {
        result.trace = format!(
            "request {repeat} of {repeat} (the clock moved {} ms between requests; earlier ones not traced)\n{}",
            interval.as_millis(),
            result.trace
        );
    }
    Report {
        failures: check(&case.expect, &result),
        trace: result.trace,
    }
}

/// What one request yielded.
struct Answer {
    /// `None` when the connection was closed.
    status: Option<StatusCode>,
    headers: http::HeaderMap,
    /// The request head's headers as forwarded upstream, when it was.
    forwarded: Option<http::HeaderMap>,
    body: String,
    rules: Vec<String>,
    terminated_by: Option<&'static str>,
    vars: BTreeMap<String, Json>,
    trace: String,
}

async fn send(
    compiled: &Compiled,
    case: &Case,
    upstream: Option<&Upstream>,
    index: u32,
) -> Result<Answer, String> {
    let mut ex = exchange(compiled, case, index)?;
    let mut tracer = Tracer::default();
    let outcome = compiled
        .policy
        .on_http_request_observed(&mut ex, &mut tracer)
        .await;
    let mut vars = BTreeMap::new();
    for name in ex.vars.names() {
        if let Some(value) = ex.vars.get(name) {
            vars.insert(name.to_owned(), to_json(value));
        }
    }
    if !vars.is_empty() {
        let shown = serde_json::to_string(&vars).unwrap_or_default();
        let _ = writeln!(tracer.out, "vars after on_http_request: {shown}");
    }
    let mut forwarded = None;
    let response = match outcome {
        Outcome::Respond(response) => {
            let by = ex.log.terminated_by.unwrap_or("the access-key check");
            let _ = writeln!(
                tracer.out,
                "stopped: {by} answered {}",
                response.status().as_u16()
            );
            Some(response)
        }
        Outcome::Close => {
            let _ = writeln!(tracer.out, "stopped: the connection was closed");
            None
        }
        Outcome::Continue => {
            forwarded = Some(ex.request.headers.clone());
            let stub = stub_response(upstream)?;
            let _ = writeln!(
                tracer.out,
                "no action answered: forwarded to the upstream (stub answered {})",
                stub.status().as_u16()
            );
            Some(stub)
        }
    };
    let reached_response_phase = response.is_some();
    let response = match response {
        Some(response) => {
            compiled
                .policy
                .on_http_response_observed(&mut ex, response, &mut tracer)
                .await
        }
        None => None,
    };
    let (status, headers, body) = match response {
        Some(response) => {
            let (head, body) = response.into_parts();
            let bytes = tokio::time::timeout(Duration::from_secs(30), body.collect())
                .await
                .map_err(|_| "the response body did not end within 30 s".to_owned())?
                .map_err(|err| format!("reading the response body failed: {err}"))?
                .to_bytes();
            (
                Some(head.status),
                head.headers,
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        }
        None => {
            if reached_response_phase {
                let _ = writeln!(tracer.out, "stopped: the connection was closed");
            }
            (None, http::HeaderMap::new(), String::new())
        }
    };
    let _ = match status {
        Some(status) => writeln!(
            tracer.out,
            "response: {} {}",
            status.as_u16(),
            shorten(&body)
        ),
        None => writeln!(tracer.out, "response: none (connection closed)"),
    };
    Ok(Answer {
        forwarded,
        status,
        headers,
        body,
        rules: ex.log.matched_rules.iter().map(|r| r.to_string()).collect(),
        terminated_by: ex.log.terminated_by,
        vars,
        trace: tracer.out,
    })
}

fn exchange(compiled: &Compiled, case: &Case, index: u32) -> Result<Exchange, String> {
    let method = case.method.as_deref().unwrap_or("GET");
    let mut target = case.path.clone().unwrap_or_else(|| "/".to_owned());
    if !target.starts_with('/') {
        target.insert(0, '/');
    }
    match &case.query {
        None | Some(Json::Null) => {}
        Some(Json::String(query)) => {
            target.push('?');
            target.push_str(query.trim_start_matches('?'));
        }
        Some(Json::Object(map)) => {
            let mut pairs = Vec::new();
            for (name, value) in map {
                for value in values(value) {
                    pairs.push(format!("{}={}", encode(name), encode(&value)));
                }
            }
            target.push('?');
            target.push_str(&pairs.join("&"));
        }
        Some(_) => return Err("query: expected a string or a map".into()),
    }
    let mut builder = http::Request::builder().method(method).uri(target.as_str());
    let mut has_host = false;
    for (name, value) in &case.headers {
        has_host |= name.eq_ignore_ascii_case("host");
        for value in values(value) {
            builder = builder.header(name.as_str(), value);
        }
    }
    let id = format!("test-{index:04}");
    builder = builder.header("x-request-id", id.as_str());
    if !has_host {
        builder = builder.header("host", "localhost");
    }
    let body = match &case.body {
        None | Some(Json::Null) => Bytes::new(),
        Some(Json::String(text)) => Bytes::from(text.clone()),
        Some(other) => Bytes::from(other.to_string()),
    };
    let has_type = case
        .headers
        .keys()
        .any(|n| n.eq_ignore_ascii_case("content-type"));
    if matches!(&case.body, Some(Json::Object(_) | Json::Array(_))) && !has_type {
        builder = builder.header("content-type", "application/json");
    }
    let (parts, ()) = builder
        .body(())
        .map_err(|err| format!("invalid request: {err}"))?
        .into_parts();
    let client_ip = match &case.client_ip {
        Some(ip) => ip
            .parse::<IpAddr>()
            .map_err(|_| format!("client_ip: '{ip}' is not an IP address"))?,
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    let tls = case.tls.as_ref().map(|tls| TlsInfo {
        version: tls.version.clone().unwrap_or_else(|| "TLSv1.3".into()),
        cipher_suite: tls
            .cipher_suite
            .clone()
            .unwrap_or_else(|| "TLS_AES_128_GCM_SHA256".into()),
        sni: tls.sni.clone().unwrap_or_default(),
        negotiated_alpn: tls.alpn.clone().unwrap_or_default(),
    });
    let scheme = if tls.is_some() { "https" } else { "http" };
    let conn = ConnInfo {
        client_ip: client_ip.to_canonical(),
        client_port: 40000,
        server_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        server_port: if tls.is_some() { 8443 } else { 8080 },
        tls,
        started: SystemTime::now(),
        ip_intel: Default::default(),
    };
    Ok(Exchange::new(
        id,
        Arc::new(conn),
        scheme,
        parts,
        RequestBody::Buffered(body),
        10 << 20,
        compiled.secrets.clone(),
    ))
}

fn stub_response(upstream: Option<&Upstream>) -> Result<Response<Body>, String> {
    let default = Upstream::default();
    let upstream = upstream.unwrap_or(&default);
    let status = StatusCode::from_u16(upstream.status.unwrap_or(200))
        .map_err(|_| "upstream.status: not an HTTP status".to_owned())?;
    let body = match &upstream.body {
        None | Some(Json::Null) => Bytes::new(),
        Some(Json::String(text)) => Bytes::from(text.clone()),
        Some(other) => Bytes::from(other.to_string()),
    };
    let mut response = Response::new(keygate_policy::body::full(body));
    *response.status_mut() = status;
    for (name, value) in &upstream.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("upstream.headers: '{name}' is not a header name"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("upstream.headers.{name}: not a header value"))?;
        response.headers_mut().append(name, value);
    }
    Ok(response)
}

/// A header or query value: one value or a list.
fn values(value: &Json) -> Vec<String> {
    match value {
        Json::Array(items) => items.iter().flat_map(values).collect(),
        Json::String(s) => vec![s.clone()],
        Json::Null => Vec::new(),
        other => vec![other.to_string()],
    }
}

fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// `250ms`, `2s`, `1m`, `1h`.
fn parse_interval(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || format!("interval: '{text}' is not a duration like 500ms, 2s, 1m");
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |at| text.split_at(at));
    let n: u64 = number.parse().map_err(|_| bad())?;
    let ms = match unit {
        "ms" => n,
        "s" | "" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => return Err(bad()),
    };
    Ok(Duration::from_millis(ms))
}

fn check(expect: &Expect, answer: &Answer) -> Vec<String> {
    let mut failures = Vec::new();
    let status = answer.status.map_or(0, |s| s.as_u16());
    if let Some(closed) = expect.closed {
        if closed != answer.status.is_none() {
            failures.push(if closed {
                format!("expected the connection to be closed, got status {status}")
            } else {
                "the connection was closed".to_owned()
            });
        }
    }
    if let Some(expected) = expect.status {
        if expected != status {
            failures.push(format!("status: got {status}, expected {expected}"));
        }
    }
    check_headers("header", &expect.headers, &answer.headers, &mut failures);
    if !expect.upstream_headers.is_empty() {
        match &answer.forwarded {
            Some(forwarded) => check_headers(
                "upstream header",
                &expect.upstream_headers,
                forwarded,
                &mut failures,
            ),
            None => failures.push("the request was not forwarded upstream".into()),
        }
    }
    if let Some(fragments) = &expect.body_contains {
        for fragment in values(fragments) {
            if !answer.body.contains(&fragment) {
                failures.push(format!(
                    "body does not contain '{fragment}': {}",
                    shorten(&answer.body)
                ));
            }
        }
    }
    if let Some(body) = &expect.body {
        if *body != answer.body {
            failures.push(format!(
                "body: got {}, expected {}",
                shorten(&answer.body),
                shorten(body)
            ));
        }
    }
    if let Some(rules) = &expect.rules {
        if *rules != answer.rules {
            failures.push(format!(
                "rules matched: got {:?}, expected {rules:?}",
                answer.rules
            ));
        }
    }
    for (name, expected) in &expect.vars {
        match answer.vars.get(name) {
            Some(got) if same_json(got, expected) => {}
            Some(got) => failures.push(format!("vars.{name}: got {got}, expected {expected}")),
            None => failures.push(format!("vars.{name} is not set, expected {expected}")),
        }
    }
    if let Some(expected) = &expect.terminated_by {
        if expected.as_deref() != answer.terminated_by {
            failures.push(format!(
                "answered by: got {}, expected {}",
                answer.terminated_by.unwrap_or("no action"),
                expected.as_deref().unwrap_or("no action")
            ));
        }
    }
    failures
}

fn check_headers(
    what: &str,
    expected: &BTreeMap<String, Option<String>>,
    headers: &http::HeaderMap,
    failures: &mut Vec<String>,
) {
    for (name, expected) in expected {
        let got: Vec<&str> = headers
            .get_all(name.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        match expected {
            None if !got.is_empty() => {
                failures.push(format!("{what} {name}: got {got:?}, expected none"))
            }
            Some(value) if !got.contains(&value.as_str()) => {
                failures.push(format!("{what} {name}: got {got:?}, expected '{value}'"))
            }
            _ => {}
        }
    }
}

/// JSON equality where `1` and `1.0` are the same number.
fn same_json(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

fn shorten(text: &str) -> String {
    const MAX: usize = 300;
    if text.len() <= MAX {
        return format!("{text:?}");
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}... ({} bytes)", &text[..end], text.len())
}

/// Writes the engine's steps as an indented trace.
#[derive(Default)]
struct Tracer {
    out: String,
    evaluated: usize,
}

impl Observer for Tracer {
    fn phase(&mut self, phase: Phase) {
        let _ = writeln!(self.out, "{}:", phase.key());
    }

    fn access_key_refused(&mut self, status: StatusCode) {
        let _ = writeln!(
            self.out,
            "  the access-key check refused the request ({})",
            status.as_u16()
        );
    }

    fn rule(&mut self, rule: &str) {
        self.evaluated = 0;
        let _ = writeln!(self.out, "  rule '{rule}'");
    }

    fn expression(&mut self, source: &str, result: Result<bool, &EvalError>) {
        self.evaluated += 1;
        let value = match result {
            Ok(value) => value.to_string(),
            Err(err) => format!("error: {}", err.message),
        };
        let _ = writeln!(self.out, "    {source}  => {value}");
    }

    fn matched(&mut self, matched: bool) {
        let line = match (matched, self.evaluated) {
            (true, 0) => "    matched (no expressions)",
            (true, _) => "    matched",
            (false, _) => "    not matched: actions skipped",
        };
        let _ = writeln!(self.out, "{line}");
    }

    fn action(&mut self, action: &'static str, step: ActionStep<'_>, _ex: &Exchange) {
        let what = match step {
            ActionStep::Continued => "continued".to_owned(),
            ActionStep::Responded(status) => format!("answered {}: phase ends", status.as_u16()),
            ActionStep::Closed => "closed the connection: phase ends".to_owned(),
            ActionStep::Failed(ActionError::Eval(err)) => {
                format!("failed (500): {}", err.message)
            }
            ActionStep::Failed(ActionError::Gateway(err)) => format!(
                "answered {} ({}): {}",
                err.status().as_u16(),
                err.code.as_str(),
                err.message
            ),
        };
        let _ = writeln!(self.out, "    action {action}: {what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse() {
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_interval("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_interval("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_interval("soon").is_err());
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode("a b&c"), "a%20b%26c");
    }
}
