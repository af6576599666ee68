//! The two text formats `/metrics` answers in, chosen by the scraper's `Accept` header:
//! OpenMetrics 1.0.0, which prometheus-client writes, and the Prometheus text format 0.0.4,
//! converted from it. Without an `Accept` that prefers OpenMetrics the answer is 0.0.4, which
//! every scraper and script reads.
//!
//! What the conversion changes (the rest of a line is the same in both formats):
//!
//! | OpenMetrics | 0.0.4 |
//! |---|---|
//! | `# TYPE x counter`, `# HELP x` with samples `x_total` | `# TYPE x_total counter`, `# HELP x_total` |
//! | `x_created` samples (counters, histograms, summaries) | dropped |
//! | `# UNIT`, `# EOF`, exemplars (`... # {trace_id="..."} 1`) | dropped |
//! | `info` family `x` (samples `x_info`), `stateset`, `unknown` | `gauge` `x_info`, `gauge`, `untyped` |
//! | `gaugehistogram` | samples kept, untyped (0.0.4 has no such type) |
//! | `\"` in `# HELP` | `"` (0.0.4 escapes only `\\` and `\n` there) |
//! | timestamps in seconds | in milliseconds |

use std::fmt::Write;

/// A text exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0 (`application/openmetrics-text`).
    OpenMetrics,
    /// The Prometheus text format 0.0.4 (`text/plain`).
    Prometheus,
}

/// A format as `Accept` names it: its media type and the `version` parameters it satisfies.
struct Offer {
    kind: &'static str,
    subtype: &'static str,
    versions: &'static [&'static str],
}

impl Format {
    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    fn offer(self) -> Offer {
        match self {
            Format::OpenMetrics => Offer {
                kind: "application",
                subtype: "openmetrics-text",
                versions: &["1.0.0"],
            },
            // Text format 1.0.0 only adds quoted UTF-8 names to 0.0.4; every 0.0.4 body is one.
            Format::Prometheus => Offer {
                kind: "text",
                subtype: "plain",
                versions: &["0.0.4", "1.0.0"],
            },
        }
    }

    /// The format an `Accept` header value prefers (RFC 9110 content negotiation: each format
    /// takes the quality of the most specific range that matches it). OpenMetrics only when
    /// its quality is higher; the Prometheus text format on a tie, without a header, and when
    /// neither is acceptable (as Prometheus's own client libraries do, rather than a 406).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Prometheus;
        };
        let ranges = parse_accept(accept);
        let openmetrics = Format::OpenMetrics.offer().quality(&ranges);
        let text = Format::Prometheus.offer().quality(&ranges);
        if openmetrics > text {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }
}

/// One media range of an `Accept` header, lowercased, with its quality in thousandths.
#[derive(Debug, PartialEq)]
struct Range {
    kind: String,
    subtype: String,
    params: Vec<(String, String)>,
    quality: u16,
}

impl Offer {
    /// This offer's quality under `ranges`: that of the most specific matching range (a
    /// `version` parameter over the bare type, over `type/*`, over `*/*`; the highest among
    /// equally specific ones), 0 when none matches.
    fn quality(&self, ranges: &[Range]) -> u16 {
        let mut best: Option<(u8, u16)> = None;
        for range in ranges {
            let specificity = if range.kind == "*" && range.subtype == "*" {
                0
            } else if range.kind != self.kind {
                continue;
            } else if range.subtype == "*" {
                1
            } else if range.subtype != self.subtype || !self.satisfies(&range.params) {
                continue;
            } else if range.params.iter().any(|(name, _)| name == "version") {
                3
            } else {
                2
            };
            best = match best {
                Some((known, quality)) if known > specificity => Some((known, quality)),
                Some((known, quality)) if known == specificity => {
                    Some((known, quality.max(range.quality)))
                }
                _ => Some((specificity, range.quality)),
            };
        }
        best.map_or(0, |(_, quality)| quality)
    }

