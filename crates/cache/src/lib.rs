//! A cache of database queries in Redis (and in each process' memory), and what keeps it
//! correct. It caches any [`CachedQuery`] and knows nothing of what the queries read: in
//! CacheWithRedis the average page's aggregate and the pages of the list are its two users
//! (`src/models/cached.rs`). All values share one generation, so one invalidation covers every
//! cached value.
//!
//! The application gives it a database pool ([`db`]), runs its migrations with its own
//! ([`migrations`]), registers its series ([`metrics`]), converts its errors ([`CacheError`]),
//! and raises the generation's mark in every transaction that changes what a query reads
//! (a trigger, see [`generation`]).
//!
//! # Keys
//!
//! Every key starts with `CACHE_KEY_PREFIX` in braces, a hash tag (`{cachewithredis}:…`; written
//! `{prefix}` below), so that all of them are in one slot of a Redis Cluster ([`keys`]).
//!
//! - `{prefix}:{query key}` (`students:average_age`, `students:page:3`): a value, an envelope
//!   `{"generation", "database", "computed_at_ms", "compute_us", "payload"}` ([`envelope`]),
//!   with a TTL of `CACHE_TTL_SECS` less up to 10% random jitter (so keys filled together do
//!   not all expire together). An invalidation leaves it to expire: its generation is older.
//! - `{prefix}:{query key}:lock`: the value's computing lease ([`redis_value::FillLease`]),
//!   `<generation>:<token>`, held by the one request that computes the value on a miss; only
//!   its holder renews or releases it, and one taken before the last invalidation is free.
//! - `{prefix}:generation`: the generation. It only ever moves to the maximum of itself and the
//!   database's high-water mark (see [`generation`]). No TTL.
//! - `{prefix}:invalidations` (pub/sub), `{prefix}:instances` and `{prefix}:acks`: the memory
//!   tier's announcements, leases and acknowledgements (see [`local`] and [`memory_lease`]); the
//!   lease table carries a marker member `since:<ms>` scored `+inf`, when it was created.
//! - `{prefix}:database`: the identity of the database whose cache the keys are (see
//!   [`owner`]); the value carries it too, as `"database"`.
//! - `{prefix}:server_met:{run_id}:{replication id}`: when a server was first met in its role,
//!   in its own clock (Unix ms), kept a day (see [`resync::ServerMet`]).
//! - `{prefix}:stats`: a hash of each instance's last hour of figures, for the staff page
//!   ([`history`]); a publisher forgets the instances that no longer hold a memory lease.
//!
//! The Lua scripts are in `src/scripts/`, each with its KEYS and ARGV documented.
//!
//! # Read path (cache-aside; a hit costs no round trip, or one)
//!
//! A copy in process memory is served first, while this instance holds a lease that every
//! write respects (see [`local`] for why that never serves a value from before a write that
//! has answered). Otherwise one script returns the value if it is current (JSON this
//! application wrote, at the current generation, not below this instance's floor); otherwise
//! it reads the generation and tries to take the lease. The lease holder runs the query and
//! stores it with a second script that sets the value **only if the generation is still the
//! one read before the query**, then releases the lease. Requests that did not get the lease
//! re-run the first script every few milliseconds and get the value once it is there, or the
//! lease themselves once it is free; past [`WAIT_FOR_LEADER`] they query the database
//! themselves rather than hang. When Redis cannot be used, the page is computed from the
//! database through [`single_flight`]: one aggregate at a time per process, never shared with a
//! request that arrived after it started.
//!
//! Near the expiry, an early refresh ([`xfetch`]) recomputes the value in the background under
//! the same lease and the same generation check, so a hot key does not miss at expiry.
//!
//! # Write path
//!
//! The data change, a row in `cache_invalidations` (the outbox) and an increment of the
//! generation's mark (`cache_generation`) commit in one transaction, and the connection goes
//! back to the pool: the waits below take seconds when Redis is slow or a peer is silent, and
//! must not starve the pages of connections. Then the writer reads the mark, and one script
//! raises the generation to it (which makes every value and lease older) and publishes the
//! generation; the writer waits until every instance holding a memory lease has
//! acknowledged it (or its lease has expired); then the outbox row is deleted; then the
//! response is sent.
//!
//! # Why no reader can put back a value from before a write (the stale set)
//!
//! The mark is incremented under the row lock of its one row, so marks are handed out in
//! commit order, and the generation in Redis is never above the mark committed at that moment.
//! So if a reader R reads generation g, every write whose mark is at most g had committed, and
//! R's query, which starts after, includes them. A write W that commits after R read g has a
//! mark above g, and W's invalidation raises the generation to at least that mark before W
//! answers: R's store then sees another generation and does nothing (Redis runs the compare and
//! the set as one script, so W cannot come between them). This is what memcache's leases
//! (Nishtala et al., NSDI 2013) do, with the counter made durable. A lease names the generation
//! it was taken at, so W's raise also frees R's lease: the next reader takes it over and starts
//! a fresh query at once instead of waiting for one that is now useless, and R, which no longer
//! holds it, neither renews nor releases the new holder's (`read_or_lease.lua`).
//!
//! # Why a Redis that lost data serves nothing old (restart from a snapshot, failover)
//!
//! Such a server comes back with an older generation and perhaps an older value at it. It is a
//! new process with a new `run_id`, and every connection to it is new; the pool checks the
//! server of each connection it opens, and the first time this process meets a server it raises
//! its generation to the database's mark before the connection is used ([`resync`]). Every
//! generation ever seen in Redis was at most the mark, so afterwards an old value is not at the
//! current generation (a miss), and an old fill is refused. A new process, whose floor is 0,
//! meets its first server the same way, so it does not depend on what other instances know.
//!
//! # Why losing any key is a loss, never a value (a flush, an eviction, a `DEL`)
//!
//! Redis may drop any key at any moment without restarting: `FLUSHALL`, Django's
//! `cache.clear()` (a `FLUSHDB`), eviction under `maxmemory` with an `allkeys-` policy. Each key's
//! loss is met by the script that reads it:
//!
//! - The generation missing, or below this instance's floor: the read script answers `resync`,
//!   and the reader raises it to the database's mark (and the mark to at least the floor)
//!   exactly as for a new server, under one lock, then reads again ([`resync::Resync::repair`]);
//!   the worker does the same within a round ([`outbox`]). Without this, every fill would be
//!   refused below the floor and every read run its own aggregate until the next write.
//! - The lease table missing: it may have named leases that still run. A table is created with
//!   a marker saying when (`renew_lease.lua`, `unacknowledged.lua`), and a writer waits until a
//!   lease has passed since then, as after meeting a new server ([`memory_lease`]).
//! - The value, the computing lease or an acknowledgement missing: a miss, a second aggregate,
//!   or a writer waiting for a holder to acknowledge again; slower, never older.
//! - The owner missing: the next server to look claims it ([`owner`]).
//!
//! # Why a change made outside the application shows within a second
//!
//! The mark is raised by triggers on the tables the queries read (`students`, in CacheWithRedis)
//! in the writing transaction, whoever writes (`psql`, an ETL job): the application's writes and
//! everyone else's alike. Every instance's worker compares the mark with the generation in Redis
//! every [`outbox::POLL_EVERY`] and invalidates when the mark is ahead ([`Cache::follow_mark`]);
//! no outbox row is needed.
//!
//! # Why a value the application did not write is replaced at once
//!
//! The read script treats anything that is not this application's JSON, computed from this
//! database, at the current generation as absent, under the computing lease: one request
//! replaces it, the others wait for that value as in any miss. A value from another database
//! (two deployments sharing one Redis and prefix) is counted and logged ([`owner`]).
//!
//! # Why one aggregate runs per stampede, across instances
//!
//! The lease lives in Redis, which all instances share; `SET NX PX` grants it to one request. Its
//! holder renews it every [`RENEW_LOCK_EVERY`] while its aggregate runs (a script that extends it
//! only if it still holds the holder's token), so the lease exists exactly while an aggregate
//! runs, however long it takes, or for at most [`LOCK_TTL`] after its holder died. Waiters wait
//! while it exists, up to [`WAIT_FOR_LEADER`]; a slow database therefore costs one aggregate, not
//! one per waiter.
//!
//! # Why an invalidation is never lost
//!
//! If Redis cannot be reached after the commit, or an instance's acknowledgement is still
//! missing at the write's deadline, the outbox row stays. A background task on every instance
//! ([`outbox::run_worker`]) retries due rows at least once a second and at start-up. While a row
//! is pending, after any failed call, and at start-up until the outbox was applied once, the
//! instance does not read Redis at all ([`trust`]): the page is computed from the database
//! (`X-Cache: BYPASS`). Trust comes back only after the pending rows are applied with no failure
//! in between, so a Redis that comes back still holding the old value is cleaned before anyone
//! reads it. A writer that could not invalidate hands its row over, so that every instance
//! applies it at once, and answers only once one has (or none can still be reading Redis:
//! [`Cache::await_handover`]); this closes the partial partition, where Redis is unreachable
//! from the writer yet reachable from a reader. A row that was not handed over (its writer died
//! mid-write) is applied once an instance has seen it for [`outbox::GRACE`], counted on its own
//! monotonic clock ([`outbox::Sightings`]): no two hosts' clocks are ever compared. `seed`
//! records a row in every batch's transaction, so a row applied early by a worker leaves no
//! later batch uncovered.
//!
//! # Why a rolling restart costs writes nothing
//!
//! A graceful stop (SIGTERM) withdraws the instance's memory lease once the server has stopped
//! ([`Cache::withdraw_lease`]), so writers never wait for an instance that has left; only a
//! killed instance makes writes wait, for at most the rest of its lease.
pub mod db;
pub mod envelope;
pub mod error;
pub mod generation;
pub mod history;
pub mod keys;
pub mod local;
pub mod lookup;
pub mod memory_lease;
pub mod metrics;
pub mod migrations;
pub mod monitor;
pub mod outbox;
pub mod owner;
pub mod query;
pub mod redis_link;
pub mod redis_pool;
pub mod redis_target;
pub mod redis_url;
pub mod redis_value;
pub mod resync;
pub mod schema;
pub mod scripts;
pub mod single_flight;
pub mod snapshot;
pub mod support;
pub mod tier;
pub mod timings;
pub mod trust;
pub mod xfetch;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use redis::RedisResult;

