//! The spans of one request, taken from its access record once the response has ended, and
//! their OTLP/HTTP JSON encoding (the protobuf JSON mapping: ids in hex, times and 64-bit
//! integers as strings, enums as numbers).
//!
//! One server span for the request (HTTP attributes; for an `ai-gateway` request also the GenAI
//! ones: provider, models, tokens, time to first token) and one client span per upstream
//! attempt, its child. Never a key, a token, a prompt or a body: only ids, names, the attempt's
//! URL without its query, statuses, counts and times.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keygate_ai_gateway::{status_text, AttemptEnd, ModelTried, RequestMade, TraceContext};

use crate::access_log::AccessRecord;

/// `,{"key":"NAME","value":{"stringValue":"`: an attribute's start, one constant (names are
/// constants, never escaped).
macro_rules! string_key {
    ($name:literal) => {
        concat!(r#",{"key":""#, $name, r#"","value":{"stringValue":""#).as_bytes()
    };
}

/// The start of an `intValue` attribute (a string in the JSON mapping of int64).
macro_rules! int_key {
    ($name:literal) => {
        concat!(r#",{"key":""#, $name, r#"","value":{"intValue":""#).as_bytes()
    };
}

/// The start of a `doubleValue` attribute.
macro_rules! double_key {
    ($name:literal) => {
        concat!(r#",{"key":""#, $name, r#"","value":{"doubleValue":"#).as_bytes()
    };
}

/// A traced request's context and when it arrived (its attempts' times are counted from it).
#[derive(Debug, Clone, Copy)]
pub struct Traced {
    pub context: TraceContext,
    pub arrival: Instant,
}

/// What the spans of one request are made of.
pub struct RequestSpans {
    context: TraceContext,
    arrival: Instant,
    time: SystemTime,
    duration: Duration,
    method: http::Method,
    path: String,
    status: u16,
    request_id: String,
    client_ip: IpAddr,
    /// The failure behind a gateway error, or why a stream broke off.
    error: Option<String>,
    ai: Option<AiSummary>,
    /// Moved out of the record (the access log does not read them).
    attempts: Vec<ModelTried>,
}

/// What an `ai-gateway` request used.
struct AiSummary {
    input_tokens: u64,
    output_tokens: u64,
    estimated: bool,
    time_to_first_token: Option<Duration>,
    attempts: u32,
    broken: bool,
}

const SPAN_KIND_SERVER: u8 = 2;
const SPAN_KIND_CLIENT: u8 = 3;
const STATUS_ERROR: u8 = 2;

impl RequestSpans {
    /// The spans of `record`, whose body has ended (its token counts are final).
    pub fn new(traced: Traced, record: &mut AccessRecord) -> RequestSpans {
        let log = &mut record.log;
        let broken = log.ai.as_ref().and_then(|ai| ai.usage.broken.get());
        let error = match broken {
            Some(broken) => Some(broken.cause.to_string()),
            None => log.error.clone(),
        };
        let ai = log.ai.as_ref().map(|ai| AiSummary {
            input_tokens: ai.usage.input_tokens.load(Ordering::Relaxed),
            output_tokens: ai.usage.output_tokens.load(Ordering::Relaxed),
            estimated: ai.usage.estimated.load(Ordering::Relaxed),
            time_to_first_token: ai.time_to_first_token,
            attempts: ai.attempts,
            broken: broken.is_some(),
        });
        RequestSpans {
            context: traced.context,
            arrival: traced.arrival,
            time: record.time,
            duration: record.duration,
            method: record.method.clone(),
            path: record.path.clone(),
            status: record.status,
            request_id: record.request_id.clone(),
            client_ip: record.client_ip,
            error,
            ai,
            attempts: std::mem::take(&mut log.attempts),
        }
    }

    /// The request's span and one per upstream attempt.
    pub fn count(&self) -> usize {
        1 + self.made().count()
    }

    /// The attempts that sent a request (a candidate without a key sent none), with their model.
    fn made(&self) -> impl Iterator<Item = (&ModelTried, &RequestMade)> {
        self.attempts.iter().flat_map(|model| {
            model
                .requests
                .iter()
                .filter(|made| made.span_id.is_some())
                .map(move |made| (model, made))
        })
    }

    /// Appends the spans, comma-separated.
    fn write_json(&self, out: &mut Vec<u8>) {
        let start = unix_nanos(self.time);
        let end = start.saturating_add(nanos(self.duration));
        let trace_id = self.context.trace_id.hex();
        let span_id = self.context.span_id.hex();
        let operation = operation_name(&self.path);
        // The request's span.
        out.extend_from_slice(br#"{"traceId":""#);
        out.extend_from_slice(&trace_id);
        out.extend_from_slice(br#"","spanId":""#);
        out.extend_from_slice(&span_id);
        if let Some(parent) = self.context.parent {
            out.extend_from_slice(br#"","parentSpanId":""#);
            out.extend_from_slice(&parent.hex());
        }
        out.extend_from_slice(br#"","name":""#);
        out.extend_from_slice(self.method.as_str().as_bytes());
        if self.ai.is_some() {
            // An AI surface's path (a fixed route, not an unbounded set of names).
            out.push(b' ');
            push_escaped(out, &self.path);
        }
        push_kind_and_times(out, SPAN_KIND_SERVER, start, end);
        let mut attributes = Attributes::open(out);
        attributes.plain(string_key!("http.request.method"), self.method.as_str());
        attributes.string(string_key!("url.path"), &self.path);
        if self.status != 0 {
            attributes.int(
                int_key!("http.response.status_code"),
                u64::from(self.status),
            );
        }
        attributes.ip(string_key!("client.address"), self.client_ip);
        attributes.string(string_key!("keygate.request_id"), &self.request_id);
        let answered = self.made().last();
        if let Some(ai) = &self.ai {
            attributes.plain(string_key!("gen_ai.operation.name"), operation);
            if let Some((model, _)) = answered {
                attributes.string(string_key!("gen_ai.provider.name"), &model.provider);
                attributes.string(string_key!("gen_ai.system"), &model.provider);
            }
            if let Some(first) = self.attempts.first() {
                attributes.string(string_key!("gen_ai.request.model"), &first.model);
            }
            if let Some((model, AttemptEnd::Success)) = answered.map(|(m, r)| (m, &r.end)) {
                attributes.string(string_key!("gen_ai.response.model"), &model.model);
            }
            attributes.int(int_key!("gen_ai.usage.input_tokens"), ai.input_tokens);
            attributes.int(int_key!("gen_ai.usage.output_tokens"), ai.output_tokens);
            if let Some(ttft) = ai.time_to_first_token {
                attributes.seconds(double_key!("gen_ai.server.time_to_first_token"), ttft);
            }
            attributes.int(int_key!("keygate.ai.attempts"), u64::from(ai.attempts));
            let source = if ai.estimated {
                "estimated"
            } else {
                "provider"
            };
            attributes.plain(string_key!("keygate.ai.usage_source"), source);
        }
        let failed = self.status >= 500 || self.status == 0;
        let broken = self.ai.as_ref().is_some_and(|ai| ai.broken);
        if failed {
            let kind = match self.status {
                0 => "connection_closed".to_owned(),
                status => status.to_string(),
            };
            attributes.string(string_key!("error.type"), &kind);
        } else if broken {
            attributes.plain(string_key!("error.type"), "stream_error");
        }
        attributes.close();
        if failed || broken {
            push_error_status(out, self.error.as_deref());
        }
        out.push(b'}');
        // One span per attempt.
        for (model, made) in self.made() {
            let Some(attempt_id) = made.span_id else {
                continue;
            };
            let offset = made.started.saturating_duration_since(self.arrival);
            let attempt_start = start.saturating_add(nanos(offset));
            let success = made.end == AttemptEnd::Success;
            // The answer streams until the response ends.
            let attempt_end = if success {
                end.max(attempt_start)
            } else {
                attempt_start.saturating_add(nanos(made.total))
            };
            out.extend_from_slice(br#",{"traceId":""#);
            out.extend_from_slice(&trace_id);
            out.extend_from_slice(br#"","spanId":""#);
            out.extend_from_slice(&attempt_id.hex());
            out.extend_from_slice(br#"","parentSpanId":""#);
            out.extend_from_slice(&span_id);
            out.extend_from_slice(br#"","name":""#);
            out.extend_from_slice(operation.as_bytes());
            out.push(b' ');
            push_escaped(out, &model.model);
            push_kind_and_times(out, SPAN_KIND_CLIENT, attempt_start, attempt_end);
            let mut attributes = Attributes::open(out);
            attributes.plain(string_key!("gen_ai.operation.name"), operation);
            attributes.string(string_key!("gen_ai.provider.name"), &model.provider);
            attributes.string(string_key!("gen_ai.system"), &model.provider);
            attributes.string(string_key!("gen_ai.request.model"), &model.model);
            attributes.plain(string_key!("http.request.method"), "POST");
            attributes.string(string_key!("url.full"), &made.url);
            if made.status_code != 0 {
                attributes.int(
                    int_key!("http.response.status_code"),
                    u64::from(made.status_code),
                );
            }
            if success {
                attributes.string(string_key!("gen_ai.response.model"), &model.model);
                if let Some(ai) = &self.ai {
                    attributes.int(int_key!("gen_ai.usage.input_tokens"), ai.input_tokens);
                    attributes.int(int_key!("gen_ai.usage.output_tokens"), ai.output_tokens);
                }
                if let Some(ttfb) = made.time_to_first_byte {
                    attributes.seconds(double_key!("gen_ai.server.time_to_first_token"), ttfb);
                }
            }
            let failure = match &made.end {
                AttemptEnd::Success => None,
                AttemptEnd::Status(code) => Some((code.to_string(), status_text(*code))),
                AttemptEnd::Timeout => Some(("timeout".into(), "per-request timeout".into())),
                AttemptEnd::Transport(error) => Some(("transport".into(), error.clone())),
                AttemptEnd::NoKey => Some(("no_key".into(), "no API key".into())),
            };
            if let Some((kind, _)) = &failure {
                attributes.string(string_key!("error.type"), kind);
            }
            attributes.close();
            if let Some((_, message)) = &failure {
                push_error_status(out, Some(message));
            }
            out.push(b'}');
        }
    }
}

/// Appends one OTLP `ExportTraceServiceRequest` holding the spans of `requests`.
pub fn write_export(out: &mut Vec<u8>, requests: &[RequestSpans]) {
    out.extend_from_slice(
        concat!(
            r#"{"resourceSpans":[{"resource":{"attributes":["#,
            r#"{"key":"service.name","value":{"stringValue":"keygate"}},"#,
            r#"{"key":"service.version","value":{"stringValue":""#,
            env!("CARGO_PKG_VERSION"),
            r#""}}]},"scopeSpans":[{"scope":{"name":"keygate","version":""#,
            env!("CARGO_PKG_VERSION"),
            r#""},"spans":["#
        )
        .as_bytes(),
    );
    for (index, request) in requests.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        request.write_json(out);
    }
    out.extend_from_slice(b"]}]}]}");
}

/// `gen_ai.operation.name` for the client's surface.
fn operation_name(path: &str) -> &'static str {
    match path.strip_suffix('/').unwrap_or(path) {
        "/v1/completions" => "text_completion",
        "/v1/embeddings" => "embeddings",
        "/v1/messages/count_tokens" => "count_tokens",
        _ => "chat",
    }
}

/// Closes the name and appends kind, start and end time, up to the attributes.
fn push_kind_and_times(out: &mut Vec<u8>, kind: u8, start: u64, end: u64) {
    out.extend_from_slice(br#"","kind":"#);
    push_int(out, kind);
    out.extend_from_slice(br#","startTimeUnixNano":""#);
    push_int(out, start);
    out.extend_from_slice(br#"","endTimeUnixNano":""#);
    push_int(out, end);
    out.push(b'"');
}

fn push_error_status(out: &mut Vec<u8>, message: Option<&str>) {
    out.extend_from_slice(br#","status":{"code":"#);
    push_int(out, STATUS_ERROR);
    if let Some(message) = message {
        out.extend_from_slice(br#","message":""#);
        push_escaped(out, message);
        out.push(b'"');
    }
    out.push(b'}');
}

/// A span's `attributes` array being written.
struct Attributes<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Attributes<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        out.extend_from_slice(br#","attributes":["#);
        Attributes { out, empty: true }
    }

    /// Starts an attribute with its `key!` constant (without its comma when it is the first).
    fn key(&mut self, start: &[u8]) {
        let start = if self.empty { &start[1..] } else { start };
        self.empty = false;
        self.out.extend_from_slice(start);
    }

    fn string(&mut self, key: &[u8], value: &str) {
        self.key(key);
        push_escaped(self.out, value);
        self.out.extend_from_slice(b"\"}}");
    }

    /// A value that needs no escaping: a constant, or an HTTP method (a token).
    fn plain(&mut self, key: &[u8], value: &str) {
        self.key(key);
        self.out.extend_from_slice(value.as_bytes());
        self.out.extend_from_slice(b"\"}}");
    }

    fn ip(&mut self, key: &[u8], value: IpAddr) {
        self.key(key);
        crate::client_ip::push_text(self.out, value);
        self.out.extend_from_slice(b"\"}}");
    }

    fn int(&mut self, key: &[u8], value: u64) {
        self.key(key);
        push_int(self.out, value.min(i64::MAX as u64));
        self.out.extend_from_slice(b"\"}}");
    }

    /// A duration in seconds.
    fn seconds(&mut self, key: &[u8], value: Duration) {
        self.key(key);
        push_seconds(self.out, value);
        self.out.extend_from_slice(b"}}");
    }

    fn close(self) {
        self.out.push(b']');
    }
}

/// Appends seconds with microsecond precision as a JSON number (`0.001234`).
fn push_seconds(out: &mut Vec<u8>, value: Duration) {
    let micros = value.as_micros();
    push_int(out, micros / 1_000_000);
    out.push(b'.');
    let mut fraction = (micros % 1_000_000) as u32;
    let start = out.len();
    out.resize(start + 6, b'0');
    for digit in out[start..].iter_mut().rev() {
        *digit = b'0' + (fraction % 10) as u8;
        fraction /= 10;
    }
}

fn push_int(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Appends `text` JSON-escaped, without quotes.
fn push_escaped(out: &mut Vec<u8>, text: &str) {
    if !needs_escape(text.as_bytes()) {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    let mut quoted = Vec::with_capacity(text.len() + 8);
    // Writing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut quoted, text);
    out.extend_from_slice(&quoted[1..quoted.len() - 1]);
}

/// Whether `bytes` holds a control character, `"` or `\\`: eight bytes per step (SWAR: a byte
/// below `n` sets its high bit in `(v - n * 0x01..) & !v & 0x80..`; a borrow only follows a byte
/// that already matched, so "any" is exact).
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    let below = |v: u64, n: u8| v.wrapping_sub(ONES * u64::from(n)) & !v & HIGH;
    let special = |eight: &[u8]| {
        let v = u64::from_le_bytes(eight.try_into().expect("8 bytes"));
        let quote = v ^ (ONES * u64::from(b'"'));
        let backslash = v ^ (ONES * u64::from(b'\\'));
        below(v, 0x20) | below(quote, 1) | below(backslash, 1) != 0
    };
    if bytes.len() < 8 {
        let mut padded = [b'a'; 8];
        padded[..bytes.len()].copy_from_slice(bytes);
        return special(&padded);
    }
    // The last eight bytes overlap the last whole chunk instead of a byte loop for the rest.
    bytes.chunks_exact(8).any(special) || special(&bytes[bytes.len() - 8..])
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, nanos)
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use keygate_ai_gateway::{SpanId, TraceId};
    use keygate_policy::{AiRecord, RequestLog, Usage};
    use serde_json::{json, Value};

    use super::*;

    fn made(end: AttemptEnd, status: u16, span: u64, started: Instant) -> RequestMade {
        RequestMade {
            end,
            status_code: status,
            url: "https://api.openai.com/v1/chat/completions".into(),
            api_key: Some("sk-pro...7890".into()),
            response_headers: Default::default(),
            body_on_error: Some("{\"error\": \"slow down, sk-secret\"}".into()),
            time_to_first_byte: Some(Duration::from_millis(3)),
            total: Duration::from_millis(4),
            started,
            span_id: Some(SpanId(span)),
        }
    }

    fn record(arrival: Instant) -> AccessRecord {
        let usage = Usage::default();
        usage.input_tokens.store(12, Ordering::Relaxed);
        usage.output_tokens.store(34, Ordering::Relaxed);
        let log = RequestLog {
            ai: Some(AiRecord {
                provider: "openai".into(),
                model: "gpt-4o".into(),
                attempts: 2,
                time_to_first_token: Some(Duration::from_micros(7_250)),
                usage: Arc::new(usage),
                ..AiRecord::default()
            }),
            attempts: vec![ModelTried {
                provider: "openai".into(),
                model: "gpt-4o".into(),
                author: "openai".into(),
                requests: vec![
                    made(
                        AttemptEnd::Status(429),
                        429,
                        0xa1,
                        arrival + Duration::from_millis(1),
                    ),
                    made(
                        AttemptEnd::Success,
                        200,
                        0xa2,
                        arrival + Duration::from_millis(6),
                    ),
                ],
            }],
            ..RequestLog::default()
        };
        AccessRecord {
            time: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            request_id: "req-\"1\"".into(),
            client_ip: "10.0.0.7".parse().unwrap(),
            method: http::Method::POST,
            path: "/v1/chat/completions".into(),
            status: 200,
            duration: Duration::from_millis(20),
            log,
            trace: None,
        }
    }

    fn export(requests: &[RequestSpans]) -> Value {
        let mut out = Vec::new();
        write_export(&mut out, requests);
        serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
    }

    fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
        span["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| &a["value"])
    }

    #[test]
    fn a_request_and_its_attempts_in_the_otlp_json_mapping() {
        let arrival = Instant::now();
        let mut record = record(arrival);
        let traced = Traced {
            context: TraceContext {
                trace_id: TraceId(0x4bf92f3577b34da6a3ce929d0e0e4736),
                span_id: SpanId(0x51),
                parent: Some(SpanId(0x00f067aa0ba902b7)),
                sampled: true,
            },
            arrival,
        };
        let spans = RequestSpans::new(traced, &mut record);
        assert!(record.log.attempts.is_empty(), "moved, not copied");
        assert_eq!(spans.count(), 3);
        let value = export(&[spans]);
        let resource = &value["resourceSpans"][0];
        assert_eq!(
            resource["resource"]["attributes"][0],
            json!({"key": "service.name", "value": {"stringValue": "keygate"}})
        );
        let spans = resource["scopeSpans"][0]["spans"].as_array().unwrap();
        assert_eq!(spans.len(), 3);
        let server = &spans[0];
        assert_eq!(server["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(server["spanId"], "0000000000000051");
        assert_eq!(server["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(server["name"], "POST /v1/chat/completions");
        assert_eq!(server["kind"], 2);
        assert_eq!(server["startTimeUnixNano"], "1800000000000000000");
        assert_eq!(server["endTimeUnixNano"], "1800000000020000000");
        assert!(server.get("status").is_none());
        for (key, expected) in [
            ("http.request.method", json!({"stringValue": "POST"})),
            ("http.response.status_code", json!({"intValue": "200"})),
            ("keygate.request_id", json!({"stringValue": "req-\"1\""})),
            ("gen_ai.operation.name", json!({"stringValue": "chat"})),
            ("gen_ai.provider.name", json!({"stringValue": "openai"})),
            ("gen_ai.request.model", json!({"stringValue": "gpt-4o"})),
            ("gen_ai.response.model", json!({"stringValue": "gpt-4o"})),
            ("gen_ai.usage.input_tokens", json!({"intValue": "12"})),
            ("gen_ai.usage.output_tokens", json!({"intValue": "34"})),
            (
                "gen_ai.server.time_to_first_token",
                json!({"doubleValue": 0.00725}),
            ),
            ("keygate.ai.attempts", json!({"intValue": "2"})),
        ] {
            assert_eq!(attribute(server, key), Some(&expected), "{key}");
        }
        let (failed, answered) = (&spans[1], &spans[2]);
        for attempt in [failed, answered] {
            assert_eq!(attempt["traceId"], server["traceId"]);
            assert_eq!(attempt["parentSpanId"], server["spanId"]);
            assert_eq!(attempt["kind"], 3);
            assert_eq!(attempt["name"], "chat gpt-4o");
            assert_eq!(
                attribute(attempt, "url.full"),
                Some(&json!({"stringValue": "https://api.openai.com/v1/chat/completions"}))
            );
        }
        assert_eq!(failed["spanId"], "00000000000000a1");
        assert_eq!(failed["startTimeUnixNano"], "1800000000001000000");
        assert_eq!(failed["endTimeUnixNano"], "1800000000005000000");
        assert_eq!(
            failed["status"],
            json!({"code": 2, "message": "429 Too Many Requests"})
        );
        assert_eq!(
            attribute(failed, "error.type"),
            Some(&json!({"stringValue": "429"}))
        );
        assert!(attribute(failed, "gen_ai.usage.input_tokens").is_none());
        // The answer streams until the response ends.
        assert_eq!(answered["startTimeUnixNano"], "1800000000006000000");
        assert_eq!(answered["endTimeUnixNano"], "1800000000020000000");
        assert!(answered.get("status").is_none());
        assert_eq!(
            attribute(answered, "gen_ai.usage.output_tokens"),
            Some(&json!({"intValue": "34"}))
        );
        assert_eq!(
            attribute(answered, "gen_ai.server.time_to_first_token"),
            Some(&json!({"doubleValue": 0.003}))
        );
        // Keys (even redacted) and error bodies stay home.
        let text = value.to_string();
        assert!(!text.contains("sk-"), "{text}");
    }

    #[test]
    fn a_plain_request_in_a_new_trace_has_no_parent_and_errors_are_marked() {
        let arrival = Instant::now();
        let mut record = record(arrival);
        record.log = RequestLog {
            error: Some("upstream unreachable: connection refused".into()),
            ..RequestLog::default()
        };
        record.status = 502;
        record.method = http::Method::GET;
        record.path = "/some/thing/42".into();
        let traced = Traced {
            context: TraceContext {
                trace_id: TraceId(1),
                span_id: SpanId(2),
                parent: None,
                sampled: true,
            },
            arrival,
        };
        let spans = RequestSpans::new(traced, &mut record);
        assert_eq!(spans.count(), 1);
        let value = export(&[spans]);
        let server = &value["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert!(server.get("parentSpanId").is_none());
        assert_eq!(server["traceId"], "00000000000000000000000000000001");
        assert_eq!(server["name"], "GET");
        assert_eq!(
            server["status"],
            json!({"code": 2, "message": "upstream unreachable: connection refused"})
        );
        assert_eq!(
            attribute(server, "error.type"),
            Some(&json!({"stringValue": "502"}))
        );
        assert!(attribute(server, "gen_ai.operation.name").is_none());
    }

    #[test]
    fn seconds_keep_microseconds() {
        let mut out = Vec::new();
        push_seconds(&mut out, Duration::from_micros(1_000_005));
        out.push(b' ');
        push_seconds(&mut out, Duration::from_millis(250));
        assert_eq!(out, b"1.000005 0.250000");
        let mut out = Vec::new();
        push_escaped(&mut out, "a\"b\\c\u{1}");
        assert_eq!(out, br#"a\"b\\c\u0001"#);
        for special in ["\"", "\\", "\n", "\u{1f}"] {
            for at in 0..20 {
                let text = format!("{}{special}{}", "a".repeat(at), "é".repeat(3));
                assert!(needs_escape(text.as_bytes()), "{text:?}");
            }
        }
        let plain = "https://api.openai.com/v1/chat/completions ~!#$%&'()*+,-./0:;<=>?@[]^_`{|}é";
        assert!(!needs_escape(plain.as_bytes()));
    }
}
