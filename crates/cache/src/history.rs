//! The last hour of cache activity, per minute, for the staff cache page: kept in memory by
//! each instance (bounded: 61 snapshots of five counters) and published to Redis so that any
//! instance's page can add up all of them.
//!
//! The counts come from the Prometheus counters, sampled every [`SAMPLE_EVERY`]: the hit path
//! does no extra work for them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::redis_target::RedisTarget;
use super::{Cache, Tier};
use crate::metrics::CacheMetrics;

/// Minutes kept and shown.
pub const MINUTES: usize = 60;
/// How often the counters are sampled and this instance's figures published.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// The published figures outlive the last instance to publish by this much. An instance that
/// left earlier is forgotten by the next publisher, once it no longer holds a memory lease.
const PUBLISHED_TTL: Duration = Duration::from_secs(10);

/// What is counted, in this order in every [`Counts`].
pub const SERIES: [&str; 5] = [
    "hits",
    "misses",
    "bypasses",
    "aggregate queries",
    "invalidations",
];
pub type Counts = [u64; 5];

/// One minute's counts; `minute` is minutes since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Minute {
    pub minute: u64,
    pub counts: Counts,
}

/// What an instance publishes in the hash `{prefix}:stats`, under its id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Published {
    pub address: String,
    pub serving_from_memory: bool,
    pub minutes: Vec<Minute>,
}

/// This instance's per-minute history, the tier of its last hit, and where it listens.
pub struct History {
    metrics: Arc<CacheMetrics>,
    /// The counters' values at the start of each of the last minutes, oldest first.
    snapshots: Mutex<VecDeque<Minute>>,
    last_tier: AtomicU8,
    pub address: String,
    /// For the sampler's and the page's own connections, outside the requests' pool; through
    /// Sentinel, to the master in use.
    pub target: Arc<RedisTarget>,
}

impl History {
    pub fn new(metrics: Arc<CacheMetrics>, address: String, target: Arc<RedisTarget>) -> History {
        History {
            metrics,
            snapshots: Mutex::new(VecDeque::with_capacity(MINUTES + 1)),
            last_tier: AtomicU8::new(0),
            address,
            target,
        }
    }

    fn counters(&self) -> Counts {
        let m = &self.metrics;
        [
            m.cache_hits.get(),
            m.cache_misses.get(),
            m.cache_bypasses.get(),
            m.db_aggregate_queries.get(),
            m.cache_invalidations.get(),
        ]
    }

    /// Records the counters at the start of a new minute; called every [`SAMPLE_EVERY`].
    pub fn sample(&self) {
        self.sample_at(now_minute(), self.counters());
    }

    fn sample_at(&self, minute: u64, counters: Counts) {
        let mut snapshots = self
            .snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let last = snapshots.back().map(|s| s.minute);
        if last.is_some_and(|last| last >= minute) {
            return;
        }
        // Minutes without a sample (a stalled task): what was counted since the last sample
        // stays with the last sampled minute, and the skipped ones count zero.
        let first = last.map_or(minute, |last| {
            (last + 1).max(minute.saturating_sub(MINUTES as u64))
        });
        for m in first..=minute {
            snapshots.push_back(Minute {
                minute: m,
                counts: counters,
            });
        }
        while snapshots.len() > MINUTES {
            snapshots.pop_front();
        }
    }

    /// The counts of each of the last [`MINUTES`] minutes, oldest first, the current one
    /// (still running) last; minutes before this process started count zero.
    pub fn minutes(&self) -> Vec<Minute> {
        self.minutes_at(now_minute(), self.counters())
    }

    fn minutes_at(&self, now: u64, counters: Counts) -> Vec<Minute> {
        let snapshots = self
            .snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let start_of = |minute: u64| {
            snapshots
                .iter()
                .find(|s| s.minute == minute)
                .map(|s| s.counts)
        };
        ((now + 1).saturating_sub(MINUTES as u64)..=now)
            .map(|minute| {
                let counts = match (start_of(minute), start_of(minute + 1)) {
                    (Some(a), Some(b)) => sub(b, a),
                    (Some(a), None) => sub(counters, a),
                    // Before the first sample: nothing was counted yet.
                    _ if minute == now => counters,
                    _ => [0; 5],
                };
                Minute { minute, counts }
            })
            .collect()
    }

    /// Remembers which tier served the latest hit.
    pub fn note_hit(&self, tier: Option<Tier>) {
        let code = match tier {
            None => return,
            Some(Tier::Memory) => 1,
            Some(Tier::Redis) => 2,
        };
        // Written only when it changes: a store on every hit would bounce the cache line
        // between the cores serving requests.
        if self.last_tier.load(Ordering::Relaxed) != code {
            self.last_tier.store(code, Ordering::Relaxed);
        }
    }

