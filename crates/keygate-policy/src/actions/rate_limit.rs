//! `rate-limit`: at most `capacity` requests per sliding `rate` window for each bucket, the bucket being the
//! tuple of the `bucket_key` expressions' values. Counting is done by the process-wide limiter from
//! [`Deps`](crate::build::Deps) (in memory, or shared through Redis).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use keygate_cel::{stringify, EvalError, Expression, Value};
use keygate_ratelimit::{key_digest_hex, Limit, RateLimiter};
use serde::Deserialize;

use crate::action::{Action, ActionError, ActionFuture, ActionKind, Flow, Phase, Termination};
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::error::{ErrorCode, GatewayError};
use crate::exchange::Exchange;

pub const KIND: ActionKind = ActionKind {
    name: "rate-limit",
    result_name: "rate_limit",
    phases: &[Phase::OnHttpRequest],
    termination: Termination::Sometimes,
    needs_config: true,
    build,
};

const MAX_CAPACITY: u64 = 2_000_000_000;
const MAX_NAME_LEN: usize = 1023;
const MAX_BUCKET_KEYS: usize = 10;
/// Hex digits of the bucket digest published as `actions.ngrok.rate_limit.bucket_key`.
const PUBLISHED_DIGEST_LEN: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    name: String,
    enforce: Option<bool>,
    algorithm: Option<String>,
    capacity: Option<i64>,
    rate: String,
    bucket_key: Vec<String>,
}

struct RateLimit {
    name: String,
    limit: Limit,
    enforce: bool,
    bucket_key: Vec<Expression>,
    limiter: Arc<dyn RateLimiter>,
    /// Something in the policy reads `actions.ngrok.rate_limit` (its digest costs a SHA-256).
    publish_results: bool,
}

/// A parsed `rate`: the window, and the count when written as `N/unit`.
#[derive(Debug, PartialEq, Eq)]
struct Rate {
    window: Duration,
    count: Option<u64>,
}

fn build(cx: &BuildContext<'_>) -> Result<Box<dyn Action>, Diagnostic> {
    let config: Config = cx.config()?;
    if config.name.is_empty() || config.name.len() > MAX_NAME_LEN {
        return Err(cx.error(
            "name",
            format!("name must be 1 to {MAX_NAME_LEN} characters"),
        ));
    }
    if let Some(algorithm) = config
        .algorithm
        .as_deref()
        .filter(|a| *a != "sliding_window")
    {
        return Err(cx.error(
            "algorithm",
            format!("unknown algorithm '{algorithm}': the only one is sliding_window"),
        ));
    }
    let rate = parse_rate(&config.rate).map_err(|message| cx.error("rate", message))?;
    let capacity = match (config.capacity, rate.count) {
        (Some(c), _) if !(1..=MAX_CAPACITY as i64).contains(&c) => {
            return Err(cx.error(
                "capacity",
                format!("capacity must be 1 to {MAX_CAPACITY}, got {c}"),
            ));
        }
        (Some(c), Some(n)) if c as u64 != n => {
            return Err(cx.error(
                "rate",
                format!(
                    "rate '{}' allows {n} requests but capacity is {c}: make them equal, or omit capacity",
                    config.rate
                ),
            ));
        }
        (Some(c), _) => c as u64,
        (None, Some(n)) => n,
        (None, None) => {
            return Err(cx.error(
                "capacity",
                "capacity is required (or write rate as N/unit, e.g. 100/min)",
            ))
        }
    };
    if config.bucket_key.is_empty() || config.bucket_key.len() > MAX_BUCKET_KEYS {
        return Err(cx.error(
            "bucket_key",
            format!("bucket_key needs 1 to {MAX_BUCKET_KEYS} expressions"),
        ));
    }
    let bucket_key = config
        .bucket_key
        .iter()
        .enumerate()
        .map(|(i, source)| cx.expression(&format!("bucket_key[{i}]"), source))
        .collect::<Result<_, _>>()?;
    Ok(Box::new(RateLimit {
        name: config.name,
        limit: Limit {
            capacity,
            window: rate.window,
        },
        enforce: config.enforce.unwrap_or(true),
        bucket_key,
        limiter: cx.deps.rate_limiter.clone(),
        publish_results: cx.results_read(KIND.result_name),
    }))
}

