//! The memory tier's lease ([`MemoryLease`]): what this process knows of it (until when it may
//! serve from memory, whether it hears invalidations, whether it has left), and its side in
//! Redis: renewing it on its own ticker, acknowledging invalidations, a writer waiting for the
//! acknowledgements, withdrawing it when the instance stops. Not to be confused with a value's
//! computing lease ([`super::redis_value::FillLease`]), which one request holds while it runs a
//! query.
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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
/// Served from memory no later than this before the lease's end, as a guard against small
/// differences in clock rates.
const MARGIN: Duration = Duration::from_millis(300);

/// This instance's memory lease as this process sees it. Atomics, not a lock: the read path
/// checks it on every memory hit.
pub struct MemoryLease {
    /// Milliseconds since `started` until which this instance may serve from memory.
    valid_until_ms: AtomicU64,
    /// The origin of this process' lease clock (monotonic: never compared with Redis' clock).
    started: Instant,
    /// True while the invalidation subscription is up.
    subscribed: AtomicBool,
    /// True once the instance has stopped: the lease is never renewed again.
    withdrawn: AtomicBool,
}

impl Default for MemoryLease {
    fn default() -> Self {
        MemoryLease {
            valid_until_ms: AtomicU64::new(0),
            started: Instant::now(),
            subscribed: AtomicBool::new(false),
            withdrawn: AtomicBool::new(false),
        }
    }
}

impl MemoryLease {
    /// Now, in the lease's clock.
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Whether the lease is held at `now` ([`MemoryLease::now_ms`]).
    pub fn holds(&self, now: u64) -> bool {
        now < self.valid_until_ms.load(Ordering::Acquire)
    }

    /// Stops serving from memory at once (subscription lost, Redis failing).
    pub fn revoke(&self) {
        self.valid_until_ms.store(0, Ordering::Release);
    }

    /// The subscription came up (after which a renewal may succeed) or went down (the lease
    /// is revoked at once: announcements may now be missed).
    pub fn set_subscribed(&self, up: bool) {
        self.subscribed.store(up, Ordering::Release);
        if !up {
            self.revoke();
        }
    }

    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    /// Stops serving from memory for good (the instance is stopping).
    pub fn withdraw(&self) {
        self.withdrawn.store(true, Ordering::Release);
        self.revoke();
    }

    pub fn is_withdrawn(&self) -> bool {
        self.withdrawn.load(Ordering::Acquire)
    }

    /// The time before sending a renewal, to be passed to [`MemoryLease::renewed`]: Redis
    /// computes the lease's end after it receives the renewal, so an end counted from here
    /// always comes first.
    pub fn renewal_started(&self) -> u64 {
        self.now_ms()
    }

    pub fn renewed(&self, started_ms: u64) {
        let until = started_ms + (LEASE - MARGIN).as_millis() as u64;
        self.valid_until_ms.fetch_max(until, Ordering::AcqRel);
    }
}

impl Cache {
    /// Polls until no live lease holder lacks `generation`; bounded by the lease length, since
    /// by then every lease that was not renewed has expired.
    pub(super) fn wait_for_acknowledgements(&self, generation: Generation) -> RedisResult<()> {
        let deadline = Instant::now() + LEASE + ACK_SLACK;
        let mut conn = self.redis.connection()?;
        let mut pause = ACK_POLL_FIRST;
        loop {
            let (waiting, lost_table_left_ms): (i64, u64) =
                timings::time_cache_call("EVALSHA unacknowledged", || {
                    self.redis
                        .scripts
                        .unacknowledged
                        .key(&self.redis.keys.instances)
                        .key(&self.redis.keys.acks)
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
        let mut conn = self.redis.connection()?;
        redis::cmd("HSET")
            .arg(&self.redis.keys.acks)
            .arg(&self.local.instance_id)
            .arg(generation)
            .query::<i64>(&mut *conn)
            .map(drop)
    }

    /// Renews this instance's lease, if it is listening for invalidations and has dropped
    /// every value older than the generation in Redis.
    pub fn renew_lease(&self) {
        let lease = self.local.lease();
        if !lease.is_subscribed() || lease.is_withdrawn() {
            lease.revoke();
            return;
        }
        let started = lease.renewal_started();
        let floor = self.local.floor();
        let renewed = self.redis.connection().and_then(|mut conn| {
            self.redis
                .scripts
                .renew_lease
                .key(&self.redis.keys.instances)
                .key(&self.redis.keys.acks)
                .key(&self.redis.keys.generation)
                .arg(&self.local.instance_id)
                .arg(LEASE.as_millis() as u64)
                .arg(floor)
                .invoke::<i64>(&mut *conn)
        });
        match renewed {
            // A subscription lost during the call must not be covered by this renewal.
            Ok(1) if lease.is_subscribed() && !lease.is_withdrawn() => {
                lease.renewed(started);
            }
            // Refused: an announcement this instance has not heard (lost, or its subscription
            // is silent). Stop serving from memory, then start empty above the generation, as
            // after a reconnection: the next renewal may then succeed, and a write this
            // instance misses after that is covered the same way, its writer waiting at most
            // for this lease to lapse.
            Ok(0) => {
                lease.revoke();
                match self.current_generation() {
                    Ok(generation) => self.local.restart_from(generation),
                    Err(e) => self.report_failure("lease", &e),
                }
            }
            Ok(_) => lease.revoke(),
            Err(e) => {
                lease.revoke();
                self.report_failure("lease", &e);
            }
        }
    }

    /// Stops serving from memory for good and takes this instance out of the lease holders,
    /// so writers stop waiting for it (a graceful stop).
    pub fn withdraw_lease(&self) -> RedisResult<()> {
        self.local.lease().withdraw();
        let mut conn = self.redis.connection()?;
        self.redis
            .scripts
            .withdraw_lease
            .key(&self.redis.keys.instances)
            .key(&self.redis.keys.acks)
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
