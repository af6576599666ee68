//! Conversions between CEL values and JSON, and from any CEL value (lazy views included) to
//! an owned [`Value`].

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use cel::common::types::{CelMap, Kind};
use cel::common::value::Val;
use cel::objects::{Key, Map};
use cel::ExecutionError;

use crate::Value;

/// Converts a CEL value to JSON (maps, lists, scalars; bytes as base64; timestamps as RFC 3339;
/// durations as seconds with an `s` suffix; NaN and infinities as `null`).
pub fn to_json(value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::UInt(u) => J::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::String(s) => J::String(s.as_str().to_owned()),
        Value::Bytes(b) => {
            J::String(base64::engine::general_purpose::STANDARD.encode(b.as_slice()))
        }
        Value::Timestamp(t) => J::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        Value::Duration(d) => J::String(format_duration(d)),
        Value::List(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(map) => {
            let mut entries: Vec<(String, serde_json::Value)> = map
                .map
                .iter()
                .map(|(k, v)| (key_string(k), to_json(v)))
                .collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            J::Object(entries.into_iter().collect())
        }
        _ => J::Null,
    }
}

/// `1.5s`, `3600s`: the protobuf JSON form of a duration.
pub(crate) fn format_duration(d: &chrono::Duration) -> String {
    let secs = d.num_seconds();
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        return format!("{secs}s");
    }
    let fraction = format!("{:09}", nanos.unsigned_abs());
    let sign = if secs == 0 && nanos < 0 { "-" } else { "" };
    format!("{sign}{secs}.{}s", fraction.trim_end_matches('0'))
}

fn key_string(key: &Key) -> String {
    match key {
        Key::String(s) => s.as_str().to_owned(),
        Key::Int(i) => i.to_string(),
        Key::Uint(u) => u.to_string(),
        Key::Bool(b) => b.to_string(),
    }
}

/// Converts JSON to a CEL value: integers that fit `int` (else `uint`, else `double`),
/// objects as maps with string keys.
pub fn from_json(value: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match value {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => n
            .as_i64()
            .map(Value::Int)
            .or_else(|| n.as_u64().map(Value::UInt))
            .unwrap_or_else(|| Value::Float(n.as_f64().unwrap_or(f64::NAN))),
        J::String(s) => Value::String(Arc::new(s.clone())),
        J::Array(items) => Value::List(Arc::new(items.iter().map(from_json).collect())),
        J::Object(entries) => Value::Map(Map {
            map: Arc::new(
                entries
                    .iter()
                    .map(|(k, v)| (Key::String(Arc::new(k.clone())), from_json(v)))
                    .collect(),
            ),
        }),
    }
}

/// Copies any CEL value into an owned [`Value`], walking lists and maps through their traits
/// so that the lazy views (`req.headers`, header value lists) convert too.
pub(crate) fn val_to_value(v: &dyn Val) -> Result<Value, ExecutionError> {
    match v.get_type().kind() {
        Kind::List => {
            let items = v.as_iterable().ok_or_else(|| not_convertible(v))?;
            let mut iter = items.iter();
            let mut out = Vec::new();
            while let Some(item) = iter.next() {
                out.push(val_to_value(item)?);
            }
            Ok(Value::List(Arc::new(out)))
        }
        Kind::Map => {
            let mut out = HashMap::new();
            if let Some(map) = v.downcast_ref::<CelMap>() {
                for (k, item) in map.inner() {
                    out.insert(Key::from(k.clone()), val_to_value(item.as_ref())?);
                }
            } else {
                let keys = v.as_iterable().ok_or_else(|| not_convertible(v))?;
                let indexer = v.as_indexer().ok_or_else(|| not_convertible(v))?;
                let mut iter = keys.iter();
                while let Some(key) = iter.next() {
                    let item = indexer.get(key)?;
                    let key = match val_to_value(key)? {
                        Value::String(s) => Key::String(s),
                        Value::Int(i) => Key::Int(i),
                        Value::UInt(u) => Key::Uint(u),
                        Value::Bool(b) => Key::Bool(b),
                        _ => return Err(not_convertible(v)),
                    };
                    out.insert(key, val_to_value(item.as_ref())?);
                }
            }
            Ok(Value::Map(Map { map: Arc::new(out) }))
        }
        _ => Value::try_from(v),
    }
}

fn not_convertible(v: &dyn Val) -> ExecutionError {
    ExecutionError::UnexpectedType {
        got: v.get_type().name().to_owned(),
        want: "a value that converts to JSON".to_owned(),
    }
}