use crate::db::DbPool;
use crate::metrics::CacheMetrics;
use generation::Generation;
use local::LocalTier;
use redis_pool::RedisPool;
use trust::{RedisTrust, TrustEpoch};

pub use keys::{Keys, ValueKeys};
pub use redis_link::RedisLink;

pub use error::CacheError;
pub use lookup::{CacheOutcome, Lookup};
pub use query::CachedQuery;
pub use tier::Tier;
pub use xfetch::early_refresh_due;

/// How long the computing lease lasts unless its holder renews it: how soon after a holder
/// died another request may compute the value.
pub const LOCK_TTL: Duration = Duration::from_secs(3);
/// How often the holder renews the computing lease while its query runs.
pub const RENEW_LOCK_EVERY: Duration = Duration::from_secs(1);
/// How long a request waits for another request's query, while that request keeps its
/// lease alive, before it runs its own: PostgreSQL's `statement_timeout`, past which that
/// query has failed anyway.
pub const WAIT_FOR_LEADER: Duration = Duration::from_secs(30);

/// The cache: Redis, whether it may be read now, the memory tier, and what keeps them correct.
pub struct Cache {
    /// The pool, the server, the key names, the scripts, this database's identity.
    redis: RedisLink,
    ttl: Duration,
    /// Where the generation's high-water mark is read (see [`generation`]).
    db: DbPool,
    /// Whether requests may read Redis: not after a failure, not while an invalidation may be
    /// pending, not before the outbox was applied once.
    trust: RedisTrust,
    metrics: Arc<CacheMetrics>,
    local: LocalTier,
    /// True while this process runs an early refresh.
    refreshing: AtomicBool,
    /// When this instance first saw each outbox row (see [`outbox::Sightings`]).
    outbox_sightings: outbox::Sightings,
    /// The queries run without Redis' lease, one at a time per key (see [`single_flight`]).
    database_flights: single_flight::Flights,
    /// Puts back a generation Redis lost, and knows when the previous server's leases end
    /// (see [`resync`]).
    resync: Arc<resync::Resync>,
    /// The last value served from the cache, for the consistency [`monitor`].
    served: monitor::LastServed,
}

