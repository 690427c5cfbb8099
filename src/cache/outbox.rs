//! The outbox of cache invalidations: written in each data change's own transaction, deleted
//! once Redis confirmed the invalidation, retried by a background task until then.

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;

use super::trust::now_ms;
use super::Cache;
use crate::db::{self, DbConn, DbPool};
use crate::on_backend;
use crate::schema::cache_invalidations;

/// The logical name of the one cached value, as stored in the outbox.
pub const AVERAGE_AGE: &str = "students:average_age";

/// How often every instance looks at the outbox and, while Redis is distrusted, probes it.
pub const POLL_EVERY: Duration = Duration::from_millis(250);
/// A row younger than this belongs to a write that is probably still invalidating by itself.
pub const GRACE: Duration = Duration::from_millis(750);

/// Records that `cache_key` must be invalidated, and raises the generation's mark; call inside the data change's transaction.
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

fn due(conn: &mut DbConn, created_before_ms: i64) -> QueryResult<Vec<i32>> {
    cache_invalidations::table
        .filter(cache_invalidations::created_at_ms.le(created_before_ms))
        .select(cache_invalidations::id)
        .load(conn)
}

impl Cache {
    /// Runs `change` and records the invalidation in one transaction, then invalidates. The
    /// change is kept even when Redis is down: the outbox row guarantees the invalidation.
    pub fn commit_and_invalidate<T>(
        &self,
        conn: &mut DbConn,
        change: impl FnOnce(&mut DbConn) -> QueryResult<T>,
    ) -> QueryResult<T> {
        // The change comes first: in SQLite its write takes the write lock at once, so a
        // concurrent writer waits on busy_timeout instead of failing to upgrade a read lock.
        let (value, outbox_id) = conn.transaction(|conn| {
            let value = change(conn)?;
            let outbox_id = record(conn, AVERAGE_AGE)?;
            Ok::<_, diesel::result::Error>((value, outbox_id))
        })?;
        self.invalidate_committed(conn, &[outbox_id]);
        Ok(value)
    }

    /// Applies committed outbox rows now if Redis answers; otherwise leaves them to the worker
    /// and stops reading Redis until it has applied them.
    pub fn invalidate_committed(&self, conn: &mut DbConn, outbox_ids: &[i32]) {
        // Tried even while Redis is distrusted: distrust may only mean a row is pending.
        match self.invalidate() {
            Ok(_) => {
                self.metrics.cache_invalidations.inc();
                if let Err(e) = confirm(conn, outbox_ids) {
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
        // After a failure here or anywhere, every row counts, however young.
        let everything = !self.is_usable();
        let cutoff = if everything {
            i64::MAX
        } else {
            now_ms() as i64 - GRACE.as_millis() as i64
        };
        let ids = match due(&mut conn, cutoff) {
            Ok(ids) => ids,
            Err(e) => {
                log::warn!("outbox: cannot read pending invalidations: {e}");
                return;
            }
        };
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
            if let Err(e) = confirm(&mut conn, &ids) {
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
