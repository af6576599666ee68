//! One access-log line per request, written by a background thread so the request path never
//! blocks on stdout.

use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use keygate_policy::RequestLog;

use crate::config::LogFormat;

/// Everything one line reports.
pub struct AccessRecord {
    pub time: SystemTime,
    pub request_id: String,
    pub client_ip: IpAddr,
    pub method: http::Method,
    pub path: String,
    pub status: u16,
    pub duration: Duration,
    pub log: RequestLog,
    /// The request's trace when traces are exported (`--otlp-endpoint`).
    pub trace: Option<crate::otlp::Traced>,
}

impl AccessRecord {
    /// Appends the line as one JSON object. The keys are constants written as they are; only
    /// values go through the JSON string escaper.
    fn write_json(&self, out: &mut Vec<u8>) -> std::io::Result<()> {
        out.extend_from_slice(br#"{"timestamp":""#);
        push_timestamp(out, self.time);
        out.extend_from_slice(br#"","level":"INFO","message":"request","request_id":"#);
        json_str(out, &self.request_id)?;
        out.extend_from_slice(br#","client_ip":""#);
        crate::client_ip::push_text(out, self.client_ip);
        out.extend_from_slice(br#"","method":"#);
        json_str(out, self.method.as_str())?;
        out.extend_from_slice(br#","path":"#);
        json_str(out, &self.path)?;
        out.extend_from_slice(br#","status":"#);
        push_int(out, self.status);
        out.extend_from_slice(br#","duration_ms":"#);
        push_millis(out, self.duration);
        out.extend_from_slice(br#","rules":["#);
        for (index, rule) in self.log.matched_rules.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            json_str(out, rule)?;
        }
        out.push(b']');
        if let Some(action) = self.log.terminated_by {
            out.extend_from_slice(br#","action":"#);
            json_str(out, action)?;
        }
        if let Some(error) = &self.log.error {
            out.extend_from_slice(br#","error":"#);
            json_str(out, error)?;
        }
        if let Some(key) = &self.log.access_key {
            out.extend_from_slice(br#","access_key":"#);
            json_str(out, key)?;
        }
        if !self.log.metadata.is_empty() {
            out.extend_from_slice(br#","log":"#);
            serde_json::to_writer(&mut *out, &self.log.metadata)?;
        }
        if let Some(ai) = &self.log.ai {
            out.extend_from_slice(br#","ai":{"provider":"#);
            json_str(out, &ai.provider)?;
            out.extend_from_slice(br#","model":"#);
            json_str(out, &ai.model)?;
            out.extend_from_slice(br#","attempts":"#);
            push_int(out, ai.attempts);
            out.extend_from_slice(br#","input_tokens":"#);
            push_int(out, ai.usage.input_tokens.load(Ordering::Relaxed));
            out.extend_from_slice(br#","output_tokens":"#);
            push_int(out, ai.usage.output_tokens.load(Ordering::Relaxed));
            out.extend_from_slice(if ai.usage.estimated.load(Ordering::Relaxed) {
                br#","usage_source":"estimated""#
            } else {
                br#","usage_source":"provider""#
            });
            out.extend_from_slice(br#","time_to_first_token_ms":"#);
            match ai.time_to_first_token {
                Some(ttft) => push_millis(out, ttft),
                None => out.extend_from_slice(b"null"),
            }
            if let Some(micros) = crate::settle::cost_micros(ai) {
                // Exact decimal USD from the integer micro-USD the ledger stores.
                out.extend_from_slice(br#","cost_usd":"#);
                push_int(out, micros / 1_000_000);
                out.push(b'.');
                push_digits(out, (micros % 1_000_000) as u32, 6);
            }
            if let Some(broken) = ai.usage.broken.get() {
                out.extend_from_slice(br#","error":"#);
                json_str(out, &broken.cause.to_string())?;
                out.extend_from_slice(br#","events":"#);
                push_int(out, broken.events);
            }
            out.push(b'}');
        }
        out.extend_from_slice(b"}\n");
        Ok(())
    }

    fn to_pretty(&self) -> String {
        let mut line = format!(
            "{} {} {} {} {} {} {:.2}ms",
            chrono::DateTime::<chrono::Utc>::from(self.time).format("%H:%M:%S%.3f"),
            self.request_id,
            self.client_ip,
            self.method,
            self.path,
            self.status,
            self.duration.as_secs_f64() * 1000.0
        );
        if let Some(action) = self.log.terminated_by {
            line.push_str(&format!(" action={action}"));
        }
        if let Some(error) = &self.log.error {
            line.push_str(&format!(" error={error:?}"));
        }
        if let Some(key) = &self.log.access_key {
            line.push_str(&format!(" access_key={key}"));
        }
        if let Some(ai) = &self.log.ai {
            line.push_str(&format!(
                " ai={}/{} attempts={} tokens={}/{}{}",
                ai.provider,
                ai.model,
                ai.attempts,
                ai.usage.input_tokens.load(Ordering::Relaxed),
                ai.usage.output_tokens.load(Ordering::Relaxed),
                if ai.usage.estimated.load(Ordering::Relaxed) {
                    " (estimated)"
                } else {
                    ""
                }
            ));
            if let Some(broken) = ai.usage.broken.get() {
                line.push_str(&format!(
                    " events={} error=\"{}\"",
                    broken.events, broken.cause
                ));
            }
        }
        for metadata in &self.log.metadata {
            line.push_str(&format!(" log={metadata}"));
        }
        line
    }
}

/// How long the writer sleeps after writing a batch. Records sent meanwhile wake nobody: under load
/// the writer costs one wake-up and one `write` per interval instead of one per request.
const BATCH_INTERVAL: Duration = Duration::from_millis(20);

// Lines are the traffic; `Flush` is sent once, at shutdown. Boxing lines to even out the variants
// would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Message {
    Line(AccessRecord),
    /// Write everything queued before this, flush stdout, then acknowledge.
    Flush(mpsc::SyncSender<()>),
}

/// Appends an integer.
fn push_int(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Appends a duration in milliseconds with microsecond precision, e.g. `2.437`.
fn push_millis(out: &mut Vec<u8>, duration: Duration) {
    let micros = duration.as_micros();
    push_int(out, micros / 1000);
    out.push(b'.');
    push_digits(out, (micros % 1000) as u32, 3);
}

/// Appends `value` as exactly `width` decimal digits, zero-padded.
fn push_digits(out: &mut Vec<u8>, mut value: u32, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for digit in out[start..].iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Appends an RFC 3339 UTC time with microseconds, e.g. `2026-11-27T15:30:29.223222Z`
/// (what chrono's formatter writes, without parsing a format string per line).
fn push_timestamp(out: &mut Vec<u8>, time: SystemTime) {
    use chrono::{Datelike, Timelike};
    let time = chrono::DateTime::<chrono::Utc>::from(time);
    push_digits(out, time.year().clamp(0, 9999) as u32, 4);
    for (separator, value) in [
        (b'-', time.month()),
        (b'-', time.day()),
        (b'T', time.hour()),
        (b':', time.minute()),
        (b':', time.second()),
    ] {
        out.push(separator);
        push_digits(out, value, 2);
    }
    out.push(b'.');
    push_digits(out, time.timestamp_subsec_micros() % 1_000_000, 6);
    out.push(b'Z');
}

/// Appends `value` as a JSON string.
fn json_str(out: &mut Vec<u8>, value: &str) -> std::io::Result<()> {
    Ok(serde_json::to_writer(out, value)?)
}

/// Sends records to the writer thread.
#[derive(Clone)]
pub struct AccessLog {
    sender: mpsc::Sender<Message>,
}

impl AccessLog {
    /// Starts the writer thread.
    pub fn start(format: LogFormat) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel::<Message>();
        std::thread::Builder::new()
            .name("kg-access-log".into())
            .spawn(move || {
                // Not `stdout().lock()`: event logs (tracing) write to stdout too.
                let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
                let mut line = Vec::with_capacity(512);
                // Blocks while idle, so the first line after a quiet spell is written at once.
                while let Ok(first) = receiver.recv() {
                    let mut acks = Vec::new();
                    for message in std::iter::once(first).chain(receiver.try_iter()) {
                        match message {
                            Message::Line(record) => {
                                // Whole lines only reach stdout, so event logs never land
                                // in the middle of one.
                                line.clear();
                                let _ = match format {
                                    LogFormat::Json => record.write_json(&mut line),
                                    LogFormat::Pretty => writeln!(line, "{}", record.to_pretty()),
                                };
                                let _ = out.write_all(&line);
                            }
                            Message::Flush(ack) => acks.push(ack),
                        }
                    }
                    let _ = out.flush();
                    for ack in acks {
                        let _ = ack.send(());
                    }
                    std::thread::sleep(BATCH_INTERVAL);
                }
            })?;
        Ok(Self { sender })
    }

    /// Queues one line.
    pub fn write(&self, record: AccessRecord) {
        let _ = self.sender.send(Message::Line(record));
    }

    /// Blocks until every line queued so far is written to stdout (used at shutdown).
    pub fn flush(&self) {
        let (ack, done) = mpsc::sync_channel(1);
        if self.sender.send(Message::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(Duration::from_secs(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_policy::{AiRecord, BrokenStream, StreamFailure, Usage};
    use std::sync::Arc;

    fn record() -> AccessRecord {
        AccessRecord {
            time: SystemTime::UNIX_EPOCH + Duration::from_micros(1_795_000_000_123_456),
            request_id: "req-1".into(),
            client_ip: "::1".parse().unwrap(),
            method: http::Method::POST,
            path: "/v1/\"quoted\"\\path\u{7}".into(),
            status: 200,
            duration: Duration::from_micros(2_437),
            log: RequestLog::default(),
            trace: None,
        }
    }

    fn json(record: &AccessRecord) -> serde_json::Value {
        let mut line = Vec::new();
        record.write_json(&mut line).unwrap();
        assert_eq!(line.last(), Some(&b'\n'));
        serde_json::from_slice(&line).unwrap()
    }

    #[test]
    fn a_plain_line_is_valid_json_with_escaped_values() {
        let line = json(&record());
        assert_eq!(line["timestamp"], "2026-11-18T11:06:40.123456Z");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "request");
        assert_eq!(line["request_id"], "req-1");
        assert_eq!(line["client_ip"], "::1");
        assert_eq!(line["path"], "/v1/\"quoted\"\\path\u{7}");
        assert_eq!(line["status"], 200);
        assert_eq!(line["duration_ms"], 2.437);
        assert_eq!(line["rules"], serde_json::json!([]));
        assert!(line.get("action").is_none() && line.get("log").is_none());
        assert!(line.get("ai").is_none());
    }

    #[test]
    fn numbers_and_times_are_zero_padded() {
        let mut out = Vec::new();
        push_millis(&mut out, Duration::from_micros(1_000_005));
        out.push(b' ');
        push_millis(&mut out, Duration::from_micros(42));
        out.push(b' ');
        push_timestamp(&mut out, SystemTime::UNIX_EPOCH + Duration::from_micros(7));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1000.005 0.042 1970-01-01T00:00:00.000007Z"
        );
    }

    #[test]
    fn rules_action_log_and_ai_fields() {
        let mut record = record();
        record.log.matched_rules = vec!["auth".into(), "on_http_request[1]".into()];
        record.log.terminated_by = Some("ai-gateway");
        record.log.metadata = vec![serde_json::json!({"team": "a\"b"})];
        let usage = Usage::default();
        usage.input_tokens.store(12, Ordering::Relaxed);
        usage.output_tokens.store(34, Ordering::Relaxed);
        record.log.ai = Some(AiRecord {
            provider: "openai".into(),
            model: "gpt-4o".into(),
            attempts: 2,
            time_to_first_token: None,
            usage: Arc::new(usage),
            ..AiRecord::default()
        });
        let line = json(&record);
        assert_eq!(
            line["rules"],
            serde_json::json!(["auth", "on_http_request[1]"])
        );
        assert_eq!(line["action"], "ai-gateway");
        assert_eq!(line["log"], serde_json::json!([{"team": "a\"b"}]));
        assert!(line.get("error").is_none());
        assert_eq!(
            line["ai"],
            serde_json::json!({"provider": "openai", "model": "gpt-4o", "attempts": 2,
                "input_tokens": 12, "output_tokens": 34, "usage_source": "provider",
                "time_to_first_token_ms": null})
        );
    }

    #[test]
    fn a_broken_stream_adds_its_cause_and_events() {
        let mut record = record();
        let usage = Usage::default();
        usage.input_tokens.store(9, Ordering::Relaxed);
        let broken = BrokenStream {
            cause: StreamFailure::Reset,
            events: 3,
        };
        usage.broken.set(broken).unwrap();
        record.log.ai = Some(AiRecord {
            provider: "openai".into(),
            model: "gpt-4o".into(),
            attempts: 1,
            time_to_first_token: Some(Duration::from_millis(2)),
            usage: Arc::new(usage),
            ..AiRecord::default()
        });
        let ai = &json(&record)["ai"];
        assert_eq!(ai["error"], "upstream stream ended early: connection reset");
        assert_eq!(
            (ai["events"].as_u64(), ai["input_tokens"].as_u64()),
            (Some(3), Some(9))
        );
        assert!(record
            .to_pretty()
            .ends_with(" events=3 error=\"upstream stream ended early: connection reset\""));
    }

    #[test]
    fn a_priced_model_adds_the_cost() {
        let mut record = record();
        let usage = Usage::default();
        usage.input_tokens.store(1_000, Ordering::Relaxed);
        usage.output_tokens.store(500, Ordering::Relaxed);
        record.log.ai = Some(AiRecord {
            pricing: Some(keygate_ai::Pricing {
                input: 2.5,
                output: 10.0,
            }),
            usage: Arc::new(usage),
            ..AiRecord::default()
        });
        let mut line = Vec::new();
        record.write_json(&mut line).unwrap();
        let line = String::from_utf8(line).unwrap();
        assert!(line.contains(r#""cost_usd":0.007500"#), "{line}");
    }

    #[test]
    fn the_access_key_id_is_logged() {
        let mut record = record();
        record.log.access_key = Some("aigk_01ABC".into());
        assert_eq!(json(&record)["access_key"], "aigk_01ABC");
        assert!(record.to_pretty().contains(" access_key=aigk_01ABC"));
    }

    #[test]
    fn the_upstream_failure_is_logged() {
        let mut record = record();
        record.log.error = Some("TLS handshake with h:1 failed: \"x\"".into());
        assert_eq!(
            json(&record)["error"],
            "TLS handshake with h:1 failed: \"x\""
        );
    }
}
