//! The outbox of cache invalidations: written in each data change's own transaction, deleted
//! once Redis confirmed the invalidation, retried by a background task until then.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use diesel::prelude::*;

use super::trust::now_ms;
use super::Cache;
use crate::db::{self, DbConn, DbPool};
use crate::error::AppError;
use crate::on_backend;
use crate::schema::cache_invalidations;

/// The logical name of the one cached value, as stored in the outbox.
pub const AVERAGE_AGE: &str = "students:average_age";

/// How often every instance looks at the outbox and, while Redis is distrusted, probes it.
pub const POLL_EVERY: Duration = Duration::from_millis(250);
/// A row this instance has seen for less than this belongs to a write that is probably still
/// invalidating by itself.
pub const GRACE: Duration = Duration::from_millis(750);

/// When this instance first saw each row of the outbox, on its own monotonic clock. A row is due
/// once it has been seen for [`GRACE`]: its age is never read from the writer's clock, which may
/// be minutes off this host's (the row's `created_at_ms` is for people reading the table), so a
/// failed invalidation reaches every instance within 2 × [`POLL_EVERY`] + [`GRACE`] of its commit
/// whatever the clocks say.
#[derive(Default)]
pub struct Sightings(Mutex<HashMap<i32, Instant>>);

impl Sightings {
    /// Of `present` (every row in the outbox now), those first seen at least [`GRACE`] before
    /// `now`; rows no longer present are forgotten.
    pub fn due(&self, present: &[i32], now: Instant) -> Vec<i32> {
        let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let present_set: HashSet<i32> = present.iter().copied().collect();
        seen.retain(|id, _| present_set.contains(id));
        present
            .iter()
            .copied()
            .filter(|id| now.saturating_duration_since(*seen.entry(*id).or_insert(now)) >= GRACE)
            .collect()
    }
}

/// Records that `cache_key` must be invalidated, and raises the generation's mark; call inside
/// the data change's transaction.
pub fn record(conn: &mut DbConn, cache_key: &str) -> QueryResult<i32> {
    // The generation's high-water mark moves with the change, in its transaction.
    super::generation::bump(conn)?;
    let row = (
        cache_invalidations::cache_key.eq(cache_key),
        cache_invalidations::created_at_ms.eq(now_ms() as i64),
    );
    on_backend!(conn, c => diesel::insert_into(cache_invalidations::table)
        .values(row)
        .returning(cache_invalidations::id)
        .get_result(c))
}

fn confirm(conn: &mut DbConn, ids: &[i32]) -> QueryResult<usize> {
    diesel::delete(cache_invalidations::table.filter(cache_invalidations::id.eq_any(ids)))
        .execute(conn)
}

fn pending(conn: &mut DbConn) -> QueryResult<Vec<i32>> {
    cache_invalidations::table
        .select(cache_invalidations::id)
        .load(conn)
}

impl Cache {
    /// Runs `change` and records the invalidation in one transaction, gives the connection
    /// back, then invalidates. The change is kept even when Redis is down: the outbox row
    /// guarantees the invalidation. No connection is held while Redis is waited on (for
    /// acknowledgements, or for leases to lapse: seconds), so slow invalidations cannot starve
    /// the pool that every page needs.
    pub fn commit_and_invalidate<T>(
        &self,
        db: &DbPool,
        change: impl FnOnce(&mut DbConn) -> QueryResult<T>,
    ) -> Result<T, AppError> {
        // The change comes first: in SQLite its write takes the write lock at once, so a
        // concurrent writer waits on busy_timeout instead of failing to upgrade a read lock.
        let (value, outbox_id) = db.get()?.transaction(|conn| {
            let value = change(conn)?;
            let outbox_id = record(conn, AVERAGE_AGE)?;
            Ok::<_, diesel::result::Error>((value, outbox_id))
        })?;
        self.invalidate_committed(db, &[outbox_id]);
        Ok(value)
    }