/// Parses ngrok's duration form (`60s`, `10m`, `1h`: a multiple of 10 s, 60 s to 24 h) or the `N/unit`
/// form of ngrok's AI gateway guides (`100/min`; the window is one unit).
fn parse_rate(text: &str) -> Result<Rate, String> {
    let text = text.trim();
    if let Some((count, unit)) = text.split_once('/') {
        let count: u64 = count
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=MAX_CAPACITY).contains(n))
            .ok_or_else(|| {
                format!(
                    "the count in rate '{text}' must be a whole number from 1 to {MAX_CAPACITY}"
                )
            })?;
        let seconds = match unit.trim() {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3_600,
            "d" | "day" => 86_400,
            other => {
                return Err(format!(
                    "unknown unit '{other}' in rate '{text}': use s, sec, second, m, min, minute, h, hour, d or day"
                ))
            }
        };
        return Ok(Rate {
            window: Duration::from_secs(seconds),
            count: Some(count),
        });
    }
    let invalid = || {
        format!(
            "invalid rate '{text}': write a duration (60s, 10m, 1h: a multiple of 10 seconds, from 60s to 24h) \
             or a count per unit (100/min)"
        )
    };
    let split = text.len().checked_sub(1).ok_or_else(invalid)?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let n: u64 = digits.parse().map_err(|_| invalid())?;
    let seconds = match unit {
        "s" => n,
        "m" => n.checked_mul(60).ok_or_else(invalid)?,
        "h" => n.checked_mul(3_600).ok_or_else(invalid)?,
        _ => return Err(invalid()),
    };
    if seconds % 10 != 0 || !(60..=86_400).contains(&seconds) {
        return Err(invalid());
    }
    Ok(Rate {
        window: Duration::from_secs(seconds),
        count: None,
    })
}

/// Appends `value` to `out` unambiguously: a type tag, then length-prefixed bytes (lists: their length,
/// then each element), so no two different tuples encode alike.
fn encode(value: &Value, out: &mut Vec<u8>) {
    let mut field = |tag: u8, bytes: &[u8]| {
        out.push(tag);
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
    };
    match value {
        Value::String(s) => field(b's', s.as_bytes()),
        Value::Bytes(b) => field(b'b', b),
        Value::List(items) => {
            field(b'l', &(items.len() as u64).to_le_bytes());
            for item in items.iter() {
                encode(item, out);
            }
        }
        other => field(b'v', stringify(other).as_bytes()),
    }
}

impl RateLimit {
    /// The encoded bucket tuple: raw identity, possibly holding tokens; only the limiter sees it.
    fn bucket(&self, ex: &Exchange) -> Result<Vec<u8>, EvalError> {
        let scope = ex.scope();
        let mut key = Vec::with_capacity(64);
        for expression in &self.bucket_key {
            encode(&expression.eval(&scope)?, &mut key);
        }
        Ok(key)
    }

    async fn check(&self, ex: &mut Exchange) -> Result<Flow, ActionError> {
        let key = self.bucket(ex)?;
        let decision = self.limiter.check(&self.name, &key, self.limit).await;
        if self.publish_results {
            let mut digest = key_digest_hex(&key);
            digest.truncate(PUBLISHED_DIGEST_LEN);
            ex.results.set(
                KIND.result_name,
                Value::from(HashMap::from([
                    ("bucket_key", Value::from(digest)),
                    ("limited", Value::Bool(decision.limited)),
                ])),
            );
        }
        if !decision.limited || !self.enforce {
            return Ok(Flow::Continue);
        }
        let seconds = decision.retry_after.as_secs().max(1);
        Err(GatewayError::new(
            ErrorCode::RateLimited,
            format!(
                "rate limit '{}' exceeded: retry after {seconds} s",
                self.name
            ),
        )
        .with_header(http::header::RETRY_AFTER, HeaderValue::from(seconds))
        .into())
    }
}

impl Action for RateLimit {
    fn run<'a>(&'a self, ex: &'a mut Exchange) -> ActionFuture<'a> {
        Box::pin(self.check(ex))
    }
}

