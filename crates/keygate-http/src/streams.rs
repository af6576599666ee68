//! Stream accounting of one HTTP/2 connection: how many streams are open, and how many the
//! peer allows (`SETTINGS_MAX_CONCURRENT_STREAMS`, published by the connection's driver).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Open streams of one HTTP/2 connection, and the peer's limit as last seen by its driver.
#[derive(Default)]
pub(crate) struct Streams {
    open: AtomicUsize,
    pub(crate) limit: AtomicUsize,
}

impl Streams {
    /// Another stream would stay within the peer's limit.
    pub(crate) fn has_room(&self) -> bool {
        self.open.load(Ordering::Relaxed) < self.limit.load(Ordering::Relaxed)
    }

    /// Counts one more open stream until the slot is dropped.
    pub(crate) fn take(self: &Arc<Self>) -> StreamSlot {
        self.open.fetch_add(1, Ordering::Relaxed);
        StreamSlot(self.clone())
    }

    /// No stream is open.
    pub(crate) fn is_idle(&self) -> bool {
        self.open.load(Ordering::Relaxed) == 0
    }
}

/// One open stream of an HTTP/2 connection; given back when dropped.
pub(crate) struct StreamSlot(Arc<Streams>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}
