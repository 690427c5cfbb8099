//! The consistency monitor: measures, in production, whether values served from the cache
//! agree with the database, instead of trusting the design (Meta's Polaris does this for TAO).
//!
//! # Why a write landing during the check is not a false alarm
//!
//! A served value carries the generation it was computed at. Every write raises the database's
//! mark in its own transaction (a trigger does, whoever writes), and Redis' generation only ever
//! moves to a committed mark. The check reads the generation (g1), then the aggregate, the
//! outbox and the mark in one database snapshot, then the generation again (g2), and compares
//! only when the served value's generation equals g1, the snapshot's mark equals g1, the
//! snapshot holds no outbox row and g2 equals g1. Then every write committed in the snapshot
//! has a mark at most g1, and had committed when Redis reached g1, before the value's reader
//! read g1 and ran its query: the value must include it. A write committed after the snapshot
//! is in neither. Any difference left is a stale value. (A change made outside the
//! application, in the moment before an instance notices it, has a mark above g1: skipped, as
//! the cache is allowed that moment.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use diesel::prelude::*;

use super::generation::Generation;
use super::{Cache, CachedQuery};
use crate::db::{DbConn, DbPool};
use crate::error::CacheError;
use crate::schema::cache_invalidations;
use crate::timings;

/// How often a served value is checked: at most once a second, so the check costs the
/// database one small transaction per second per instance.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How long before a check the monitor takes the first hit served as its sample.
const SAMPLE_WINDOW: Duration = Duration::from_millis(50);

/// A value served from the cache, waiting to be checked.
pub struct Served {
    pub generation: Generation,
    pub sample: Box<dyn Sample>,
}

/// A served value and the query it came from, with the query's type erased: whatever was
/// served last is checked.
pub trait Sample: Send {
    /// `None` when the value agrees with the database as `conn` sees it; else what differs.
    fn differs(&self, conn: &mut DbConn) -> QueryResult<Option<String>>;
}

struct QuerySample<Q: CachedQuery> {
    query: Q,
    value: Arc<Q::Value>,
}

impl<Q: CachedQuery> Sample for QuerySample<Q> {
    // Not counted as a computation: those count the cache's misses.
    fn differs(&self, conn: &mut DbConn) -> QueryResult<Option<String>> {
        let fresh = self.query.compute(conn)?;
        Ok((!self.query.agrees(&self.value, &fresh)).then(|| {
            format!(
                "{}: served {}, the database has {}",
                self.query.key(),
                self.query.describe(&self.value),
                self.query.describe(&fresh)
            )
        }))
    }
}

/// The last value served from the cache just before a check: hits record themselves only in
/// the moment before each check, so the rest of the second a hit costs one atomic load instead
/// of every worker writing the same slot, and the sample is as fresh as the check, so a write
/// since it rarely makes the check skip.
pub struct LastServed {
    wanted: AtomicBool,
    slot: Mutex<Option<Served>>,
}

impl Default for LastServed {
    fn default() -> Self {
        LastServed {
            wanted: AtomicBool::new(false),
            slot: Mutex::new(None),
        }
    }
}

impl LastServed {
    /// Never waits: when another request is recording at the same moment, its hit is as good
    /// a sample as this one.
    fn record(&self, served: impl FnOnce() -> Served) {
        if self.wanted.load(Ordering::Relaxed) {
            if let Ok(mut slot) = self.slot.try_lock() {
                *slot = Some(served());
            }
        }
    }

    /// Asks the hits from now on for a sample, dropping any older one.
    fn want(&self) {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.wanted.store(true, Ordering::Release);
    }

    fn take(&self) -> Option<Served> {
        self.wanted.store(false, Ordering::Release);
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// What one check concluded.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Nothing served from the cache since the last check.
    NothingServed,
    /// A write or a fault made the comparison meaningless; not counted.
    Skipped(&'static str),
    Consistent,
    Inconsistent,
}

/// The database as of one snapshot.
struct Snapshot {
    /// What differs between the served value and the database, if anything.
    differs: Option<String>,
    pending_invalidations: i64,
    mark: Generation,
}

impl Cache {
    /// Remembers a value served from the cache (memory or Redis) for the monitor: one atomic
    /// load, and in the moment before a check one store under a mutex that no request waits
    /// for, the only cost on the request path.
    pub fn served<Q: CachedQuery>(&self, generation: Generation, query: &Q, value: &Arc<Q::Value>) {
        self.served.record(|| Served {
            generation,
            sample: Box::new(QuerySample {
                query: query.clone(),
                value: Arc::clone(value),
            }),
        });
    }

    /// Checks the last value served since the previous check against the database.
    pub fn check_consistency(&self, conn: &mut DbConn) -> Verdict {
        let Some(served) = self.served.take() else {
            return Verdict::NothingServed;
        };
        let Ok(g1) = self.current_generation() else {
            return Verdict::Skipped("redis unreachable");
        };
        if g1 != served.generation {
            return Verdict::Skipped("the generation moved since the value was served");
        }
        let snapshot = match snapshot(conn, &*served.sample) {
            Ok(snapshot) => snapshot,
            Err(e) => {
                log::debug!("consistency check: database unavailable: {e}");
                return Verdict::Skipped("database unavailable");
            }
        };
        if snapshot.pending_invalidations > 0 {
            return Verdict::Skipped("an invalidation is pending");
        }
        if snapshot.mark != g1 {
            return Verdict::Skipped("the database's mark is not yet the generation in redis");
        }
        match self.current_generation() {
            Ok(g2) if g2 == g1 => {}
            Ok(_) => return Verdict::Skipped("a write bumped the generation during the check"),
            Err(_) => return Verdict::Skipped("redis unreachable"),
        }
        self.metrics.cache_consistency_checks.inc();
        let Some(difference) = snapshot.differs else {
            return Verdict::Consistent;
        };
        self.metrics.cache_inconsistencies.inc();
        log::error!(
            "cache inconsistency at generation {}: {difference}",
            served.generation
        );
        Verdict::Inconsistent
    }
}

/// The served value's query, the outbox and the mark as of one instant.
fn snapshot(conn: &mut DbConn, sample: &dyn Sample) -> QueryResult<Snapshot> {
    super::snapshot::read_in_one_snapshot(conn, |conn| {
        let differs = sample.differs(conn)?;
        let pending_invalidations = cache_invalidations::table.count().get_result(conn)?;
        let mark = super::generation::committed(conn)?;
        Ok(Snapshot {
            differs,
            pending_invalidations,
            mark,
        })
    })
}

/// Checks one served value every [`CHECK_EVERY`] until the process ends.
pub async fn run(cache: Arc<Cache>, db: DbPool) {
    let mut interval = tokio::time::interval(CHECK_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        cache.served.want();
        tokio::time::sleep(SAMPLE_WINDOW).await;
        let (cache, db) = (Arc::clone(&cache), db.clone());
        let checked = timings::blocking(move || {
            let verdict = cache.check_consistency(&mut *db.get()?);
            if let Verdict::Skipped(why) = verdict {
                log::debug!("consistency check skipped: {why}");
            }
            Ok::<_, CacheError>(())
        })
        .await;
        if let Err(e) = checked {
            log::debug!("consistency check: {e}");
        }
    }
}