#[cfg(test)]
mod tests {

    use bytes::Bytes;
    use http_body_util::BodyExt;
    use keygate_cel::{Compiler, MemorySecrets};
    use keygate_ratelimit::{ManualClock, MemoryConfig, MemoryLimiter};

    use super::*;
    use crate::build::Deps;
    use crate::engine::Outcome;
    use crate::policy::Policy;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn rate_in_ngrok_duration_form() {
        let window = |s: &str| parse_rate(s).map(|r| (r.window, r.count));
        assert_eq!(window("60s"), Ok((MIN, None)));
        assert_eq!(window("90s"), Ok((Duration::from_secs(90), None)));
        assert_eq!(window("10m"), Ok((Duration::from_secs(600), None)));
        assert_eq!(window("1h"), Ok((Duration::from_secs(3600), None)));
        assert_eq!(window("24h"), Ok((Duration::from_secs(86_400), None)));
        assert_eq!(window("1440m"), Ok((Duration::from_secs(86_400), None)));
        for bad in [
            "", "s", "m", "59s", "50s", "65s", "0m", "25h", "1441m", "1d", "60", "-60s", "1h30m",
            "6 0s", "60S",
        ] {
            let err = parse_rate(bad).unwrap_err();
            assert!(err.contains("invalid rate"), "{bad}: {err}");
        }
        assert!(parse_rate("99999999999999999999h").is_err());
    }

    #[test]
    fn rate_in_count_per_unit_form() {
        let rate = |s: &str| parse_rate(s).map(|r| (r.window, r.count));
        assert_eq!(rate("100/min"), Ok((MIN, Some(100))));
        for (unit, secs) in [
            ("s", 1),
            ("sec", 1),
            ("second", 1),
            ("m", 60),
            ("min", 60),
            ("minute", 60),
            ("h", 3600),
            ("hour", 3600),
            ("d", 86_400),
            ("day", 86_400),
        ] {
            assert_eq!(
                rate(&format!("5/{unit}")),
                Ok((Duration::from_secs(secs), Some(5))),
                "{unit}"
            );
        }
        assert!(parse_rate("100/week")
            .unwrap_err()
            .contains("unknown unit 'week'"));
        assert!(parse_rate("100/minutes")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_rate("100/").unwrap_err().contains("unknown unit"));
        for bad in [
            "0/min",
            "-1/min",
            "x/min",
            "/min",
            "2000000001/min",
            "1.5/min",
        ] {
            assert!(
                parse_rate(bad).unwrap_err().contains("whole number"),
                "{bad}"
            );
        }
        assert_eq!(
            rate("2000000000/d"),
            Ok((Duration::from_secs(86_400), Some(2_000_000_000)))
        );
    }

    #[test]
    fn bucket_encoding_is_unambiguous() {
        let enc = |values: &[Value]| {
            let mut out = Vec::new();
            for v in values {
                encode(v, &mut out);
            }
            out
        };
        let s = |t: &str| Value::from(t.to_owned());
        assert_ne!(enc(&[s("ab"), s("c")]), enc(&[s("a"), s("bc")]));
        assert_ne!(enc(&[s("")]), enc(&[Value::List(Vec::new().into())]));
        assert_ne!(
            enc(&[Value::List(vec![s("a"), s("b")].into())]),
            enc(&[Value::List(vec![s("ab")].into())])
        );
        assert_ne!(enc(&[s("1")]), enc(&[Value::Int(1)]));
        assert_eq!(enc(&[Value::Int(1)]), enc(&[Value::UInt(1)]));
    }

    fn deps(limiter: Arc<dyn RateLimiter>) -> Deps {
        Deps {
            rate_limiter: limiter,
            ..Deps::for_test()
        }
    }

