//! W3C Trace Context for the OpenTelemetry export (`keygate serve --otlp-endpoint`): the trace a
//! request belongs to (the client's, when it sent a valid `traceparent`, else a new one) and the
//! `traceparent` header each upstream attempt carries. Nothing here runs while export is off.

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The W3C Trace Context request header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// A 128-bit trace id (never zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub u128);

/// A 64-bit span id (never zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub u64);

impl TraceId {
    /// A random, non-zero id.
    pub fn random() -> TraceId {
        loop {
            let id = rand::random::<u128>();
            if id != 0 {
                return TraceId(id);
            }
        }
    }

    /// 32 lowercase hex digits.
    pub fn hex(self) -> [u8; 32] {
        let mut out = [0; 32];
        hex_into(&mut out, &self.0.to_be_bytes());
        out
    }
}

impl SpanId {
    /// A random, non-zero id.
    pub fn random() -> SpanId {
        loop {
            let id = rand::random::<u64>();
            if id != 0 {
                return SpanId(id);
            }
        }
    }

    /// 16 lowercase hex digits.
    pub fn hex(self) -> [u8; 16] {
        let mut out = [0; 16];
        hex_into(&mut out, &self.0.to_be_bytes());
        out
    }
}

/// The trace of one request, and the id of the request's own (server) span in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: TraceId,
    /// The request's span: the parent of its upstream attempts' spans.
    pub span_id: SpanId,
    /// The client's span (from its `traceparent`), the parent of the request's span; `None` in a
    /// trace the gateway started.
    pub parent: Option<SpanId>,
    /// Whether the spans are exported: always in a new trace, as the client's `sampled` flag says
    /// in a continued one (OpenTelemetry's default parent-based sampling).
    pub sampled: bool,
}

impl TraceContext {
    /// The context of a request with `headers`: the client's trace when it sent exactly one valid
    /// `traceparent`, a new trace otherwise. The request's span gets a new id either way.
    pub fn for_request(headers: &HeaderMap) -> TraceContext {
        let mut values = headers.get_all(TRACEPARENT).iter();
        let client = match (values.next(), values.next()) {
            (Some(value), None) => parse_traceparent(value.as_bytes()),
            _ => None,
        };
        match client {
            Some((trace_id, parent, flags)) => TraceContext {
                trace_id,
                span_id: SpanId::random(),
                parent: Some(parent),
                sampled: flags & 1 == 1,
            },
            None => TraceContext {
                trace_id: TraceId::random(),
                span_id: SpanId::random(),
                parent: None,
                sampled: true,
            },
        }
    }

    /// The `traceparent` of a request sent on behalf of span `span` of this trace.
    pub fn traceparent(&self, span: SpanId) -> HeaderValue {
        let mut text = [0u8; 55];
        text[..3].copy_from_slice(b"00-");
        text[3..35].copy_from_slice(&self.trace_id.hex());
        text[35] = b'-';
        text[36..52].copy_from_slice(&span.hex());
        text[52..].copy_from_slice(if self.sampled { b"-01" } else { b"-00" });
        HeaderValue::from_bytes(&text).expect("hex digits and dashes make a valid header value")
    }
}

/// Trace id, parent id and flags of a `traceparent` value (W3C Trace Context level 1), `None`
/// when it is invalid: lowercase hex only, all-zero ids and version `ff` refused, and a future
/// version may append fields after a `-`.
pub fn parse_traceparent(value: &[u8]) -> Option<(TraceId, SpanId, u8)> {
    if value.len() < 55 || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let version = hex_u128(&value[..2])?;
    match version {
        0xff => return None,
        0 if value.len() != 55 => return None,
        _ if value.len() > 55 && value[55] != b'-' => return None,
        _ => {}
    }
    let trace_id = hex_u128(&value[3..35])?;
    let parent = u64::try_from(hex_u128(&value[36..52])?).ok()?;
    let flags = u8::try_from(hex_u128(&value[53..55])?).ok()?;
    if trace_id == 0 || parent == 0 {
        return None;
    }
    Some((TraceId(trace_id), SpanId(parent), flags))
}

/// The value of at most 32 lowercase hex digits.
fn hex_u128(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |value, &digit| {
        let nibble = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => return None,
        };
        Some(value << 4 | u128::from(nibble))
    })
}

/// Writes `bytes` as lowercase hex into `out` (twice as long).
fn hex_into(out: &mut [u8], bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(TRACEPARENT, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn a_valid_traceparent_is_continued_with_a_new_span() {
        let context = TraceContext::for_request(&headers(&[CLIENT]));
        assert_eq!(
            context.trace_id,
            TraceId(0x4bf92f3577b34da6a3ce929d0e0e4736)
        );
        assert_eq!(context.parent, Some(SpanId(0x00f067aa0ba902b7)));
        assert!(context.sampled);
        assert_ne!(context.span_id, SpanId(0x00f067aa0ba902b7));
        let sent = context.traceparent(SpanId(0xabc));
        assert_eq!(
            sent.to_str().unwrap(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-01"
        );
    }

    #[test]
    fn the_sampled_flag_is_followed() {
        let unsampled = CLIENT.replace("-01", "-00");
        let context = TraceContext::for_request(&headers(&[&unsampled]));
        assert!(!context.sampled);
        assert!(context
            .traceparent(context.span_id)
            .to_str()
            .unwrap()
            .ends_with("-00"));
    }

    #[test]
    fn invalid_or_repeated_values_start_a_new_trace() {
        let upper = CLIENT.to_ascii_uppercase();
        let zero_trace = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        let zero_parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01";
        let version_ff = CLIENT.replacen("00", "ff", 1);
        let too_long = format!("{CLIENT}-extra");
        let short = &CLIENT[..54];
        for values in [
            vec![upper.as_str()],
            vec![zero_trace],
            vec![zero_parent],
            vec![version_ff.as_str()],
            vec![too_long.as_str()],
            vec![short],
            vec!["garbage"],
            vec![CLIENT, CLIENT],
        ] {
            let context = TraceContext::for_request(&headers(&values));
            assert_eq!(context.parent, None, "{values:?}");
            assert!(context.sampled);
            assert_ne!(context.trace_id.0, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        }
        let none = TraceContext::for_request(&HeaderMap::new());
        assert_eq!(none.parent, None);
        assert_ne!(
            none.trace_id,
            TraceContext::for_request(&HeaderMap::new()).trace_id
        );
    }

    #[test]
    fn a_future_version_may_append_fields() {
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever";
        let (trace, parent, flags) = parse_traceparent(future.as_bytes()).unwrap();
        assert_eq!(
            (trace.0, parent.0, flags),
            (0x4bf92f3577b34da6a3ce929d0e0e4736, 0x00f067aa0ba902b7, 1)
        );
        assert!(
            parse_traceparent(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x")
                .is_none()
        );
    }
}
