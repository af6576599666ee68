//! One access-log line per request, written by a background thread so the request path never
//! blocks on stdout.

use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use keygate_policy::RequestLog;
use serde::Serialize;

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

/// The JSON form of one line, serialized straight into the output (no intermediate tree).
#[derive(Serialize)]
struct JsonLine<'a> {
    timestamp: String,
    level: &'static str,
    message: &'static str,
    request_id: &'a str,
    client_ip: IpAddr,
    method: &'a str,
    path: &'a str,
    status: u16,
    duration_ms: f64,
    rules: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'static str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    log: &'a [serde_json::Value],
    #[serde(skip_serializing_if = "Option::is_none")]
    ai: Option<AiLine<'a>>,
}

#[derive(Serialize)]
struct AiLine<'a> {
    provider: &'a str,
    model: &'a str,
    attempts: u32,
    input_tokens: u64,
    output_tokens: u64,
    time_to_first_token_ms: Option<f64>,
}

impl AccessRecord {
    fn write_json(&self, out: &mut impl Write) -> std::io::Result<()> {
        let line = JsonLine {
            timestamp: chrono::DateTime::<chrono::Utc>::from(self.time)
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            level: "INFO",
            message: "request",
            request_id: &self.request_id,
            client_ip: self.client_ip,
            method: &self.method,
            path: &self.path,
            status: self.status,
            duration_ms: self.duration.as_secs_f64() * 1000.0,
            rules: self.log.matched_rules.iter().map(|r| &**r).collect(),
            action: self.log.terminated_by,
            log: &self.log.metadata,
            ai: self.log.ai.as_ref().map(|ai| AiLine {
                provider: &ai.provider,
                model: &ai.model,
                attempts: ai.attempts,
                input_tokens: ai.usage.input_tokens.load(Ordering::Relaxed),
                output_tokens: ai.usage.output_tokens.load(Ordering::Relaxed),
                time_to_first_token_ms: ai.time_to_first_token.map(|d| d.as_secs_f64() * 1000.0),
            }),
        };
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")
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
    pub fn start(format: LogFormat) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel::<AccessRecord>();
        std::thread::Builder::new()
            .name("keygate-access-log".into())
            .spawn(move || {
                // Not `stdout().lock()`: event logs (tracing) write to stdout too.
                let mut out = std::io::BufWriter::new(std::io::stdout());
                while let Ok(record) = receiver.recv() {
                    let mut next = Some(record);
                    while let Some(record) = next {
                        let _ = match format {
                            LogFormat::Json => record.write_json(&mut out),
                            LogFormat::Pretty => writeln!(out, "{}", record.to_pretty()),
                        };
                        next = receiver.try_recv().ok();
                    }
                    let _ = out.flush();
                }
            })?;
        Ok(Self { sender })
    }

    /// Queues one line.
    pub fn write(&self, record: AccessRecord) {
        let _ = self.sender.send(record);
    }
}