    fn compile(config: &str) -> Result<Policy, String> {
        let text = format!(
            "on_http_request:\n  - actions:\n      - type: rate-limit\n        config:\n{config}"
        );
        Policy::compile(
            "t.yml",
            &text,
            &Compiler::new(),
            &deps(Arc::new(MemoryLimiter::default())),
        )
        .map_err(|e| {
            e.diagnostics
                .iter()
                .map(|d| format!("{}: {}", d.path, d.message))
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    fn indent(lines: &[&str]) -> String {
        lines.iter().map(|l| format!("          {l}\n")).collect()
    }

    #[test]
    fn config_validation() {
        let ok = |lines: &[&str]| {
            if let Err(e) = compile(&indent(lines)) {
                panic!("rejected {lines:?}: {e}");
            }
        };
        let err = |lines: &[&str]| {
            compile(&indent(lines))
                .err()
                .unwrap_or_else(|| panic!("accepted: {lines:?}"))
        };
        let key = "bucket_key: [\"req.headers['authorization']\"]";
        ok(&[
            "name: a",
            "algorithm: sliding_window",
            "capacity: 100",
            "rate: 100/min",
            key,
        ]);
        ok(&["name: a", "capacity: 100", "rate: 60s", key]);
        ok(&["name: a", "rate: 100/min", key]);
        ok(&[
            "name: a",
            "enforce: false",
            "capacity: 2000000000",
            "rate: 24h",
            key,
        ]);

        let e = err(&["name: a", "capacity: 50", "rate: 100/min", key]);
        assert!(
            e.contains("config.rate: rate '100/min' allows 100 requests but capacity is 50"),
            "{e}"
        );
        let e = err(&["name: a", "capacity: 0", "rate: 60s", key]);
        assert!(
            e.contains("config.capacity: capacity must be 1 to 2000000000, got 0"),
            "{e}"
        );
        let e = err(&["name: a", "capacity: 2000000001", "rate: 60s", key]);
        assert!(e.contains("config.capacity"), "{e}");
        let e = err(&["name: a", "rate: 60s", key]);
        assert!(e.contains("config.capacity: capacity is required"), "{e}");
        let e = err(&["name: a", "capacity: 1", "rate: 100/fortnight", key]);
        assert!(e.contains("config.rate: unknown unit 'fortnight'"), "{e}");
        let e = err(&["name: a", "capacity: 1", "rate: 30s", key]);
        assert!(e.contains("config.rate: invalid rate '30s'"), "{e}");
        let e = err(&[
            "name: a",
            "capacity: 1",
            "rate: 60s",
            "algorithm: token_bucket",
            key,
        ]);
        assert!(
            e.contains("config.algorithm: unknown algorithm 'token_bucket'"),
            "{e}"
        );
        let e = err(&["name: a", "capacity: 1", "rate: 60s", "bucket_key: []"]);
        assert!(
            e.contains("config.bucket_key: bucket_key needs 1 to 10"),
            "{e}"
        );
        let e = err(&[
            "name: a",
            "capacity: 1",
            "rate: 60s",
            "bucket_key: [a, b, c, d, e, f, g, h, i, j, k]",
        ]);
        assert!(e.contains("config.bucket_key"), "{e}");
        let e = err(&[
            "name: a",
            "capacity: 1",
            "rate: 60s",
            "bucket_key: ['conn.client_ip', 'req.headers[']",
        ]);
        assert!(
            e.contains("config.bucket_key[1]: invalid expression"),
            "{e}"
        );
        let e = err(&["name: a", "capacity: 1", "rate: 60s", key, "burst: 5"]);
        assert!(e.contains("burst"), "{e}");
        let e = err(&["capacity: 1", "rate: 60s", key]);
        assert!(e.contains("name"), "{e}");
        let e = err(&["name: ''", "capacity: 1", "rate: 60s", key]);
        assert!(e.contains("config.name: name must be 1 to 1023"), "{e}");
        let e = err(&["name: a", "capacity: '100'", "rate: 60s", key]);
        assert!(e.contains("capacity"), "{e}");
    }

    const SEED: &str = r#"
on_http_request:
  - actions:
      - type: rate-limit
        config:
          name: ai-gateway-limit
          algorithm: sliding_window
          capacity: 3
          rate: 3/min
          bucket_key:
            - req.headers['authorization']
  - expressions: ["actions.ngrok.rate_limit.limited"]
    actions:
      - type: custom-response
        config: {status_code: 299, body: "${actions.ngrok.rate_limit.bucket_key}"}
"#;

    fn exchange(path: &str, auth: Option<&str>) -> Exchange {
        let mut request = http::Request::builder().uri(path);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let (request, ()) = request.body(()).unwrap().into_parts();
        Exchange::for_test(
            request,
            Bytes::new(),
            1024,
            Arc::new(MemorySecrets::default()),
        )
    }

    fn policy(text: &str) -> (Policy, ManualClock) {
        let clock = ManualClock::new(0);
        let limiter = MemoryLimiter::with_clock(MemoryConfig::default(), clock.clone());
        let policy =
            Policy::compile("t.yml", text, &Compiler::new(), &deps(Arc::new(limiter))).unwrap();
        (policy, clock)
    }

    async fn send(
        policy: &Policy,
        path: &str,
        auth: Option<&str>,
    ) -> (u16, http::HeaderMap, String) {
        let mut ex = exchange(path, auth);
        match policy.on_http_request(&mut ex).await {
            Outcome::Continue => (0, http::HeaderMap::new(), String::new()),
            Outcome::Respond(response) => {
                let (head, body) = response.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                (
                    head.status.as_u16(),
                    head.headers,
                    String::from_utf8(body.to_vec()).unwrap(),
                )
            }
            Outcome::Close => panic!("closed"),
        }
    }

    #[tokio::test]
    async fn seed_policy_limits_each_token_with_retry_after() {
        let (policy, clock) = policy(SEED);
        for _ in 0..3 {
            assert_eq!(
                send(&policy, "/v1/chat/completions", Some("Bearer aaa"))
                    .await
                    .0,
                0
            );
        }
        clock.advance(20_000);
        let (status, headers, body) =
            send(&policy, "/v1/chat/completions", Some("Bearer aaa")).await;
        assert_eq!(status, 429);
        assert_eq!(headers["retry-after"], "40");
        assert_eq!(headers["content-type"], "application/json");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["code"], "ERR_KEYGATE_429");
        assert_eq!(body["error"]["type"], "rate_limit_error");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ai-gateway-limit"));

        // Another token has its own bucket; Anthropic clients get Anthropic's error shape.
        assert_eq!(send(&policy, "/v1/messages", Some("Bearer bbb")).await.0, 0);
        for _ in 0..2 {
            send(&policy, "/v1/messages", Some("Bearer bbb")).await;
        }
        let (status, _, body) = send(&policy, "/v1/messages", Some("Bearer bbb")).await;
        assert_eq!(status, 429);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "rate_limit_error");

        // The window slides: 60 s after the first three requests, the token passes again.
        clock.advance(40_000);
        assert_eq!(
            send(&policy, "/v1/chat/completions", Some("Bearer aaa"))
                .await
                .0,
            0
        );
    }

    #[tokio::test]
    async fn unenforced_limits_only_publish_results() {
        let text = SEED.replace("capacity: 3", "enforce: false\n          capacity: 3");
        let (policy, _) = policy(&text);
        for _ in 0..3 {
            assert_eq!(send(&policy, "/", Some("Bearer secret-token")).await.0, 0);
        }
        let (status, _, body) = send(&policy, "/", Some("Bearer secret-token")).await;
        assert_eq!(
            status, 299,
            "a later rule sees actions.ngrok.rate_limit.limited"
        );
        // The published bucket key is a digest: stable, and never the token itself.
        assert_eq!(body.len(), PUBLISHED_DIGEST_LEN);
        assert!(body.bytes().all(|b| b.is_ascii_hexdigit()));
        let mut expected = Vec::new();
        encode(
            &Value::List(vec![Value::from("Bearer secret-token".to_owned())].into()),
            &mut expected,
        );
        assert!(key_digest_hex(&expected).starts_with(&body));
    }

    #[tokio::test]
    async fn requests_without_the_header_share_one_bucket() {
        let (policy, _) = policy(SEED);
        for _ in 0..3 {
            assert_eq!(send(&policy, "/", None).await.0, 0);
        }
        assert_eq!(send(&policy, "/", None).await.0, 429);
        assert_eq!(send(&policy, "/", Some("Bearer x")).await.0, 0);
    }
}
