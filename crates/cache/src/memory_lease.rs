//! The memory tier's lease in Redis: renewing it, acknowledging invalidations, a writer
//! waiting for the acknowledgements, and withdrawing the lease when the instance stops.
//!
//! See [`super::local`] for the argument. What this module adds to it:
//!
//! - A lease is renewed only while the instance's floor is at least the generation in Redis
//!   (`renew_lease.lua`), so an instance that stopped hearing invalidations (a subscription
//!   dropped without a FIN) loses its lease within [`LEASE`] of the first write it missed, even
//!   though its other connections still renew.
//! - A writer waits until every live lease holder has acknowledged its generation. A holder can
//!   only be missing once its lease has ended, so an acknowledgement still missing at the
//!   deadline means the argument's assumptions failed (clocks, a stalled Redis): the write
//!   reports a failure and leaves its invalidation in the outbox, it never counts it as done.
//! - A graceful stop withdraws the lease and the acknowledgement entry, so writers do not wait
//!   out the lease of an instance that has left.

use std::time::{Duration, Instant};

use redis::{RedisError, RedisResult};

use super::generation::Generation;
use super::Cache;
use crate::timings;

/// How long a lease lasts in Redis.
pub const LEASE: Duration = Duration::from_secs(2);
/// How often it is renewed, on its own schedule ([`run_renewal`]): not from the outbox
/// worker, which needs the database, so that a database outage does not switch the memory
/// tier off (with the database down nothing can be written, so the memory copy is as current
/// as Redis').
pub const RENEW_EVERY: Duration = Duration::from_millis(250);
/// How long past [`LEASE`] a writer waits for acknowledgements before it reports a failure.
const ACK_SLACK: Duration = Duration::from_millis(500);
/// A writer looks for acknowledgements again after this, then twice as long each time up to
/// [`ACK_POLL_MAX`]: acknowledgements normally come within a millisecond, but a wait for a lease
/// to lapse lasts up to two seconds, and polled every millisecond that was about 1,500 scripts
/// per waiting write, at the moment Redis or a peer is in trouble.
const ACK_POLL_FIRST: Duration = Duration::from_millis(1);
const ACK_POLL_MAX: Duration = Duration::from_millis(20);

impl Cache {
    /// Polls until no live lease holder lacks `generation`; bounded by the lease length, since
    /// by then every lease that was not renewed has expired.
    pub(super) fn wait_for_acknowledgements(&self, generation: Generation) -> RedisResult<()> {
        let deadline = Instant::now() + LEASE + ACK_SLACK;
        let mut conn = self.connection()?;
        let mut pause = ACK_POLL_FIRST;
        loop {
            let (waiting, lost_table_left_ms): (i64, u64) =
                timings::time_cache_call("EVALSHA unacknowledged", || {
                    self.scripts
                        .unacknowledged
                        .key(&self.keys.instances)
                        .key(&self.keys.acks)
                        .arg(generation)
                        .arg(LEASE.as_millis() as u64)
                        .invoke(&mut *conn)
                })?;
            // A table created less than a lease ago (a flush or an eviction took the one
            // before), or a server met less than a lease ago (see `resync::ServerMet`), may not
            // name every holder.
            if waiting == 0 && lost_table_left_ms == 0 && self.resync.met().earlier_leases_ended() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("{waiting} instance(s) did not acknowledge generation {generation}"),
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(ACK_POLL_MAX);
        }
    }

    /// Records that this instance dropped every value older than `generation`.
    pub fn acknowledge(&self, generation: Generation) -> RedisResult<()> {
        let mut conn = self.connection()?;
        redis::cmd("HSET")
            .arg(&self.keys.acks)
            .arg(&self.local.instance_id)
            .arg(generation)
            .query::<i64>(&mut *conn)
            .map(drop)
    }

    /// Renews this instance's lease, if it is listening for invalidations and has dropped
    /// every value older than the generation in Redis.
    pub fn renew_lease(&self) {
        if !self.local.is_subscribed() || self.local.is_withdrawn() {
            self.local.revoke();
            return;
        }
        let started = self.local.renewal_started();
        let floor = self.local.floor();
        let renewed = self.connection().and_then(|mut conn| {
            self.scripts
                .renew_lease
                .key(&self.keys.instances)
                .key(&self.keys.acks)
                .key(&self.keys.generation)
                .arg(&self.local.instance_id)
                .arg(LEASE.as_millis() as u64)
                .arg(floor)
                .invoke::<i64>(&mut *conn)
        });
        match renewed {
            // A subscription lost during the call must not be covered by this renewal.
            Ok(1) if self.local.is_subscribed() && !self.local.is_withdrawn() => {
                self.local.renewed(started);
            }
            // Refused: an announcement this instance has not heard (lost, or its subscription
            // is silent). Stop serving from memory, then start empty above the generation, as
            // after a reconnection: the next renewal may then succeed, and a write this
            // instance misses after that is covered the same way, its writer waiting at most
            // for this lease to lapse.
            Ok(0) => {
                self.local.revoke();
                match self.current_generation() {
                    Ok(generation) => self.local.restart_from(generation),
                    Err(e) => self.report_failure("lease", &e),
                }
            }
            Ok(_) => self.local.revoke(),
            Err(e) => {
                self.local.revoke();
                self.report_failure("lease", &e);
            }
        }
    }

    /// Stops serving from memory for good and takes this instance out of the lease holders,
    /// so writers stop waiting for it (a graceful stop).
    pub fn withdraw_lease(&self) -> RedisResult<()> {
        self.local.withdraw();
        let mut conn = self.connection()?;
        self.scripts
            .withdraw_lease
            .key(&self.keys.instances)
            .key(&self.keys.acks)
            .arg(&self.local.instance_id)
            .invoke::<i64>(&mut *conn)
            .map(drop)
    }
}

/// Renews this instance's memory lease every [`RENEW_EVERY`] until the process ends.
pub async fn run_renewal(cache: std::sync::Arc<Cache>) {
    let mut interval = tokio::time::interval(RENEW_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if !cache.is_usable() {
            continue;
        }
        let renewer = std::sync::Arc::clone(&cache);
        let renewed = crate::timings::run_blocking(move || renewer.renew_lease()).await;
        if let Err(e) = renewed {
            log::warn!("memory lease renewal: {e}");
        }
    }
}
