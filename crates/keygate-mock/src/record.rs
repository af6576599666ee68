//! The record of every request the mock received, kept in memory up to a cap.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Method, Uri};
use serde::{Deserialize, Serialize};

/// One request as the mock received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// Position in arrival order, starting at 1 (kept across clears).
    pub seq: u64,
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Path without the query, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Query string without `?`, if any.
    pub query: Option<String>,
    /// Header names (lower case) and values in arrival order; non-UTF-8 values are lossily decoded.
    pub headers: Vec<(String, String)>,
    /// Body, lossily decoded as UTF-8.
    pub body: String,
}

impl RecordedRequest {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, or `None` when it is not JSON.
    pub fn body_json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// Shared, capped request log.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    inner: Arc<Mutex<Log>>,
}

#[derive(Debug)]
struct Log {
    cap: usize,
    next_seq: u64,
    entries: VecDeque<Entry>,
}

/// A request as received: shared handles to hyper's buffers, decoded into a [`RecordedRequest`]
/// only when the record is read, so recording costs a few reference counts per request.
#[derive(Debug)]
struct Entry {
    seq: u64,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Entry {
    fn decode(&self) -> RecordedRequest {
        RecordedRequest {
            seq: self.seq,
            method: self.method.to_string(),
            path: self.uri.path().to_owned(),
            query: self.uri.query().map(str::to_owned),
            headers: self
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: String::from_utf8_lossy(&self.body).into_owned(),
        }
    }
}

impl Recorder {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Log {
                cap,
                next_seq: 1,
                entries: VecDeque::new(),
            })),
        }
    }

    /// Whether anything is kept at all (lets the hot path skip building a record).
    pub(crate) fn enabled(&self) -> bool {
        self.lock(|log| log.cap > 0)
    }

    /// Appends a request, assigning its sequence number and evicting the oldest past the cap.
    pub(crate) fn push(&self, parts: &Parts, body: &Bytes) {
        let mut entry = Entry {
            seq: 0,
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            body: body.clone(),
        };
        let evicted = self.lock(|log| {
            if log.cap == 0 {
                return None;
            }
            entry.seq = log.next_seq;
            log.next_seq += 1;
            let evicted = (log.entries.len() == log.cap)
                .then(|| log.entries.pop_front())
                .flatten();
            log.entries.push_back(entry);
            evicted
        });
        drop(evicted); // freed outside the lock
    }

    pub(crate) fn snapshot(&self) -> Vec<RecordedRequest> {
        self.lock(|log| log.entries.iter().map(Entry::decode).collect())
    }

    pub(crate) fn clear(&self) {
        self.lock(|log| log.entries.clear());
    }

    fn lock<T>(&self, f: impl FnOnce(&mut Log) -> T) -> T {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(rec: &Recorder, path: &str) {
        let (parts, body) = http::Request::post(path)
            .header("x-test", "1")
            .body(Bytes::from_static(b"{\"a\":1}"))
            .expect("valid request")
            .into_parts();
        rec.push(&parts, &body);
    }

    #[test]
    fn keeps_newest_up_to_cap_with_sequence_numbers() {
        let rec = Recorder::new(2);
        push(&rec, "/a");
        push(&rec, "/b");
        push(&rec, "/c?x=1");
        let all = rec.snapshot();
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].seq, all[0].path.as_str()), (2, "/b"));
        assert_eq!((all[1].seq, all[1].path.as_str()), (3, "/c"));
        assert_eq!(all[1].query.as_deref(), Some("x=1"));
        assert_eq!(all[1].method, "POST");
        rec.clear();
        assert!(rec.snapshot().is_empty());
        push(&rec, "/d");
        assert_eq!(rec.snapshot()[0].seq, 4);
    }

    #[test]
    fn zero_cap_records_nothing() {
        let rec = Recorder::new(0);
        assert!(!rec.enabled());
        push(&rec, "/a");
        assert!(rec.snapshot().is_empty());
    }

    #[test]
    fn header_lookup_and_json_body() {
        let rec = Recorder::new(1);
        push(&rec, "/a");
        let r = &rec.snapshot()[0];
        assert_eq!(r.header("x-test"), Some("1"));
        assert_eq!(r.header("missing"), None);
        assert_eq!(r.body_json(), Some(serde_json::json!({"a": 1})));
    }
}
