//! The outbox of cache invalidations: written in each data change's own transaction, deleted
//! once Redis confirmed the invalidation, retried by a background task until then.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use diesel::prelude::*;

use super::trust::now_ms;
use super::{memory_lease, Cache};
use crate::db::{DbConn, DbPool};
use crate::error::CacheError;
use crate::on_backend;
use crate::schema::cache_invalidations;
use crate::timings;

/// What an outbox row invalidates, in its `cache_key` column: the generation, which every value
/// shares, so every value.
pub const ALL: &str = "generation";

/// How often every instance looks at the outbox and, while Redis is distrusted, probes it.
pub const POLL_EVERY: Duration = Duration::from_millis(250);
/// How long a writer that could not reach Redis waits for another instance to apply its
/// row: a worker's poll, one more round of it, its invalidation and its wait for
/// acknowledgements (see [`Cache::await_handover`]).
pub const HANDOVER_WAIT: Duration = Duration::from_millis(
    2 * POLL_EVERY.as_millis() as u64 + memory_lease::LEASE.as_millis() as u64 + 1_000,
);
const HANDOVER_POLL: Duration = Duration::from_millis(20);
/// A row this instance has seen for less than this, and that was not handed over, belongs to a
/// write that may still be invalidating by itself: its wait for acknowledgements lasts up to a
/// lease and a half second (longer than that and a worker would apply it again, distrusting
/// Redis meanwhile, for nothing). A row outlives it only when its writer died mid-write, and no
/// reader is owed a write that never answered.
pub const GRACE: Duration = Duration::from_millis(memory_lease::LEASE.as_millis() as u64 + 1_000);

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

/// Every row, and whether its writer handed it over.
fn pending(conn: &mut DbConn) -> QueryResult<Vec<(i32, bool)>> {
    cache_invalidations::table
        .select((cache_invalidations::id, cache_invalidations::handed_over))
        .load(conn)
}

fn hand_over(conn: &mut DbConn, ids: &[i32]) -> QueryResult<usize> {
    diesel::update(cache_invalidations::table.filter(cache_invalidations::id.eq_any(ids)))
        .set(cache_invalidations::handed_over.eq(true))
        .execute(conn)
}

fn any_left(conn: &mut DbConn, ids: &[i32]) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        cache_invalidations::table.filter(cache_invalidations::id.eq_any(ids)),
    ))
    .get_result(conn)
}