    pub fn last_hit_tier(&self) -> Option<Tier> {
        match self.last_tier.load(Ordering::Relaxed) {
            1 => Some(Tier::Memory),
            2 => Some(Tier::Redis),
            _ => None,
        }
    }

    /// Writes this instance's figures to Redis for the other instances' pages.
    fn publish(&self, cache: &Cache, conn: &mut redis::Connection) -> redis::RedisResult<()> {
        let record = Published {
            address: self.address.clone(),
            serving_from_memory: cache.local().is_serving(),
            minutes: self.minutes(),
        };
        let json = serde_json::to_string(&record).unwrap_or_default();
        let keys = cache.keys();
        cache
            .scripts()
            .publish_stats
            .key(&keys.stats)
            .key(&keys.instances)
            .arg(&cache.local().instance_id)
            .arg(json)
            .arg(PUBLISHED_TTL.as_millis() as u64)
            .invoke::<i64>(conn)
            .map(drop)
    }
}

/// Adds `other`'s minutes into `into`, matching them by minute.
pub fn add_minutes(into: &mut [Minute], other: &[Minute]) {
    for theirs in other {
        if let Some(ours) = into.iter_mut().find(|m| m.minute == theirs.minute) {
            for (a, b) in ours.counts.iter_mut().zip(theirs.counts) {
                *a += b;
            }
        }
    }
}

/// The sum of each series over `minutes`.
pub fn totals(minutes: &[Minute]) -> Counts {
    minutes.iter().fold([0; 5], |mut total, m| {
        for (t, c) in total.iter_mut().zip(m.counts) {
            *t += c;
        }
        total
    })
}

fn sub(a: Counts, b: Counts) -> Counts {
    std::array::from_fn(|i| a[i].saturating_sub(b[i]))
}

pub fn now_minute() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        / 60
}

/// Samples every second and publishes; runs while the cache lives. Its own Redis connection,
/// outside the pool the requests use; a failure is retried at the next tick, quietly (the
/// cache's own calls report Redis' state).
pub async fn run_sampler(history: Arc<History>, cache: std::sync::Weak<Cache>) {
    let mut conn: Option<redis::Connection> = None;
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tick.tick().await;
        let Some(strong) = cache.upgrade() else {
            return;
        };
        history.sample();
        let (h, c, kept) = (Arc::clone(&history), strong, conn.take());
        conn = crate::timings::run_blocking(move || {
            let mut connection = match kept {
                Some(connection) => connection,
                None => h.target.connect().ok()?,
            };
            h.publish(&c, &mut connection).ok().map(|()| connection)
        })
        .await
        .ok()
        .flatten();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> History {
        let target = RedisTarget::open(
            "redis://127.0.0.1:1/0",
            "{test}:generation",
            Duration::from_millis(250),
            Duration::from_millis(250),
        );
        History::new(
            Arc::new(CacheMetrics::unregistered()),
            "addr".into(),
            Arc::new(target.unwrap()),
        )
    }

    #[test]
    fn counts_are_split_by_minute_and_the_ring_is_bounded() {
        let h = history();
        h.sample_at(1000, [0, 0, 0, 0, 0]);
        h.sample_at(1001, [3, 1, 0, 1, 0]);
        h.sample_at(1003, [5, 1, 0, 1, 2]);
        let minutes = h.minutes_at(1003, [9, 1, 0, 1, 2]);
        assert_eq!(minutes.len(), MINUTES);
        let at = |m: u64| minutes.iter().find(|x| x.minute == m).unwrap().counts;
        assert_eq!(at(1000), [3, 1, 0, 1, 0]);
        assert_eq!(
            at(1001),
            [2, 0, 0, 0, 2],
            "counts of a skipped minute go to the last sampled one"
        );
        assert_eq!(at(1002), [0; 5]);
        assert_eq!(at(1003), [4, 0, 0, 0, 0], "the running minute");
        assert_eq!(totals(&minutes), [9, 1, 0, 1, 2]);
        h.sample_at(5000, [9, 1, 0, 1, 2]);
        assert!(h.snapshots.lock().unwrap().len() <= MINUTES);
    }

    #[test]
    fn before_the_first_sample_everything_counts_in_the_current_minute() {
        let h = history();
        assert_eq!(totals(&h.minutes_at(7, [2, 1, 0, 1, 0])), [2, 1, 0, 1, 0]);
    }
}