impl Cache {
    pub fn new(
        pool: RedisPool,
        client: Arc<redis_target::RedisTarget>,
        prefix: &str,
        ttl: Duration,
        metrics: Arc<CacheMetrics>,
        db: DbPool,
        resync: Arc<resync::Resync>,
    ) -> Result<Self, CacheError> {
        let identity = owner::database_identity(&mut *db.get()?)?;
        Ok(Cache {
            resync,
            redis: RedisLink::new(pool, client, Keys::new(prefix), owner::Owner::new(identity)),
            local: LocalTier::new(format!("{:016x}", rand::rng().random::<u64>())),
            ttl,
            db,
            trust: RedisTrust::default(),
            metrics,
            refreshing: AtomicBool::new(false),
            outbox_sightings: outbox::Sightings::default(),
            database_flights: single_flight::Flights::default(),
            served: monitor::LastServed::default(),
        })
    }

    /// Lets this process claim Redis keys that no database owns: servers do, commands never
    /// (see [`owner`]).
    pub fn claim_unowned_keys(&self) {
        self.redis.owner.claim_unowned();
    }

    /// The in-process tier.
    pub fn local(&self) -> &LocalTier {
        &self.local
    }

    /// Starts the thread that listens for invalidations (servers only; the commands write but
    /// never serve from memory).
    pub fn start_subscriber(self: &Arc<Self>) {
        let (cache, client) = (Arc::downgrade(self), self.redis.target.clone());
        let spawned = std::thread::Builder::new()
            .name("cache-invalidations".into())
            .spawn(move || local::run_subscriber(cache, client));
        if let Err(e) = spawned {
            log::error!("cannot start the invalidation listener, serving without memory tier: {e}");
        }
    }

