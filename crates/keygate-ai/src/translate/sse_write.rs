//! Writes the encoders' SSE events straight into the output buffer.
//!
//! JSON goes through serde_json's serializer without a `Value` in between. serde_json's maps
//! keep their keys sorted, so a struct whose fields are declared in alphabetical order writes the
//! bytes the `Value` with the same fields would: the hot events (text, thinking and argument
//! deltas) are such borrowed structs, the rare ones stay `json!` values.

use serde::Serialize;

/// Appends the event `name` (`None`: a bare `data:` event, as Chat Completions sends) whose
/// data is `data` as JSON.
pub fn event(out: &mut Vec<u8>, name: Option<&str>, data: &impl Serialize) {
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    json(out, data);
    out.extend_from_slice(b"\n\n");
}

/// Appends `value` as JSON.
pub fn json(out: &mut Vec<u8>, value: &impl Serialize) {
    // Into a `Vec` nothing fails, and these values (string keys only) always serialize.
    serde_json::to_writer(&mut *out, value).expect("JSON written into a Vec");
}