    /// Whether the body satisfies a range's parameters: a `version` it is, UTF-8 for a
    /// `charset`. Others (`escaping`: the names need none) do not restrict it.
    fn satisfies(&self, params: &[(String, String)]) -> bool {
        params.iter().all(|(name, value)| match name.as_str() {
            "version" => self.versions.contains(&value.as_str()),
            "charset" => value == "utf-8",
            _ => true,
        })
    }
}

/// The media ranges of an `Accept` value; malformed ones (no `type/subtype`, a bad `q`) are
/// left out.
fn parse_accept(accept: &str) -> Vec<Range> {
    split_outside_quotes(accept, ',')
        .into_iter()
        .filter_map(parse_range)
        .collect()
}

fn parse_range(text: &str) -> Option<Range> {
    let mut parts = split_outside_quotes(text, ';').into_iter();
    let media = parts.next()?.trim().to_ascii_lowercase();
    let (kind, subtype) = media.split_once('/')?;
    let token = |s: &str| !s.is_empty() && s.bytes().all(is_token_byte);
    if !token(kind) || !token(subtype) || (kind == "*" && subtype != "*") {
        return None;
    }
    let mut range = Range {
        kind: kind.to_owned(),
        subtype: subtype.to_owned(),
        params: Vec::new(),
        quality: 1000,
    };
    for param in parts {
        let (name, value) = param.split_once('=')?;
        let name = name.trim().to_ascii_lowercase();
        let value = unquote(value.trim())?;
        if name == "q" {
            range.quality = parse_quality(&value)?;
        } else {
            range.params.push((name, value.to_ascii_lowercase()));
        }
    }
    Some(range)
}

/// RFC 9110 `tchar`, and `*`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A token as it is, a quoted string without its quotes and escapes.
fn unquote(value: &str) -> Option<String> {
    let Some(inner) = value.strip_prefix('"') else {
        return Some(value.to_owned());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next()? } else { c });
    }
    Some(out)
}

/// A `qvalue` (`0`, `0.5`, `1.000`, ...) in thousandths.
fn parse_quality(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Splits on `separator` outside double-quoted strings (which may escape a quote).
fn split_outside_quotes(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&text[start..at]);
                start = at + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// The metadata of the family being converted, written before its first sample.
struct Family<'a> {
    name: &'a str,
    kind: &'a str,
    help: Option<&'a str>,
    written: bool,
}

impl<'a> Family<'a> {
    fn new(name: &'a str) -> Self {
        Family {
            name,
            kind: "unknown",
            help: None,
            written: false,
        }
    }

    /// The 0.0.4 name and type of the family, `None` for one 0.0.4 has no type for.
    fn prometheus(&self) -> Option<(String, &'static str)> {
        let name = self.name;
        Some(match self.kind {
            "counter" => (format!("{name}_total"), "counter"),
            "gauge" => (name.to_owned(), "gauge"),
            "histogram" => (name.to_owned(), "histogram"),
            "summary" => (name.to_owned(), "summary"),
            "info" => (format!("{name}_info"), "gauge"),
            "stateset" => (name.to_owned(), "gauge"),
            "gaugehistogram" => return None,
            _ => (name.to_owned(), "untyped"),
        })
    }

    /// Whether a sample of this family is left out of 0.0.4 (`_created`).
    fn drops(&self, sample: &str) -> bool {
        matches!(self.kind, "counter" | "histogram" | "summary")
            && sample.strip_prefix(self.name) == Some("_created")
    }

    fn write_metadata(&mut self, out: &mut String) {
        if std::mem::replace(&mut self.written, true) {
            return;
        }
        let Some((name, kind)) = self.prometheus() else {
            return;
        };
        if let Some(help) = self.help {
            // `\"` is an escape in OpenMetrics' HELP, not in 0.0.4's.
            let _ = writeln!(out, "# HELP {name} {}", help.replace("\\\"", "\""));
        }
        let _ = writeln!(out, "# TYPE {name} {kind}");
    }
}

