//! Sleeps until an instant with microsecond precision.
//!
//! tokio's timer wheel ticks once per millisecond, so a schedule finer than that would go out in
//! bursts of requests sent together, and a "fixed rate" latency test would include queueing
//! behind simultaneous requests. A `timerfd` armed with the exact delay wakes the runtime's
//! reactor on time instead.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::Instant;

/// A one-shot timer on the runtime's reactor; falls back to tokio's timer if the kernel
/// refuses a `timerfd`.
pub(crate) struct Pacer {
    timer: Option<AsyncFd<OwnedFd>>,
}

impl Pacer {
    pub(crate) fn new() -> Self {
        let timer = timerfd().and_then(|fd| {
            // SAFETY: an `OwnedFd` keeps its descriptor open and unchanged until the `AsyncFd`
            // holding it is dropped.
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(Into::into)
        });
        match timer {
            Ok(timer) => Self { timer: Some(timer) },
            Err(error) => {
                eprintln!("keygate-load: no timerfd ({error}); pacing on tokio's 1 ms timer");
                Self { timer: None }
            }
        }
    }

    /// Returns at `deadline` (at once if it has passed).
    pub(crate) async fn sleep_until(&mut self, deadline: Instant) {
        let delay = deadline.saturating_duration_since(Instant::now());
        if delay.is_zero() {
            return;
        }
        let Some(timer) = &self.timer else {
            return tokio::time::sleep_until(deadline).await;
        };
        if let Err(error) = wait(timer, delay).await {
            eprintln!("keygate-load: timerfd failed ({error}); pacing on tokio's 1 ms timer");
            self.timer = None;
            tokio::time::sleep_until(deadline).await;
        }
    }
}

fn timerfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; a non-negative result is a new descriptor we own.
    let fd = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is open and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Arms `timer` to fire once after `delay` (non-zero) and waits for it.
async fn wait(timer: &AsyncFd<OwnedFd>, delay: std::time::Duration) -> io::Result<()> {
    let fd = timer.get_ref().as_raw_fd();
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: delay.as_secs() as libc::time_t,
            tv_nsec: delay.subsec_nanos() as libc::c_long,
        },
    };
    // SAFETY: `fd` is a timerfd, `spec` a valid itimerspec; the old value is not asked for.
    if unsafe { libc::timerfd_settime(fd, 0, &spec, std::ptr::null_mut()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    loop {
        let mut ready = timer.readable().await?;
        let mut expirations = 0u64;
        // SAFETY: reads at most 8 bytes into a u64.
        let read = unsafe { libc::read(fd, (&raw mut expirations).cast(), 8) };
        if read == 8 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::WouldBlock {
            return Err(error);
        }
        // Readiness left over from an earlier expiration: wait for this one.
        ready.clear_ready();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn wakes_at_the_deadline_with_sub_millisecond_precision() {
        let mut pacer = Pacer::new();
        assert!(pacer.timer.is_some(), "timerfd available on Linux");
        let start = Instant::now();
        let mut late = Vec::new();
        for step in 1..=20u32 {
            let deadline = start + Duration::from_micros(300) * step;
            pacer.sleep_until(deadline).await;
            let now = Instant::now();
            assert!(now >= deadline, "never early");
            late.push(now - deadline);
        }
        late.sort();
        // Steps shorter than tokio's millisecond tick: the median lateness must stay well
        // under a tick, even on a busy CI machine.
        assert!(
            late[10] < Duration::from_micros(500),
            "median lateness {:?}",
            late[10]
        );
    }

    #[tokio::test]
    async fn a_past_deadline_returns_at_once() {
        let mut pacer = Pacer::new();
        let before = Instant::now();
        pacer.sleep_until(before - Duration::from_millis(5)).await;
        pacer.sleep_until(before).await;
        assert!(before.elapsed() < Duration::from_millis(5));
    }
}
