//! One access-log line per request, written by a background thread so the request path never
//! blocks on stdout.

use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use keygate_policy::RequestLog;
use serde_json::{json, Map, Value};

use crate::config::LogFormat;

/// Everything one line reports.
pub struct AccessRecord {
    pub time: SystemTime,
    pub request_id: String,
    pub client_ip: IpAddr,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub duration: Duration,
    pub log: RequestLog,
}

impl AccessRecord {
    fn to_json(&self) -> Value {
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            json!(chrono::DateTime::<chrono::Utc>::from(self.time)
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        line.insert("level".into(), json!("INFO"));
        line.insert("message".into(), json!("request"));
        line.insert("request_id".into(), json!(self.request_id));
        line.insert("client_ip".into(), json!(self.client_ip.to_string()));
        line.insert("method".into(), json!(self.method));
        line.insert("path".into(), json!(self.path));
        line.insert("status".into(), json!(self.status));
        line.insert(
            "duration_ms".into(),
            json!(self.duration.as_secs_f64() * 1000.0),
        );
        let rules: Vec<&str> = self.log.matched_rules.iter().map(|r| &**r).collect();
        line.insert("rules".into(), json!(rules));
        if let Some(action) = self.log.terminated_by {
            line.insert("action".into(), json!(action));
        }
        if !self.log.metadata.is_empty() {
            line.insert("log".into(), Value::Array(self.log.metadata.clone()));
        }
        if let Some(ai) = &self.log.ai {
            line.insert(
                "ai".into(),
                json!({
                    "provider": ai.provider,
                    "model": ai.model,
                    "attempts": ai.attempts,
                    "input_tokens": ai.usage.input_tokens.load(Ordering::Relaxed),
                    "output_tokens": ai.usage.output_tokens.load(Ordering::Relaxed),
                    "time_to_first_token_ms": ai.time_to_first_token.map(|d| d.as_secs_f64() * 1000.0),
                }),
            );
        }
        Value::Object(line)
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
        if let Some(ai) = &self.log.ai {
            line.push_str(&format!(
                " ai={}/{} attempts={} tokens={}/{}",
                ai.provider,
                ai.model,
                ai.attempts,
                ai.usage.input_tokens.load(Ordering::Relaxed),
                ai.usage.output_tokens.load(Ordering::Relaxed)
            ));
        }
        for metadata in &self.log.metadata {
            line.push_str(&format!(" log={metadata}"));
        }
        line
    }
}

/// Sends records to the writer thread.
#[derive(Clone)]
pub struct AccessLog {
    sender: mpsc::Sender<AccessRecord>,
}

impl AccessLog {
    /// Starts the writer thread.
    pub fn start(format: LogFormat) -> Self {
        let (sender, receiver) = mpsc::channel::<AccessRecord>();
        std::thread::Builder::new()
            .name("keygate-access-log".into())
            .spawn(move || {
                // Not `stdout().lock()`: event logs (tracing) write to stdout too.
                let mut out = std::io::BufWriter::new(std::io::stdout());
                while let Ok(record) = receiver.recv() {
                    let mut next = Some(record);
                    while let Some(record) = next {
                        let line = match format {
                            LogFormat::Json => record.to_json().to_string(),
                            LogFormat::Pretty => record.to_pretty(),
                        };
                        let _ = writeln!(out, "{line}");
                        next = receiver.try_recv().ok();
                    }
                    let _ = out.flush();
                }
            })
            .expect("spawning the access-log thread");
        Self { sender }
    }

    /// Queues one line.
    pub fn write(&self, record: AccessRecord) {
        let _ = self.sender.send(record);
    }
}