/// Converts an OpenMetrics text exposition into the Prometheus text format 0.0.4.
pub fn to_prometheus(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut family: Option<Family<'_>> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" {
            break;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            let (keyword, name) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let rest = words.next();
            if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
                continue;
            }
            if family.as_ref().is_none_or(|f| f.name != name) {
                if let Some(mut previous) = family.take() {
                    previous.write_metadata(&mut out);
                }
                family = Some(Family::new(name));
            }
            let current = family.as_mut().expect("set above");
            match keyword {
                "HELP" => current.help = Some(rest.unwrap_or("")),
                "TYPE" => current.kind = rest.unwrap_or("unknown"),
                _ => {}
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        if let Some(current) = family.as_mut() {
            if current.drops(name) {
                continue;
            }
            current.write_metadata(&mut out);
        }
        write_sample(&mut out, line, name_end);
    }
    if let Some(mut last) = family {
        last.write_metadata(&mut out);
    }
    out
}

/// Writes a sample line without its exemplar, its timestamp in milliseconds.
fn write_sample(out: &mut String, line: &str, name_end: usize) {
    let labels_end = if line[name_end..].starts_with('{') {
        name_end + labels_len(&line[name_end..])
    } else {
        name_end
    };
    out.push_str(&line[..labels_end]);
    let mut fields = line[labels_end..].split(' ').filter(|f| !f.is_empty());
    if let Some(value) = fields.next() {
        out.push(' ');
        out.push_str(value);
    }
    match fields.next() {
        Some(timestamp) if timestamp != "#" => match timestamp.parse::<f64>() {
            Ok(seconds) => {
                let _ = write!(out, " {}", (seconds * 1000.0).round() as i64);
            }
            Err(_) => {
                out.push(' ');
                out.push_str(timestamp);
            }
        },
        _ => {}
    }
    out.push('\n');
}