    /// Applies committed outbox rows now if Redis answers; otherwise leaves them to the worker
    /// and stops reading Redis until it has applied them. Takes a connection only to delete
    /// the applied rows, after Redis has answered.
    pub fn invalidate_committed(&self, db: &DbPool, outbox_ids: &[i32]) {
        // Tried even while Redis is distrusted: distrust may only mean a row is pending.
        match self.invalidate() {
            Ok(_) => {
                self.metrics.cache_invalidations.inc();
                let deleted = db
                    .get()
                    .map_err(anyhow::Error::from)
                    .and_then(|mut conn| Ok(confirm(&mut conn, outbox_ids)?));
                if let Err(e) = deleted {
                    // Harmless: the worker will invalidate once more and delete the row.
                    log::warn!("could not delete applied outbox rows: {e}");
                }
            }
            Err(e) => {
                self.report_failure("invalidate", &e);
                self.mark_pending();
                // Instances that lost Redis too cannot hear of this write: answer only once
                // their leases, renewed at the latest when this one last was, have lapsed.
                std::thread::sleep(self.time_until_peer_leases_lapse());
            }
        }
    }

    /// One round of the worker: probe Redis if it is distrusted, apply due outbox rows, and
    /// trust Redis again only once nothing is left to apply.
    pub fn apply_outbox(&self, db: &DbPool) {
        let mut failures_seen = self.trust_epoch();
        if !self.is_usable() {
            if let Err(e) = self.ping() {
                log::debug!("redis probe failed: {e}");
                return;
            }
        }
        let mut conn = match db.get() {
            Ok(conn) => conn,
            Err(e) => {
                log::debug!("outbox: no database connection: {e}");
                return;
            }
        };
        let present = match pending(&mut conn) {
            Ok(ids) => ids,
            Err(e) => {
                log::warn!("outbox: cannot read pending invalidations: {e}");
                return;
            }
        };
        // Not held while Redis is waited on (up to a lease when a peer is silent).
        drop(conn);
        let due = self.outbox_sightings.due(&present, Instant::now());
        // After a failure here or anywhere, every row counts, however young.
        let everything = !self.is_usable();
        let ids = if everything { present } else { due };
        if !ids.is_empty() {
            failures_seen = self.trust.distrust();
            self.metrics
                .cache_invalidations_pending
                .set(ids.len() as i64);
            if let Err(e) = self.invalidate() {
                self.report_failure("outbox", &e);
                return;
            }
            self.metrics.cache_invalidations.inc();
            let deleted = db
                .get()
                .map_err(anyhow::Error::from)
                .and_then(|mut conn| Ok(confirm(&mut conn, &ids)?));
            if let Err(e) = deleted {
                log::warn!("outbox: applied but could not delete rows: {e}");
                return;
            }
            log::info!("applied {} pending cache invalidation(s)", ids.len());
        }
        self.resume_if_no_failure_since(failures_seen);
        if self.is_usable() {
            self.renew_lease();
        }
    }
}

/// Applies the outbox every [`POLL_EVERY`] until the process ends.
pub async fn run_worker(cache: Arc<Cache>, db: DbPool) {
    let mut interval = tokio::time::interval(POLL_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let (cache, db) = (Arc::clone(&cache), db.clone());
        if let Err(e) = db::blocking(move || {
            cache.apply_outbox(&db);
            Ok::<_, crate::error::AppError>(())
        })
        .await
        {
            log::warn!("outbox worker: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_due_once_this_instance_has_seen_it_for_the_grace_period() {
        let sightings = Sightings::default();
        let start = Instant::now();
        assert_eq!(sightings.due(&[1], start), Vec::<i32>::new());
        let later = start + GRACE / 2;
        assert_eq!(sightings.due(&[1, 2], later), Vec::<i32>::new());
        assert_eq!(sightings.due(&[1, 2], start + GRACE), vec![1]);
        // A row is forgotten once gone: seen again, it starts over.
        assert_eq!(sightings.due(&[2], start + GRACE * 2), vec![2]);
        assert_eq!(sightings.due(&[1], start + GRACE * 2), Vec::<i32>::new());
    }
}
