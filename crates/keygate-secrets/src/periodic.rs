//! [`Periodic`]: a background thread that runs a task at a fixed interval until dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// A named std thread calling a task every `interval`. Dropping it wakes the thread at once (it is unparked,
/// not left to time out), lets the task run one last time with `stopping = true`, and joins it.
pub struct Periodic {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Periodic {
    /// Starts the thread. `task(false)` runs after every interval, or earlier when [`Periodic::wake`] is
    /// called; `task(true)` runs once when the handle is dropped.
    pub fn spawn(
        name: &str,
        interval: Duration,
        mut task: impl FnMut(bool) + Send + 'static,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || loop {
                thread::park_timeout(interval);
                let stopping = seen.load(Ordering::Acquire);
                task(stopping);
                if stopping {
                    return;
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// The thread, for waking it from elsewhere (`unpark` does what [`Periodic::wake`] does).
    pub fn thread(&self) -> Option<thread::Thread> {
        self.thread.as_ref().map(|handle| handle.thread().clone())
    }

    /// Runs the task now instead of at the end of the current interval.
    pub fn wake(&self) {
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
    }
}

impl Drop for Periodic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            // The thread only ends by seeing `stop`; a panic inside it has nothing left to clean up.
            let _ = thread.join();
        }
    }
}