/// The length of the `{...}` label set at the start of `text`, quoted values skipped.
fn labels_len(text: &str) -> usize {
    let (mut quoted, mut escaped) = (false, false);
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return at + 1,
            _ => {}
        }
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

    #[test]
    fn negotiates_the_way_scrapers_ask() {
        use Format::{OpenMetrics, Prometheus};
        for (accept, expected) in [
            (None, Prometheus),
            (Some(""), Prometheus),
            (Some(PROMETHEUS_ACCEPT), OpenMetrics),
            // Prometheus 3, and with OpenMetrics turned off in its scrape_protocols.
            (Some("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.5,*/*;q=0.1"), OpenMetrics),
            (Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1"), Prometheus),
            (Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"), Prometheus),
            // curl, browsers.
            (Some("*/*"), Prometheus),
            (Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"), Prometheus),
            (Some("application/openmetrics-text"), OpenMetrics),
            (Some("Application/OpenMetrics-Text; Version=\"1.0.0\"; Charset=UTF-8"), OpenMetrics),
            (Some("application/*"), OpenMetrics),
            (Some("application/*;q=0.9, text/plain;q=0.8"), OpenMetrics),
            (Some("application/openmetrics-text;q=0.5, text/plain"), Prometheus),
            (Some("application/openmetrics-text, text/plain"), Prometheus),
            // Only an OpenMetrics version this body is not.
            (Some("application/openmetrics-text;version=0.0.1,text/plain;q=0.1"), Prometheus),
            (Some("application/openmetrics-text;version=2.0.0,*/*;q=0.1"), Prometheus),
            (Some("application/openmetrics-text;charset=latin1"), Prometheus),
            // The more specific range decides, whatever the order.
            (Some("*/*;q=0.9,text/plain;q=0"), OpenMetrics),
            (Some("text/plain;version=0.0.4;q=0.1,text/*;q=1,application/openmetrics-text;q=0.5"), OpenMetrics),
            (Some("text/plain;version=0.0.5;q=1,text/plain;q=0.2,application/openmetrics-text;q=0.3"), OpenMetrics),
            (Some("text/plain;q=0, application/openmetrics-text;q=0"), Prometheus),
            // Malformed ranges are ignored: a bad q, no subtype, junk.
            (Some("application/openmetrics-text;q=2,text/plain;q=0.1"), Prometheus),
            (Some("application/openmetrics-text;q=0.1234,text/plain;q=0.1"), Prometheus),
            (Some("application;q=1,text/plain;q=0.1"), Prometheus),
            (Some(",;, application/openmetrics-text ; q=0.6 ,,"), OpenMetrics),
            (Some("application/openmetrics-text;x=\"a,b;c\";q=0.6,text/plain;q=0.5"), OpenMetrics),
        ] {
            assert_eq!(Format::negotiate(accept), expected, "{accept:?}");
        }
    }

    #[test]
    fn reads_quality_values() {
        for (text, expected) in [
            ("1", Some(1000)),
            ("1.", Some(1000)),
            ("1.000", Some(1000)),
            ("0", Some(0)),
            ("0.5", Some(500)),
            ("0.75", Some(750)),
            ("0.001", Some(1)),
            ("1.5", None),
            ("0.0001", None),
            ("-0", None),
            ("", None),
            ("0.x", None),
        ] {
            assert_eq!(parse_quality(text), expected, "{text:?}");
        }
        assert_eq!(
            parse_accept("text/plain;version=\"0.0.4\";q=0.5")[0],
            Range {
                kind: "text".into(),
                subtype: "plain".into(),
                params: vec![("version".into(), "0.0.4".into())],
                quality: 500,
            }
        );
    }

    #[test]
    fn converts_every_openmetrics_family_type() {
        let openmetrics = concat!(
            "# HELP app_requests Requests, by \\\"status\\\" \\\\ path.\n",
            "# TYPE app_requests counter\n",
            "app_requests_total{status=\"200\",path=\"/a # {b} \\\"c\\\"\"} 3 # {trace_id=\"x\"} 1 1520879607.789\n",
            "app_requests_created{status=\"200\",path=\"/a # {b} \\\"c\\\"\"} 1520879607.789\n",
            "# HELP app_up Up.\n",
            "# TYPE app_up gauge\n",
            "app_up 1\n",
            "# HELP app_latency_seconds Latency.\n",
            "# TYPE app_latency_seconds histogram\n",
            "# UNIT app_latency_seconds seconds\n",
            "app_latency_seconds_sum 0.5\n",
            "app_latency_seconds_count 2\n",
            "app_latency_seconds_bucket{le=\"0.1\"} 1\n",
            "app_latency_seconds_bucket{le=\"+Inf\"} 2 # {trace_id=\"y\"} 0.4\n",
            "app_latency_seconds_created 1520879607.789\n",
            "# TYPE app_build info\n",
            "app_build_info{version=\"1.2\"} 1\n",
            "# TYPE app_mode stateset\n",
            "app_mode{app_mode=\"a\"} 1\n",
            "# TYPE app_queue gaugehistogram\n",
            "app_queue_bucket{le=\"+Inf\"} 3\n",
            "app_queue_gcount 3\n",
            "# TYPE app_other unknown\n",
            "app_other 1.5e3 1520879607\n",
            "# HELP app_empty No series yet.\n",
            "# TYPE app_empty counter\n",
            "# EOF\n",
        );
        let expected = concat!(
            "# HELP app_requests_total Requests, by \"status\" \\\\ path.\n",
            "# TYPE app_requests_total counter\n",
            "app_requests_total{status=\"200\",path=\"/a # {b} \\\"c\\\"\"} 3\n",
            "# HELP app_up Up.\n",
            "# TYPE app_up gauge\n",
            "app_up 1\n",
            "# HELP app_latency_seconds Latency.\n",
            "# TYPE app_latency_seconds histogram\n",
            "app_latency_seconds_sum 0.5\n",
            "app_latency_seconds_count 2\n",
            "app_latency_seconds_bucket{le=\"0.1\"} 1\n",
            "app_latency_seconds_bucket{le=\"+Inf\"} 2\n",
            "# TYPE app_build_info gauge\n",
            "app_build_info{version=\"1.2\"} 1\n",
            "# TYPE app_mode gauge\n",
            "app_mode{app_mode=\"a\"} 1\n",
            "app_queue_bucket{le=\"+Inf\"} 3\n",
            "app_queue_gcount 3\n",
            "# TYPE app_other untyped\n",
            "app_other 1.5e3 1520879607000\n",
            "# HELP app_empty_total No series yet.\n",
            "# TYPE app_empty_total counter\n",
        );
        assert_eq!(to_prometheus(openmetrics), expected);
    }
}
