//! A circuit breaker in front of Redis.
//!
//! After one failed call the breaker opens: requests skip Redis at once (and are served from
//! the database) instead of each waiting out a timeout. The outbox worker probes Redis in the
//! background and closes the breaker when it answers, after it has applied any pending
//! invalidation, so a Redis that returns holding an old value is cleaned before it is read.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::metrics::Metrics;

/// Outage warnings are logged at most this often.
const LOG_EVERY_MS: u64 = 10_000;

#[derive(Default)]
pub struct Breaker {
    open: AtomicBool,
    last_logged_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl Breaker {
    /// True while Redis is considered reachable.
    pub fn is_closed(&self) -> bool {
        !self.open.load(Ordering::Acquire)
    }

    /// Records a failed Redis call: counts it, logs it (rate-limited), and opens the breaker.
    pub fn trip(&self, metrics: &Metrics, context: &str, error: &redis::RedisError) {
        metrics.cache_errors.inc();
        let was_closed = !self.open.swap(true, Ordering::AcqRel);
        let now = now_ms();
        let last = self.last_logged_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= LOG_EVERY_MS
            && self
                .last_logged_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
            log::warn!(
                "redis unavailable ({context}: {error}); serving from the database{}",
                if suppressed > 0 {
                    format!(" ({suppressed} similar errors not logged)")
                } else {
                    String::new()
                }
            );
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
        if was_closed {
            log::debug!("redis circuit opened");
        }
    }

    /// Called by the background probe once Redis answers again.
    pub fn close(&self) {
        if self.open.swap(false, Ordering::AcqRel) {
            log::info!("redis is reachable again; caching resumed");
        }
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
