//! One single-threaded runtime per core, each serving the connections dealt to it.
//!
//! A connection lives on one core from accept to close: its requests, its upstream calls (the
//! HTTP client keeps a pool per thread) and its timers never wake another thread. On tokio's
//! work-stealing runtime such wake-ups cost a proxied request a large share of its CPU (see
//! `bench/RESULTS.md`). The cost is the usual one of thread-per-core servers: a request that
//! computes for long delays the others on its core.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The per-core runtimes.
pub struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    threads: Vec<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Workers {
    /// Starts `count` threads (at least one), each running a current-thread runtime until stopped.
    pub fn start(count: usize) -> std::io::Result<Self> {
        let mut handles = Vec::new();
        let mut threads = Vec::new();
        for index in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("kg-worker-{index}"))
                .spawn(move || {
                    // Tasks spawned on a current-thread runtime run while `block_on` runs.
                    let _ = runtime.block_on(stopped);
                })?;
            threads.push((stop, thread));
        }
        Ok(Self {
            handles,
            next: AtomicUsize::new(0),
            threads,
        })
    }

    /// Runs `task` on the next runtime in turn.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles[index].spawn(task);
    }

    /// Stops every runtime, dropping the tasks still running on them, and waits for the threads.
    pub fn stop(self) {
        for (stop, thread) in self.threads {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}
