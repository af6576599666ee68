//! `/metrics` on the admin listener: every metric docs/server.md promises, bounded labels, and `log`
//! metadata in the access log; both exposition formats (0.0.4 by default, OpenMetrics when the
//! scraper's `Accept` prefers it) read by a strict parser; stream errors by cause; per-key series
//! with `--metrics-per-key`.

mod common;

use std::time::Duration;

use common::{send, Gateway, Req};

const TOKEN: &str = "metrics-canary-token-8f7e6d5c";

const POLICY: &str = r#"
on_http_request:
  - expressions:
      - req.headers['authorization'][0] != 'Bearer metrics-canary-token-8f7e6d5c'
    actions:
      - type: custom-response
        config: {status_code: 401, body: '{"error": {"message": "no"}}'}
  - actions:
      - type: log
        config:
          metadata:
            team: "${req.headers['x-team'][0]}"
      - type: rate-limit
        config:
          name: per-token
          capacity: 2
          rate: 60s
          bucket_key:
            - req.headers['authorization']
      - type: ai-gateway
        config:
          providers:
            - id: mock
"#;

#[tokio::test]
async fn every_spec_metric_is_exported_without_secrets() {
    let gw = Gateway::start(POLICY, &[]);
    let chat =
        r#"{"model": "mock-echo", "messages": [{"role": "user", "content": "count my tokens"}]}"#;
    for _ in 0..3 {
        send(
            gw.addr,
            Req::post("/v1/chat/completions", chat)
                .bearer(TOKEN)
                .header("x-team", "blue")
                .from("127.0.0.9"),
        )
        .await
        .unwrap();
    }
    send(gw.addr, Req::get("/v1/models")).await.unwrap();
    assert!(
        gw.wait_for_output(r#""log":[{"team":"blue"}]"#, Duration::from_secs(2)),
        "{}",
        gw.output()
    );
    // Metrics are counted just before the line is queued: once the last request's line is out,
    // the scrape sees every request.
    assert!(
        gw.wait_for_output(
            r#""path":"/v1/models","status":401"#,
            Duration::from_secs(2)
        ),
        "{}",
        gw.output()
    );

    let metrics = send(gw.admin, Req::get("/metrics")).await.unwrap();
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    for expected in [
        "keygate_http_requests_total{status=\"200\"} 2",
        "keygate_http_requests_total{status=\"429\"} 1",
        "keygate_http_requests_total{status=\"401\"} 1",
        "keygate_http_request_duration_seconds_count 4",
        "keygate_policy_reloads_total",
        "keygate_rate_limit_decisions_total{name=\"per-token\",limited=\"false\"} 2",
        "keygate_rate_limit_decisions_total{name=\"per-token\",limited=\"true\"} 1",
        "keygate_ai_requests_total{provider=\"mock\",model=\"mock-echo\",status=\"200\"} 2",
        "keygate_ai_tokens_total{provider=\"mock\",model=\"mock-echo\",direction=\"input\",source=\"provider\"}",
        "keygate_ai_tokens_total{provider=\"mock\",model=\"mock-echo\",direction=\"output\",source=\"provider\"}",
        "keygate_ai_upstream_duration_seconds_count 2",
        "keygate_ai_time_to_first_token_seconds_count 2",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(
        !text.contains(TOKEN) && !text.contains("127.0.0.9"),
        "a token or client address is in a label"
    );
    assert_eq!(
        send(gw.addr, Req::get("/metrics")).await.unwrap().status,
        401,
        "metrics must not be on the client listener"
    );
    for path in ["/healthz", "/readyz"] {
        assert_eq!(send(gw.admin, Req::get(path)).await.unwrap().status, 200);
    }
}

/// What Prometheus asks for (its default `Accept`).
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Scrapes `/metrics` without an `Accept` (0.0.4) and as Prometheus does (OpenMetrics), checks
/// both strictly and that they hold the same series; returns the 0.0.4 text.
async fn scrape_both(gw: &Gateway) -> String {
    let text = send(gw.admin, Req::get("/metrics")).await.unwrap();
    assert_eq!(text.status, 200);
    assert_eq!(text.header("content-type"), Some(TEXT_004));
    let openmetrics = send(
        gw.admin,
        Req::get("/metrics").header("accept", PROMETHEUS_ACCEPT),
    )
    .await
    .unwrap();
    assert_eq!(openmetrics.header("content-type"), Some(OPENMETRICS));
    let (text, openmetrics) = (text.text(), openmetrics.text());
    let parsed_text = expo::parse(&text, expo::Syntax::Prometheus)
        .unwrap_or_else(|err| panic!("0.0.4: {err}\n{text}"));
    let parsed_om = expo::parse(&openmetrics, expo::Syntax::OpenMetrics)
        .unwrap_or_else(|err| panic!("OpenMetrics: {err}\n{openmetrics}"));
    assert_eq!(
        expo::as_prometheus(parsed_om),
        parsed_text,
        "the two formats disagree:\n{openmetrics}\n{text}"
    );
    assert!(
        parsed_text
            .iter()
            .filter(|family| family.kind == "counter")
            .all(|family| family.name.ends_with("_total")),
        "{text}"
    );
    text
}

/// Polls the 0.0.4 exposition until it holds every line of `expected` (metrics are counted
/// once a response is settled, just after the client saw its end).
async fn wait_for_metrics(gw: &Gateway, expected: &[String]) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = send(gw.admin, Req::get("/metrics")).await.unwrap().text();
        let missing: Vec<_> = expected
            .iter()
            .filter(|line| !text.lines().any(|l| l == line.as_str()))
            .collect();
        if missing.is_empty() {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "missing {missing:?} in\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn both_formats_parse_strictly_and_agree() {
    let gw = Gateway::start(POLICY, &[]);
    let chat = r#"{"model": "mock-echo", "messages": [{"role": "user", "content": "hi"}]}"#;
    send(
        gw.addr,
        Req::post("/v1/chat/completions", chat).bearer(TOKEN),
    )
    .await
    .unwrap();
    wait_for_metrics(
        &gw,
        &[
            "keygate_ai_requests_total{provider=\"mock\",model=\"mock-echo\",status=\"200\"} 1"
                .into(),
        ],
    )
    .await;
    let text = scrape_both(&gw).await;
    assert!(
        !text.contains("keygate_access_key_"),
        "per-key series without --metrics-per-key:\n{text}"
    );
    // Other clients' Accept values.
    for (accept, content_type) in [
        ("*/*", TEXT_004),
        ("text/plain", TEXT_004),
        ("application/openmetrics-text", OPENMETRICS),
        ("application/json", TEXT_004),
    ] {
        let reply = send(gw.admin, Req::get("/metrics").header("accept", accept))
            .await
            .unwrap();
        assert_eq!(reply.header("content-type"), Some(content_type), "{accept}");
    }
}

/// Broken streams count in `keygate_ai_stream_errors_total` by cause, and with
/// `--metrics-per-key` an access key's requests and tokens show up under its id (never its
/// token).
#[tokio::test]
async fn stream_errors_and_per_key_series() {
    let mock = keygate_mock::MockServer::start(keygate_mock::MockConfig::default())
        .await
        .unwrap();
    let data = common::TempDir::new("metrics-per-key");
    let key = common::api(data.path(), &["ai-gateway-api-keys", "create"]);
    let (id, token) = (key["id"].as_str().unwrap(), key["token"].as_str().unwrap());
    let policy = "on_http_request:\n  - actions:\n      - type: ai-gateway\n        config:\n          access_keys: required\n          providers:\n            - id: openai\n              api_keys:\n                - value: sk-metrics-server-key\n";
    let gw = Gateway::start_on_mock(
        policy,
        &mock.openai_base_url(),
        data.path(),
        &["--metrics-per-key".to_owned()],
    );
    let chat = |model: &str, stream: bool| {
        format!(
            r#"{{"model": "{model}", "stream": {stream}, "messages": [{{"role": "user", "content": "count my tokens"}}]}}"#
        )
    };
    let reply = send(
        gw.addr,
        Req::post("/v1/chat/completions", chat("gpt-4o", false)).bearer(token),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let usage = &reply.json()["usage"];
    let (input, output) = (
        usage["prompt_tokens"].clone(),
        usage["completion_tokens"].clone(),
    );
    for (model, drop) in [("gpt-4o", "mid-stream"), ("gpt-4o-mini", "end-mid-stream")] {
        // A reset stream may reach the client as an error: only the counts matter here.
        let _ = send(
            gw.addr,
            Req::post("/v1/chat/completions", chat(model, true))
                .bearer(token)
                .header("x-mock-drop", drop)
                .header("x-mock-chunks", "4"),
        )
        .await;
    }
    let expected = [
        "keygate_ai_stream_errors_total{provider=\"openai\",model=\"gpt-4o\",cause=\"interrupted\"} 1".to_owned(),
        "keygate_ai_stream_errors_total{provider=\"openai\",model=\"gpt-4o-mini\",cause=\"no_final_event\"} 1".to_owned(),
        "keygate_ai_requests_total{provider=\"openai\",model=\"gpt-4o\",status=\"stream_error\"} 1".to_owned(),
        format!("keygate_access_key_requests_total{{access_key=\"{id}\"}} 3"),
    ];
    let text = wait_for_metrics(&gw, &expected).await;
    assert_eq!(
        text.matches("keygate_ai_stream_errors_total{").count(),
        2,
        "{text}"
    );
    // The two broken streams' tokens count too (OpenAI reports usage only in its last
    // chunk, so theirs are the estimates).
    let tokens = |direction: &str| -> u64 {
        let prefix = format!(
            "keygate_access_key_tokens_total{{access_key=\"{id}\",direction=\"{direction}\"}} "
        );
        let line = text.lines().find_map(|l| l.strip_prefix(prefix.as_str()));
        line.unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .parse()
            .unwrap()
    };
    assert!(tokens("input") >= input.as_u64().unwrap(), "{text}");
    assert!(tokens("output") >= output.as_u64().unwrap(), "{text}");
    assert!(
        !text.contains(token),
        "an access key's token is in /metrics"
    );
    scrape_both(&gw).await;
}

#[test]
fn the_test_parser_is_strict() {
    use expo::{parse, Syntax::*};
    let counter = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n";
    parse(counter, Prometheus).unwrap();
    let om = "# HELP a A.\n# TYPE a counter\na_total{x=\"1\"} 2\na_created{x=\"1\"} 1.5e9\n# EOF\n";
    parse(om, OpenMetrics).unwrap();
    for (bad, syntax) in [
        (om, Prometheus),
        (counter, OpenMetrics),
        ("# TYPE a_total counter\na_total 1", Prometheus),
        ("# TYPE a counter\na_total 1\n", Prometheus),
        ("# TYPE a gauge\na 1\n# TYPE a gauge\n", Prometheus),
        ("# TYPE a gauge\na 1\n# TYPE b gauge\na 2\n", Prometheus),
        ("# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n", Prometheus),
        ("# TYPE a gauge\na{x=\"\\t\"} 1\n", Prometheus),
        ("# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n", Prometheus),
        ("# TYPE a gauge\na{1x=\"1\"} 1\n", Prometheus),
        ("# TYPE a gauge\na one\n", Prometheus),
        ("# TYPE a gauge\na 1 1.5\n", Prometheus),
        ("# TYPE a counter\na_total -1\n# EOF\n", OpenMetrics),
        ("# TYPE a_total counter\na_total_total 1\n# EOF\n", OpenMetrics),
        ("# TYPE a gauge\na 1\n", OpenMetrics),
        ("# TYPE a gauge\n\na 1\n# EOF\n", OpenMetrics),
        ("# TYPE a gauge\na 1\n# EOF\n# EOF\n", OpenMetrics),
        ("# TYPE a_seconds gauge\n# UNIT a_seconds bytes\na_seconds 1\n# EOF\n", OpenMetrics),
        (
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            Prometheus,
        ),
        (
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
            Prometheus,
        ),
        ("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", Prometheus),
    ] {
        assert!(parse(bad, syntax).is_err(), "accepted as {syntax:?}:\n{bad}");
    }
}

/// A strict reader of the Prometheus text format 0.0.4 and of OpenMetrics 1.0.0 text, written
/// for these tests (no parser crate: the workspace keeps its dependency tree lean). Beyond the
/// formats it requires every sample to follow its family's `# TYPE`, which Keygate always
/// writes.
mod expo {
    use std::collections::HashSet;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Syntax {
        Prometheus,
        OpenMetrics,
    }

    #[derive(Debug, Clone, PartialEq)]
    pub struct Family {
        pub name: String,
        pub kind: String,
        pub help: Option<String>,
        pub samples: Vec<Sample>,
    }

    #[derive(Debug, Clone, PartialEq)]
    pub struct Sample {
        pub name: String,
        pub labels: Vec<(String, String)>,
        pub value: f64,
    }

    /// Families of OpenMetrics as the 0.0.4 exposition of the same registry names them: a
    /// counter `x` becomes `x_total`, `_created` samples go.
    pub fn as_prometheus(families: Vec<Family>) -> Vec<Family> {
        families
            .into_iter()
            .map(|mut family| {
                let created = format!("{}_created", family.name);
                family.samples.retain(|sample| sample.name != created);
                match family.kind.as_str() {
                    "counter" => family.name.push_str("_total"),
                    "gauge" | "histogram" | "summary" => {}
                    other => panic!("Keygate exports no {other} family"),
                }
                family
            })
            .collect()
    }

    pub fn parse(text: &str, syntax: Syntax) -> Result<Vec<Family>, String> {
        let body = text
            .strip_suffix('\n')
            .ok_or("the last line does not end with a line feed")?;
        let body = match syntax {
            Syntax::OpenMetrics => body
                .strip_suffix("# EOF")
                .and_then(|b| b.strip_suffix('\n').or(b.is_empty().then_some(b)))
                .ok_or("no `# EOF` at the end")?,
            Syntax::Prometheus => body,
        };
        let mut families: Vec<Family> = Vec::new();
        let mut seen_names = HashSet::new();
        let mut series = HashSet::new();
        let lines = body.split('\n').filter(|_| !body.is_empty());
        for (number, line) in lines.enumerate() {
            let at = |err: String| format!("line {}: {err}: {line:?}", number + 1);
            if line.is_empty() {
                if syntax == Syntax::OpenMetrics {
                    return Err(at("an empty line".into()));
                }
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                metadata(comment, syntax, &mut families, &mut seen_names).map_err(at)?;
                continue;
            }
            let sample = sample(line, syntax).map_err(at)?;
            let family = families
                .last_mut()
                .ok_or_else(|| at("a sample before any # TYPE".into()))?;
            if family.kind.is_empty() {
                return Err(at("a sample before its family's # TYPE".into()));
            }
            if !sample_names(family, syntax).contains(&sample.name) {
                return Err(at(format!(
                    "not a sample of the {} family {}",
                    family.kind, family.name
                )));
            }
            if !series.insert((sample.name.clone(), sample.labels.clone())) {
                return Err(at("a repeated series".into()));
            }
            if family.kind == "counter" && (sample.value.is_nan() || sample.value < 0.0) {
                return Err(at("a counter below zero or NaN".into()));
            }
            family.samples.push(sample);
        }
        for family in &families {
            if family.kind.is_empty() {
                return Err(format!("{}: no # TYPE", family.name));
            }
            if family.kind == "histogram" {
                check_histogram(family)?;
            }
        }
        Ok(families)
    }

    /// Parses a `#` line into `families`: a new family or more metadata of the current one.
    fn metadata(
        comment: &str,
        syntax: Syntax,
        families: &mut Vec<Family>,
        seen_names: &mut HashSet<String>,
    ) -> Result<(), String> {
        let comment = comment.strip_prefix(' ').ok_or("no space after #")?;
        let (keyword, rest) = comment.split_once(' ').unwrap_or((comment, ""));
        let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
        match (keyword, syntax) {
            ("HELP" | "TYPE", _) | ("UNIT", Syntax::OpenMetrics) => {}
            ("EOF" | "UNIT", Syntax::Prometheus) => {
                return Err(format!("OpenMetrics' # {keyword} in the 0.0.4 format"))
            }
            (_, Syntax::OpenMetrics) => return Err("a comment OpenMetrics does not allow".into()),
            (_, Syntax::Prometheus) => return Ok(()),
        }
        check_metric_name(name)?;
        if families.last().is_none_or(|family| family.name != name) {
            if !seen_names.insert(name.to_owned()) {
                return Err(format!("family {name} appears twice"));
            }
            families.push(Family {
                name: name.to_owned(),
                kind: String::new(),
                help: None,
                samples: Vec::new(),
            });
        }
        let family = families.last_mut().expect("pushed above");
        if !family.samples.is_empty() {
            return Err("metadata after the family's samples".into());
        }
        match keyword {
            "HELP" if family.help.is_none() => family.help = Some(unescape_help(value, syntax)?),
            "TYPE" if family.kind.is_empty() => {
                let kinds: &[&str] = match syntax {
                    Syntax::Prometheus => &["counter", "gauge", "histogram", "summary", "untyped"],
                    Syntax::OpenMetrics => &[
                        "counter",
                        "gauge",
                        "histogram",
                        "gaugehistogram",
                        "stateset",
                        "info",
                        "summary",
                        "unknown",
                    ],
                };
                if !kinds.contains(&value) {
                    return Err(format!("unknown type {value}"));
                }
                if syntax == Syntax::OpenMetrics && value == "counter" && name.ends_with("_total") {
                    return Err("an OpenMetrics counter family named with _total".into());
                }
                family.kind = value.to_owned();
            }
            "UNIT" => {
                if value.is_empty() || !name.ends_with(&format!("_{value}")) {
                    return Err(format!("unit {value} is not the end of {name}"));
                }
            }
            _ => return Err(format!("a second # {keyword}")),
        }
        Ok(())
    }

    /// The sample names a family may have.
    fn sample_names(family: &Family, syntax: Syntax) -> Vec<String> {
        let suffixes: &[&str] = match (family.kind.as_str(), syntax) {
            ("counter", Syntax::OpenMetrics) => &["_total", "_created"],
            ("histogram", Syntax::OpenMetrics) => &["_bucket", "_sum", "_count", "_created"],
            ("histogram", Syntax::Prometheus) => &["_bucket", "_sum", "_count"],
            ("summary", Syntax::OpenMetrics) => &["", "_sum", "_count", "_created"],
            ("summary", Syntax::Prometheus) => &["", "_sum", "_count"],
            ("gaugehistogram", _) => &["_bucket", "_gsum", "_gcount"],
            ("info", _) => &["_info"],
            _ => &[""],
        };
        suffixes
            .iter()
            .map(|suffix| format!("{}{suffix}", family.name))
            .collect()
    }

    fn sample(line: &str, syntax: Syntax) -> Result<Sample, String> {
        let name_end = line.find(['{', ' ']).ok_or("no value")?;
        let name = &line[..name_end];
        check_metric_name(name)?;
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(after) = rest.strip_prefix('{') {
            rest = after;
            loop {
                if let Some(after) = rest.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let (label, after) = rest.split_once("=\"").ok_or("a label without =\"")?;
                check_label_name(label)?;
                if labels.iter().any(|(known, _)| known == label) {
                    return Err(format!("label {label} twice"));
                }
                let (value, after) = label_value(after)?;
                labels.push((label.to_owned(), value));
                rest = match after.strip_prefix(',') {
                    Some(after) if syntax == Syntax::OpenMetrics && after.starts_with('}') => {
                        return Err("a trailing comma".into())
                    }
                    Some(after) => after,
                    None if after.starts_with('}') => after,
                    None => return Err("labels not separated by a comma".into()),
                };
            }
        }
        let rest = rest.strip_prefix(' ').ok_or("no space before the value")?;
        let mut fields = rest.split(' ');
        let value = number(fields.next().unwrap_or(""))?;
        if let Some(timestamp) = fields.next() {
            match syntax {
                Syntax::Prometheus => timestamp
                    .parse::<i64>()
                    .map(drop)
                    .map_err(|_| format!("timestamp {timestamp} is not milliseconds"))?,
                Syntax::OpenMetrics => number(timestamp).map(drop)?,
            }
        }
        if fields.next().is_some() {
            return Err("more than a value and a timestamp (an exemplar?)".into());
        }
        Ok(Sample {
            name: name.to_owned(),
            labels,
            value,
        })
    }

    /// A quoted label value's text (the opening quote already read) and what follows it.
    fn label_value(text: &str) -> Result<(String, &str), String> {
        let mut value = String::new();
        let mut chars = text.char_indices();
        while let Some((at, c)) = chars.next() {
            match c {
                '"' => return Ok((value, &text[at + 1..])),
                '\\' => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("escape \\{other:?} in a label value")),
                },
                '\n' => return Err("a raw line feed in a label value".into()),
                c => value.push(c),
            }
        }
        Err("an unterminated label value".into())
    }

    fn unescape_help(text: &str, syntax: Syntax) -> Result<String, String> {
        let mut help = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                help.push(c);
                continue;
            }
            match chars.next() {
                Some('\\') => help.push('\\'),
                Some('n') => help.push('\n'),
                Some('"') if syntax == Syntax::OpenMetrics => help.push('"'),
                other => return Err(format!("escape \\{other:?} in HELP")),
            }
        }
        Ok(help)
    }

    fn number(text: &str) -> Result<f64, String> {
        match text {
            "+Inf" => Ok(f64::INFINITY),
            "-Inf" => Ok(f64::NEG_INFINITY),
            "NaN" => Ok(f64::NAN),
            _ if !text.is_empty()
                && text
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
            {
                text.parse().map_err(|_| format!("not a number: {text}"))
            }
            _ => Err(format!("not a number: {text}")),
        }
    }

    fn check_metric_name(name: &str) -> Result<(), String> {
        let mut bytes = name.bytes();
        let valid = bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
        valid
            .then_some(())
            .ok_or(format!("bad metric name {name:?}"))
    }

    fn check_label_name(name: &str) -> Result<(), String> {
        let mut bytes = name.bytes();
        let valid = bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !name.starts_with("__");
        valid
            .then_some(())
            .ok_or(format!("bad label name {name:?}"))
    }

    /// Buckets: each label set's `le` bounds rising to `+Inf`, counts cumulative, the `+Inf`
    /// bucket equal to `_count`.
    fn check_histogram(family: &Family) -> Result<(), String> {
        let others = |sample: &Sample| -> Vec<(String, String)> {
            let mut labels = sample.labels.clone();
            labels.retain(|(name, _)| name != "le");
            labels
        };
        let bucket = format!("{}_bucket", family.name);
        let count = format!("{}_count", family.name);
        for total in family.samples.iter().filter(|s| s.name == count) {
            let buckets: Vec<&Sample> = family
                .samples
                .iter()
                .filter(|s| s.name == bucket && others(s) == total.labels)
                .collect();
            let mut previous = (f64::NEG_INFINITY, 0.0);
            for sample in &buckets {
                let le = sample
                    .labels
                    .iter()
                    .find(|(name, _)| name == "le")
                    .ok_or(format!("{bucket} without le"))?;
                let le = number(&le.1)?;
                if le <= previous.0 || sample.value < previous.1 {
                    return Err(format!("{bucket}: buckets not rising at le={le}"));
                }
                previous = (le, sample.value);
            }
            if previous.0 != f64::INFINITY || previous.1 != total.value {
                return Err(format!("{bucket}: the +Inf bucket is not {count}"));
            }
        }
        Ok(())
    }
}
