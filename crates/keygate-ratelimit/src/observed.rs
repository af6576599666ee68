//! A decorator that reports every decision, so the server can count them as metrics.

use std::sync::Arc;

use crate::{CheckFuture, Decision, Limit, RateLimiter};

/// Wraps a limiter and calls `observe(name, &decision)` after each check (e.g. to increment
/// `keygate_rate_limit_decisions_total{name,limited}`). The key is never passed on.
pub struct Observed<F> {
    inner: Arc<dyn RateLimiter>,
    observe: F,
}

impl<F: Fn(&str, &Decision) + Send + Sync> Observed<F> {
    /// Reports the decisions of `inner` to `observe`.
    pub fn new(inner: Arc<dyn RateLimiter>, observe: F) -> Self {
        Self { inner, observe }
    }
}

impl<F: Fn(&str, &Decision) + Send + Sync> RateLimiter for Observed<F> {
    fn check<'a>(&'a self, name: &'a str, key: &'a [u8], limit: Limit) -> CheckFuture<'a> {
        Box::pin(async move {
            let decision = self.inner.check(name, key, limit).await;
            (self.observe)(name, &decision);
            decision
        })
    }

    fn failures(&self) -> u64 {
        self.inner.failures()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::MemoryLimiter;

    #[tokio::test]
    async fn reports_each_decision_with_its_name() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let limiter = Observed::new(
            Arc::new(MemoryLimiter::default()),
            move |name: &str, d: &Decision| {
                log.lock().unwrap().push((name.to_owned(), d.limited));
            },
        );
        let limit = Limit {
            capacity: 1,
            window: Duration::from_secs(60),
        };
        limiter.check("a", b"k", limit).await;
        limiter.check("a", b"k", limit).await;
        limiter.check("b", b"k", limit).await;
        assert_eq!(
            *seen.lock().unwrap(),
            [("a".into(), false), ("a".into(), true), ("b".into(), false)]
        );
        assert_eq!(limiter.failures(), 0);
    }
}