    /// Starts, in one place, what keeps this instance's copies correct while it serves: the
    /// invalidation listener, the memory lease's own ticker ([`memory_lease::run_renewal`]), the outbox
    /// worker and the consistency monitor. Called once the outbox was applied
    /// ([`Cache::apply_outbox`]), on the tokio runtime the server runs on.
    pub fn start_background(self: &Arc<Self>, db: DbPool) {
        self.start_subscriber();
        tokio::spawn(memory_lease::run_renewal(Arc::clone(self)));
        tokio::spawn(outbox::run_worker(Arc::clone(self), db.clone()));
        tokio::spawn(monitor::run(Arc::clone(self), db));
    }

    /// Where Redis is, for connections of its own outside the pool (the staff page's sampler).
    pub fn redis_target(&self) -> Arc<redis_target::RedisTarget> {
        Arc::clone(&self.redis.target)
    }

    /// The Redis in use (`host:port`); through Sentinel, the master last named.
    pub fn redis_master(&self) -> Option<String> {
        self.redis.target.master()
    }

    pub fn keys(&self) -> &Keys {
        &self.redis.keys
    }

    /// The Lua scripts, for the callers with connections of their own (the staff page's sampler).
    pub fn scripts(&self) -> &scripts::Scripts {
        &self.redis.scripts
    }

    pub fn metrics(&self) -> &CacheMetrics {
        &self.metrics
    }

    /// Whether requests may read Redis now: it is trusted (see [`trust`]) and it can do the
    /// job at all (see [`support`]).
    pub fn is_usable(&self) -> bool {
        self.trust.is_trusted() && self.support().is_supported()
    }

    /// What the server in use refuses, if anything (see [`support`]).
    pub fn support(&self) -> &support::ServerSupport {
        self.resync.support()
    }

    /// Records a failed call (counter, rate-limited log) and stops reading Redis.
    pub fn report_failure(&self, context: &str, error: &redis::RedisError) {
        self.trust.failed(&self.metrics, context, error);
    }

    /// Stops reading Redis until the worker has applied the outbox.
    fn mark_pending(&self) -> TrustEpoch {
        self.metrics.cache_invalidations_pending.inc();
        self.trust.distrust()
    }

    fn trust_epoch(&self) -> TrustEpoch {
        self.trust.epoch()
    }

