//! The one answer to "may this instance read Redis now?".
//!
//! No, after any failed Redis call (requests then skip Redis at once, served from the database,
//! instead of each waiting out a timeout), while an invalidation may be pending in the outbox
//! (Redis may still hold the value it targets), and at start-up until the outbox has been
//! applied once. Yes again only when the outbox worker has applied every pending row with no
//! failure in between, so a Redis that comes back holding an old value is cleaned before it is
//! read.
//!
//! One atomic number holds it: even means trusted, odd distrusted, and every distrust moves it,
//! so the worker restores trust only if the number is still the one it saw before applying the
//! outbox (a failure during that round keeps Redis distrusted).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::metrics::CacheMetrics;

/// Outage warnings are logged at most this often.
const LOG_EVERY_MS: u64 = 10_000;

pub struct RedisTrust {
    state: AtomicU64,
    last_logged_ms: AtomicU64,
    suppressed: AtomicU64,
}

/// A moment of [`RedisTrust`], to restore trust only if nothing happened since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustEpoch(u64);

impl Default for RedisTrust {
    /// Distrusted: nothing is read from Redis before the outbox has been applied once.
    fn default() -> Self {
        RedisTrust {
            state: AtomicU64::new(1),
            last_logged_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }
}

impl RedisTrust {
    pub fn is_trusted(&self) -> bool {
        self.state.load(Ordering::Acquire).is_multiple_of(2)
    }

    /// Stops reading Redis (until [`RedisTrust::restore_if_unchanged`]); returns the new epoch.
    pub fn distrust(&self) -> TrustEpoch {
        let step = |s: u64| Some(if s.is_multiple_of(2) { s + 1 } else { s + 2 });
        let previous = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, step)
            .unwrap_or_else(|s| s);
        TrustEpoch(step(previous).unwrap_or(previous))
    }

    pub fn epoch(&self) -> TrustEpoch {
        TrustEpoch(self.state.load(Ordering::Acquire))
    }

    /// Trusts Redis (again) unless it was distrusted since `seen`; true if it is trusted now
    /// because of that.
    pub fn restore_if_unchanged(&self, seen: TrustEpoch) -> bool {
        if seen.0.is_multiple_of(2) {
            return self.epoch() == seen;
        }
        self.state
            .compare_exchange(seen.0, seen.0 + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// A failed Redis call: counts it, logs it (rate-limited), and distrusts Redis.
    pub fn failed(&self, metrics: &CacheMetrics, context: &str, error: &redis::RedisError) {
        metrics.cache_errors.inc();
        let was_trusted = self.is_trusted();
        self.distrust();
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
        if was_trusted {
            log::debug!("redis distrusted after a failure");
        }
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_comes_back_only_if_nothing_went_wrong_since_the_epoch_was_read() {
        let trust = RedisTrust::default();
        assert!(!trust.is_trusted(), "distrusted at start-up");
        let seen = trust.epoch();
        trust.distrust();
        assert!(!trust.restore_if_unchanged(seen), "a failure in between");
        let seen = trust.epoch();
        assert!(trust.restore_if_unchanged(seen));
        assert!(trust.is_trusted());
        assert!(trust.restore_if_unchanged(trust.epoch()), "still trusted");
        let seen = trust.distrust();
        assert!(trust.restore_if_unchanged(seen));
    }
}