/// Runs one statement on a pooled connection, for the outbox's bookkeeping after Redis answered
/// or failed: its caller logs a failure and leaves the row to the worker.
fn pooled<T>(
    db: &DbPool,
    statement: impl FnOnce(&mut DbConn) -> QueryResult<T>,
) -> Result<T, CacheError> {
    Ok(statement(&mut *db.get()?)?)
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
    ) -> Result<T, CacheError> {
        // An immediate transaction on SQLite: a concurrent writer waits on busy_timeout
        // instead of failing to upgrade a read lock (see `write_transaction`).
        let (value, outbox_id) = crate::db::write_transaction(&mut *db.get()?, |conn| {
            let value = change(conn)?;
            let outbox_id = record(conn, ALL)?;
            Ok::<_, diesel::result::Error>((value, outbox_id))
        })?;
        self.invalidate_committed(db, &[outbox_id]);
        Ok(value)
    }

    /// Applies committed outbox rows now if Redis answers; otherwise leaves them to the worker
    /// and stops reading Redis until it has applied them. Takes a connection only to delete
    /// the applied rows, after Redis has answered. Returns the failure when this process could
    /// not apply them itself (the rows were then left to the instances).
    pub fn invalidate_committed(
        &self,
        db: &DbPool,
        outbox_ids: &[i32],
    ) -> Option<redis::RedisError> {
        // Tried even while Redis is distrusted: distrust may only mean a row is pending.
        match self.invalidate() {
            Ok(_) => {
                self.metrics.cache_invalidations.inc();
                let deleted = pooled(db, |conn| confirm(conn, outbox_ids));
                if let Err(e) = deleted {
                    // Harmless: the worker will invalidate once more and delete the row.
                    log::warn!("could not delete applied outbox rows: {e}");
                }
                None
            }
            Err(e) => {
                self.report_failure("invalidate", &e);
                self.mark_pending();
                // No instance can read a server that has refused scripts for a lease: nothing
                // to wait for (see `support`). The row stays for a server that can run it.
                if self
                    .support()
                    .scripts_refused_for(memory_lease::LEASE + HANDOVER_POLL)
                {
                    log::debug!("not waiting for a handover: the server refuses scripts");
                } else {
                    self.await_handover(db, outbox_ids);
                }
                Some(e)
            }
        }
    }

    /// After this instance failed to invalidate: hands the rows to every instance's worker,
    /// and answers once one of them has applied them, or once none can have been reading
    /// Redis since.
    ///
    /// Another instance may still reach Redis (a partial partition) and serve the old value,
    /// from Redis or from memory under a lease it keeps renewing: only its worker applying the
    /// row stops that, so the write waits for the row to go. A handed-over row is due at once
    /// on every instance; a worker sees it within [`POLL_EVERY`], invalidates, waits at most
    /// [`memory_lease::LEASE`] and a half for acknowledgements, and deletes it. If it is still there
    /// after [`HANDOVER_WAIT`], no instance could apply it: each one that tried distrusts Redis
    /// (reading neither it nor its memory), and one that cannot reach Redis lost its memory
    /// lease by then.
    fn await_handover(&self, db: &DbPool, outbox_ids: &[i32]) {
        let started = Instant::now();
        let deadline = started + HANDOVER_WAIT;
        let handed = pooled(db, |conn| hand_over(conn, outbox_ids));
        if let Err(e) = handed {
            log::warn!("could not hand pending invalidations over: {e}");
        }
        while Instant::now() < deadline {
            std::thread::sleep(HANDOVER_POLL);
            let left = pooled(db, |conn| any_left(conn, outbox_ids));
            if let Ok(false) = left {
                log::debug!(
                    "pending invalidation applied by a peer in {:?}",
                    started.elapsed()
                );
                return;
            }
        }
    }

    /// One round of the worker: probe Redis if it is distrusted, apply due outbox rows or
    /// follow the database's mark, and trust Redis again only once nothing is left to apply.
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
        let read = pending(&mut conn)
            .and_then(|present| Ok((present, super::generation::committed(&mut conn)?)));
        let (present, mark) = match read {
            Ok(read) => read,
            Err(e) => {
                log::warn!("outbox: cannot read pending invalidations: {e}");
                return;
            }
        };
        // Not held while Redis is waited on (up to a lease when a peer is silent).
        drop(conn);
        let handed_over: Vec<i32> = present.iter().filter(|r| r.1).map(|r| r.0).collect();
        let present: Vec<i32> = present.into_iter().map(|r| r.0).collect();
        let mut due = self.outbox_sightings.due(&present, Instant::now());
        // A writer that could not reach Redis waits for this: no grace.
        for id in handed_over {
            if !due.contains(&id) {
                due.push(id);
            }
        }
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
            let deleted = pooled(db, |conn| confirm(conn, &ids));
            if let Err(e) = deleted {
                log::warn!("outbox: applied but could not delete rows: {e}");
                return;
            }
            log::info!("applied {} pending cache invalidation(s)", ids.len());
        } else if let Err(e) = self.follow_mark(db, mark) {
            self.report_failure("mark", &e);
            return;
        }
        self.resume_if_no_failure_since(failures_seen);
    }

    /// Brings Redis' generation to the database's mark when they differ with no outbox row due.
    ///
    /// The mark is raised by a trigger in every transaction that changes `students`, whoever
    /// runs it (`psql`, an ETL job, another service): such a change leaves no outbox row, and
    /// this is how it reaches the cache, within a round of the worker ([`POLL_EVERY`]) and an
    /// invalidation's wait. Trust is not restored before this ran, so a Redis that comes back
    /// after an outage during which such a change committed is brought up to date first.
    ///
    /// A generation that is missing (a flush, an eviction) is put back at once rather than at
    /// the next read ([`super::resync::Resync::repair`]); one above the mark means the
    /// database lost commits that Redis saw, and the invalidation raises the mark past it
    /// ([`Cache::move_generation`]). An application write between its commit and its own
    /// invalidation also looks like a mark ahead of Redis; invalidating for it too costs one
    /// more script. No acknowledgements are awaited: nobody waits for an answer, and every
    /// instance's own round drops its copy.
    pub(super) fn follow_mark(
        &self,
        db: &DbPool,
        mark: super::generation::Generation,
    ) -> redis::RedisResult<()> {
        let Some(found) = self.redis.inspect()? else {
            let mut conn = self.redis.connection()?;
            return self.resync.repair(&mut *conn, self.local.floor());
        };
        // What this instance's subscriber does on an announcement; here too, so that one whose
        // subscription went silent, after another instance applied a change made outside,
        // drops its older copy within a round instead of when its lease runs out.
        self.local.invalidated(found);
        if found == mark {
            return Ok(());
        }
        if found > mark {
            // Likely a write that committed and invalidated since the mark was read.
            let now = db
                .get()
                .map_err(|e| super::resync::database_error(&e))
                .and_then(|mut conn| {
                    super::generation::committed(&mut conn)
                        .map_err(|e| super::resync::database_error(&e))
                })?;
            if found <= now {
                return Ok(());
            }
        } else {
            self.metrics.cache_outside_changes.inc();
            log::info!(
                "the database's generation mark ({mark}) is ahead of redis' ({found}) with no \
                 invalidation pending: a change made outside the application; invalidating"
            );
        }
        self.move_generation().map(drop)
    }
}

/// Applies the outbox every [`POLL_EVERY`] until the process ends.
pub async fn run_worker(cache: Arc<Cache>, db: DbPool) {
    let mut interval = tokio::time::interval(POLL_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let (cache, db) = (Arc::clone(&cache), db.clone());
        if let Err(e) = timings::run_blocking(move || cache.apply_outbox(&db)).await {
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