    /// Resumes reading Redis, unless a failure happened since `seen` was read.
    fn resume_if_no_failure_since(&self, seen: TrustEpoch) {
        let was_trusted = self.trust.is_trusted();
        if self.trust.restore_if_unchanged(seen) {
            self.metrics.cache_invalidations_pending.set(0);
            if !was_trusted {
                log::info!("redis is trusted again; caching resumed");
            }
        }
    }

    /// The single flights of queries run without Redis.
    pub fn database_flights(&self) -> &single_flight::Flights {
        &self.database_flights
    }

    /// Claims the one early refresh this process may run at a time.
    pub fn start_refresh(&self) -> bool {
        !self.refreshing.swap(true, Ordering::AcqRel)
    }

    pub fn end_refresh(&self) {
        self.refreshing.store(false, Ordering::Release);
    }

    /// Raises the generation to the database's mark (every value and lease is then older), and
    /// announces the generation, in one atomic script; then waits until every instance serving
    /// from memory has dropped the old value (see [`local`]). Returns the generation.
    pub fn invalidate(&self) -> RedisResult<Generation> {
        let generation = self.move_generation()?;
        self.wait_for_acknowledgements(generation)?;
        Ok(generation)
    }

    /// [`Cache::invalidate`] without the wait: for a change whose writer is not waiting for an
    /// answer (one made outside the application), the announcement and each instance's own
    /// worker ([`Cache::follow_mark`]) are what drop the copies in memory.
    ///
    /// The generation must move: a lease or a fill read before the change carries the
    /// generation then current, and only a new one refuses it. It always does while the mark is
    /// the high-water mark of every generation Redis held; after a database failover or restore
    /// that lost the last commits, with Redis kept, the mark can be behind, and raising Redis to
    /// it moves nothing. Then the mark is raised above Redis' generation (in the database, so it
    /// stays the high-water mark), and the script runs again with it. (A generation already at
    /// the mark is raised too: another instance may have applied this very mark first, but a
    /// mark behind can also have caught up with Redis exactly, and the two look alike.)
    pub(crate) fn move_generation(&self) -> RedisResult<Generation> {
        // Read after the change committed, so the mark covers it (see [`generation`]).
        let mut mark = self.with_database(generation::committed)?;
        let generation = loop {
            let (generation, before) = self.redis.invalidate_at(mark)?;
            if before < mark {
                break generation;
            }
            if before > mark {
                log::warn!(
                    "the database's generation mark ({mark}) is below redis' ({before}): a \
                     failover or restore lost commits; raising it"
                );
            }
            mark = self.with_database(|conn| {
                generation::raise_to(conn, Generation::new(before.get() + 1))
            })?;
        };
        self.local.invalidated(generation);
        Ok(generation)
    }

    /// Invalidates without a data change (`cache-clear`, after changes made behind the
    /// application's back): the mark is raised first, so the generation moves and every copy,
    /// in Redis and in memory, is dropped.
    pub fn clear(&self) -> RedisResult<Generation> {
        self.with_database(generation::bump)?;
        self.invalidate()
    }

    /// Runs one statement on the generation's mark; a failure fails the invalidation like an
    /// unreachable Redis would, leaving the outbox row to the worker.
    fn with_database<T>(
        &self,
        statement: impl FnOnce(&mut db::DbConn) -> diesel::QueryResult<T>,
    ) -> RedisResult<T> {
        let mut conn = self.db.get().map_err(|e| resync::database_error(&e))?;
        statement(&mut conn).map_err(|e| resync::database_error(&e))
    }

    /// The generation now in Redis.
    pub fn current_generation(&self) -> RedisResult<Generation> {
        self.redis.current_generation()
    }

    pub fn ping(&self) -> RedisResult<()> {
        self.redis.ping()
    }

    /// `CACHE_TTL_SECS` less a random 0–10%, never below one millisecond.
    fn ttl_with_jitter(&self) -> Duration {
        let ttl_ms = self.ttl.as_millis() as u64;
        let jitter = rand::rng().random_range(0..=ttl_ms / 10);
        Duration::from_millis((ttl_ms - jitter).max(1))
    }
}
