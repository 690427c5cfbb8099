//! The Redis cache of the average-age aggregate, and what keeps it correct.
//!
//! # Keys
//!
//! - `{prefix}:students:average_age`: the value, JSON `{"average_age", "student_count",
//!   "generation", "compute_us", "ages"}` (`ages`: students per age, `{"18": 12, ...}`), with a TTL of `CACHE_TTL_SECS` less up to 10% random jitter
//!   (so keys filled together do not all expire together).
//! - `{prefix}:students:average_age:generation`: a counter every write increments. No TTL.
//! - `{prefix}:students:average_age:lock`: a short lease held by the one request that computes
//!   the value on a miss, with a random token so only its holder releases it.
//! - `{prefix}:invalidations` (pub/sub), `{prefix}:instances` and `{prefix}:acks`: the memory
//!   tier's announcements, leases and acknowledgements (see [`local`]).
//!
//! # Read path (cache-aside; a hit costs no round trip, or one)
//!
//! A copy in process memory is served first, while this instance holds a lease that every
//! write respects (see [`local`] for why that never serves a value from before a write that
//! has answered). Otherwise one Lua script returns the value if present; otherwise it reads the
//! generation and tries to take the lease. The lease holder runs the aggregate and stores it with a second script that
//! sets the value **only if the generation is still the one read before the query**, then
//! releases the lease. Requests that did not get the lease re-run the first script every few
//! milliseconds and get the value once it is there, or the lease themselves once it is free; past
//! [`WAIT_FOR_LEADER`] they query the database themselves rather than hang.
//!
//! Near the expiry, [`average`]'s early refresh (XFetch) recomputes the value in the background
//! under the same lease and the same generation check, so a hot key does not miss at expiry.
//!
//! # Write path
//!
//! The data change and a row in `cache_invalidations` (the outbox) commit in one transaction.
//! Then one script increments the generation, deletes the value and the lease, and publishes
//! the new generation; the writer waits until every instance holding a memory lease has
//! acknowledged it (or its lease has expired); then the outbox row is deleted; then the
//! response is sent.
//!
//! # Why no reader can put back a value from before a write (the stale set)
//!
//! A reader R reads generation g, then queries. If a write W's increment happens after R read g,
//! R's store sees g+1 and does nothing. If W's increment happened before R read g, then W had
//! committed before R read g, hence before R's query began, so R's value already includes W. This
//! is what memcache's leases (Nishtala et al., NSDI 2013) do; Redis runs each script atomically,
//! so the compare and the set cannot be split by W. Deleting the lease in W lets the next reader
//! start a fresh query at once instead of waiting for one that is now useless.
//!
//! # Why one aggregate runs per stampede, across instances
//!
//! The lease lives in Redis, which all instances share; `SET NX PX` grants it to one request. Its
//! TTL ([`LOCK_TTL`]) is longer than the aggregate takes, and only bounds the damage of a holder
//! that dies.
//!
//! # Why an invalidation is never lost
//!
//! If Redis cannot be reached after the commit, the outbox row stays. A background task on every
//! instance ([`outbox::run_worker`]) retries due rows at least once a second and at start-up.
//! While a row is pending, or while the circuit [`breaker`] is open, requests do not read Redis at
//! all: the page is computed from the database (`X-Cache: BYPASS`). The breaker closes only after
//! the pending rows are applied, so a Redis that comes back still holding the old value is cleaned
//! before anyone reads it. An instance learns of another instance's failed invalidation from the
//! outbox table within [`outbox::POLL_EVERY`] + [`outbox::GRACE`]; that is the one window left,
//! and it needs Redis to be unreachable from the writer yet reachable from the reader.

pub mod average;
pub mod breaker;
pub mod history;
pub mod local;
pub mod outbox;
pub mod redis_pool;
pub mod tier;

use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::Rng;
use redis::{RedisResult, Script};

use crate::metrics::{self, Metrics};
use crate::models::AverageAge;
use breaker::Breaker;
use local::{LocalTier, LEASE};
use redis_pool::RedisPool;

pub use average::{AverageLookup, CacheOutcome};
pub use tier::Tier;

/// How long the lease holder may take before another request may compute the value.
pub const LOCK_TTL: Duration = Duration::from_secs(10);
/// How long a request waits for another request's aggregate before it runs its own.
pub const WAIT_FOR_LEADER: Duration = Duration::from_secs(2);

/// The names of the keys that hold the cached average.
#[derive(Clone, Debug)]
pub struct Keys {
    pub value: String,
    pub generation: String,
    pub lock: String,
    /// Pub/sub channel on which invalidations announce their generation.
    pub channel: String,
    /// Sorted set of instance ids scored by the end of their lease (Redis time, ms).
    pub instances: String,
    /// Hash of instance id → the last generation it acknowledged.
    pub acks: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        let value = format!("{prefix}:students:average_age");
        Keys {
            generation: format!("{value}:generation"),
            lock: format!("{value}:lock"),
            channel: format!("{prefix}:invalidations"),
            instances: format!("{prefix}:instances"),
            acks: format!("{prefix}:acks"),
            value,
        }
    }
}

/// The value as stored in Redis: the aggregate and the generation it was computed at.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredValue {
    average_age: Option<f64>,
    student_count: i64,
    #[serde(default)]
    generation: u64,
    /// How long the aggregate took, in microseconds: the early refresh's δ.
    #[serde(default)]
    compute_us: u64,
    /// Students per age, `{"18": 12, ...}`. Required: a value without it (written by an older
    /// version) is treated as unreadable and recomputed, so the chart always matches the count.
    ages: crate::models::AgeCounts,
    /// When the aggregate was computed (Unix ms), for the staff cache page's "age".
    #[serde(default)]
    computed_at_ms: u64,
}

/// A value found in Redis.
#[derive(Debug, Clone, Copy)]
pub struct Found {
    pub stats: AverageAge,
    pub generation: u64,
    /// The key's remaining TTL.
    pub remaining: Duration,
    /// How long the aggregate took when the value was computed.
    pub compute: Duration,
}

/// XFetch's β (Vattani et al., VLDB 2015): above 1 favours refreshing earlier. At 4, a value
/// whose aggregate takes 100 ms is refreshed in about the last second of its TTL under load,
/// and almost never before the last 100 ms.
const EARLY_REFRESH_BETA: f64 = 4.0;

/// Whether to recompute a value now, before it expires, so that a hot key is refreshed by one
/// request in the background instead of missing for everyone at expiry. `uniform` is drawn from
/// (0, 1]: the closer the expiry and the longer the aggregate, the likelier.
pub fn early_refresh_due(compute: Duration, remaining: Duration, uniform: f64) -> bool {
    let earliness = -(compute.as_secs_f64() * EARLY_REFRESH_BETA * uniform.ln());
    earliness >= remaining.as_secs_f64()
}

/// What the read script found.
#[derive(Debug)]
pub enum ReadOutcome {
    /// Boxed: with the age distribution a value is some 600 bytes.
    Hit(Box<Found>),
    /// No value; this request holds the lease and must compute it.
    Lead { generation: String, token: String },
    /// No value and another request holds the lease.
    Wait,
}

/// The cache of the average age: Redis, the breaker in front of it, the pending-invalidation flag.
pub struct Cache {
    pool: RedisPool,
    keys: Keys,
    ttl: Duration,
    breaker: Breaker,
    /// True while an invalidation may be pending in the outbox; starts true so that a new
    /// process reads nothing from Redis before it has applied the outbox once.
    pending: AtomicBool,
    /// Bumped by every failure; the worker clears `pending` and closes the breaker only if no
    /// failure happened while it was applying the outbox.
    failures: Mutex<u64>,
    metrics: Arc<Metrics>,
    local: LocalTier,
    /// When the last lease renewal that Redis answered was sent (the local tier's clock, ms):
    /// after that plus [`LEASE`], no instance that lost Redis with this one serves from memory.
    last_renewed_ms: AtomicU64,
    client: redis::Client,
    read_script: Script,
    fill_script: Script,
    invalidate_script: Script,
    renew_script: Script,
    unacknowledged_script: Script,
    try_lease_script: Script,
    /// True while this process runs an early refresh.
    refreshing: AtomicBool,
}

impl Cache {
    pub fn new(
        pool: RedisPool,
        client: redis::Client,
        prefix: &str,
        ttl: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Cache {
            local: LocalTier::new(format!("{:016x}", rand::rng().random::<u64>())),
            last_renewed_ms: AtomicU64::new(0),
            client,
            pool,
            keys: Keys::new(prefix),
            ttl,
            breaker: Breaker::default(),
            pending: AtomicBool::new(true),
            failures: Mutex::new(0),
            metrics,
            read_script: Script::new(
                r"local v = redis.call('GET', KEYS[1])
                  if v then return {'hit', v, tostring(redis.call('PTTL', KEYS[1]))} end
                  local gen = redis.call('GET', KEYS[2]) or '0'
                  if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then
                    return {'lead', gen}
                  end
                  return {'wait', gen}",
            ),
            fill_script: Script::new(
                r"local stored = 0
                  if (redis.call('GET', KEYS[2]) or '0') == ARGV[1] then
                    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
                    stored = 1
                  end
                  if redis.call('GET', KEYS[3]) == ARGV[4] then redis.call('DEL', KEYS[3]) end
                  return stored",
            ),
            invalidate_script: Script::new(
                r"local gen = redis.call('INCR', KEYS[2])
                  redis.call('DEL', KEYS[1], KEYS[3])
                  redis.call('PUBLISH', KEYS[4], gen)
                  return gen",
            ),
            renew_script: Script::new(
                r"local t = redis.call('TIME')
                  local now = t[1] * 1000 + math.floor(t[2] / 1000)
                  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
                  return now",
            ),
            try_lease_script: Script::new(
                r"if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
                    return redis.call('GET', KEYS[1]) or '0'
                  end
                  return false",
            ),
            refreshing: AtomicBool::new(false),
            unacknowledged_script: Script::new(
                r"local t = redis.call('TIME')
                  local now = t[1] * 1000 + math.floor(t[2] / 1000)
                  local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
                  for _, id in ipairs(expired) do redis.call('HDEL', KEYS[2], id) end
                  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
                  local waiting = 0
                  for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
                    if tonumber(redis.call('HGET', KEYS[2], id) or '0') < tonumber(ARGV[1]) then
                      waiting = waiting + 1
                    end
                  end
                  return waiting",
            ),
        }
    }

    /// The in-process tier.
    pub fn local(&self) -> &LocalTier {
        &self.local
    }

    /// Starts the thread that listens for invalidations (servers only; the commands write but
    /// never serve from memory).
    pub fn start_subscriber(self: &Arc<Self>) {
        let (cache, client) = (Arc::downgrade(self), self.client.clone());
        let spawned = std::thread::Builder::new()
            .name("cache-invalidations".into())
            .spawn(move || local::run_subscriber(cache, client));
        if let Err(e) = spawned {
            log::error!("cannot start the invalidation listener, serving without memory tier: {e}");
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether requests may read Redis now: the breaker is closed and nothing is pending.
    pub fn is_usable(&self) -> bool {
        self.breaker.is_closed() && !self.pending.load(Ordering::Acquire)
    }

    /// Whether the breaker currently lets calls through (for `/readyz`).
    pub fn is_reachable(&self) -> bool {
        self.breaker.is_closed()
    }

    fn connection(&self) -> RedisResult<r2d2::PooledConnection<redis_pool::RedisManager>> {
        self.pool.get().map_err(|e| {
            redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no redis connection: {e}"),
            ))
        })
    }

    /// Records a failed call (breaker, counter, rate-limited log).
    pub fn report_failure(&self, context: &str, error: &redis::RedisError) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        *failures += 1;
        self.breaker.trip(&self.metrics, context, error);
    }

    /// Stops reading Redis until the worker has applied the outbox.
    fn mark_pending(&self) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        *failures += 1;
        self.pending.store(true, Ordering::Release);
        self.metrics.cache_invalidations_pending.inc();
    }

    fn failure_count(&self) -> u64 {
        *self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Resumes reading Redis, unless a failure happened since `failures_seen` was read.
    fn resume_if_no_failure_since(&self, failures_seen: u64) {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if *failures == failures_seen {
            self.metrics.cache_invalidations_pending.set(0);
            self.breaker.close();
            self.pending.store(false, Ordering::Release);
        }
    }

    /// One round trip: the value, or the lease, or the news that someone else holds it.
    pub fn read_or_lease(&self) -> RedisResult<ReadOutcome> {
        let mut conn = self.connection()?;
        let token = format!("{:032x}", rand::rng().random::<u128>());
        let reply: Vec<String> = metrics::time_cache_call("EVALSHA read_or_lease", || {
            self.read_script
                .key(&self.keys.value)
                .key(&self.keys.generation)
                .key(&self.keys.lock)
                .arg(&token)
                .arg(LOCK_TTL.as_millis() as u64)
                .invoke(&mut *conn)
        })?;
        match reply.as_slice() {
            [kind, value, ttl_ms] if kind == "hit" => {
                match serde_json::from_str::<StoredValue>(value) {
                    Ok(stored) => Ok(ReadOutcome::Hit(Box::new(Found {
                        stats: AverageAge {
                            average_age: stored.average_age,
                            student_count: stored.student_count,
                            ages: stored.ages,
                        },
                        generation: stored.generation,
                        // PTTL is -1 for a key without expiry, which the fill never writes.
                        remaining: Duration::from_millis(ttl_ms.parse().unwrap_or(0)),
                        compute: Duration::from_micros(stored.compute_us),
                    }))),
                    // Something else wrote the key: treat it as absent, the fill will replace it.
                    Err(_) => Ok(ReadOutcome::Lead {
                        generation: String::from("\u{0}unparseable"),
                        token,
                    }),
                }
            }
            [kind, generation] if kind == "lead" => Ok(ReadOutcome::Lead {
                generation: generation.clone(),
                token,
            }),
            _ => Ok(ReadOutcome::Wait),
        }
    }

    /// Stores `stats` unless the generation moved since `generation` was read; releases the lease.
    /// Returns the TTL it was stored with, or `None` when it was not stored.
    pub fn fill(
        &self,
        generation: &str,
        token: &str,
        stats: &AverageAge,
        compute: Duration,
    ) -> RedisResult<Option<Duration>> {
        let mut conn = self.connection()?;
        let json = serde_json::to_string(&StoredValue {
            average_age: stats.average_age,
            student_count: stats.student_count,
            generation: generation.parse().unwrap_or(0),
            compute_us: compute.as_micros() as u64,
            ages: stats.ages,
            computed_at_ms: breaker::now_ms(),
        })
        .unwrap_or_default();
        let ttl = self.ttl_with_jitter();
        let ttl_ms = ttl.as_millis() as u64;
        let stored: i64 = metrics::time_cache_call("EVALSHA fill_if_generation", || {
            self.fill_script
                .key(&self.keys.value)
                .key(&self.keys.generation)
                .key(&self.keys.lock)
                .arg(generation)
                .arg(json)
                .arg(ttl_ms)
                .arg(token)
                .invoke(&mut *conn)
        })?;
        Ok((stored == 1).then_some(ttl))
    }

    /// Takes the computing lease without touching the value, for an early refresh; returns the
    /// generation to fill at, or `None` when another request holds the lease.
    pub fn try_lease(&self, token: &str) -> RedisResult<Option<String>> {
        let mut conn = self.connection()?;
        metrics::time_cache_call("EVALSHA try_lease", || {
            self.try_lease_script
                .key(&self.keys.generation)
                .key(&self.keys.lock)
                .arg(token)
                .arg(LOCK_TTL.as_millis() as u64)
                .invoke(&mut *conn)
        })
    }

    /// Claims the one early refresh this process may run at a time.
    pub fn start_refresh(&self) -> bool {
        !self.refreshing.swap(true, Ordering::AcqRel)
    }

    pub fn end_refresh(&self) {
        self.refreshing.store(false, Ordering::Release);
    }

    /// Bumps the generation, deletes the value and the lease, and announces the new
    /// generation, in one atomic script; then waits until every instance serving from memory
    /// has dropped the old value (see [`local`]). Returns the new generation.
    pub fn invalidate(&self) -> RedisResult<u64> {
        let generation: u64 = {
            let mut conn = self.connection()?;
            metrics::time_cache_call("EVALSHA invalidate", || {
                self.invalidate_script
                    .key(&self.keys.value)
                    .key(&self.keys.generation)
                    .key(&self.keys.lock)
                    .key(&self.keys.channel)
                    .invoke(&mut *conn)
            })?
        };
        self.local.invalidated(generation);
        self.wait_for_acknowledgements(generation)?;
        Ok(generation)
    }

    /// Polls until no live lease holder lacks `generation`; bounded by the lease length, since
    /// by then every lease that was not renewed has expired.
    fn wait_for_acknowledgements(&self, generation: u64) -> RedisResult<()> {
        let deadline = Instant::now() + LEASE + Duration::from_millis(500);
        let mut conn = self.connection()?;
        loop {
            let waiting: i64 = metrics::time_cache_call("EVALSHA unacknowledged", || {
                self.unacknowledged_script
                    .key(&self.keys.instances)
                    .key(&self.keys.acks)
                    .arg(generation)
                    .invoke(&mut *conn)
            })?;
            if waiting == 0 || Instant::now() >= deadline {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Records that this instance dropped every value older than `generation`.
    pub fn acknowledge(&self, generation: u64) -> RedisResult<()> {
        let mut conn = self.connection()?;
        redis::cmd("HSET")
            .arg(&self.keys.acks)
            .arg(&self.local.instance_id)
            .arg(generation)
            .query::<i64>(&mut *conn)
            .map(drop)
    }

    /// The generation now in Redis.
    pub fn current_generation(&self) -> RedisResult<u64> {
        let mut conn = self.connection()?;
        let generation: Option<u64> = redis::cmd("GET")
            .arg(&self.keys.generation)
            .query(&mut *conn)?;
        Ok(generation.unwrap_or(0))
    }

    /// Renews this instance's lease, if it is listening for invalidations.
    pub fn renew_lease(&self) {
        if !self.local.is_subscribed() {
            self.local.revoke();
            return;
        }
        let started = self.local.renewal_started();
        let renewed = self.connection().and_then(|mut conn| {
            self.renew_script
                .key(&self.keys.instances)
                .arg(&self.local.instance_id)
                .arg(LEASE.as_millis() as u64)
                .invoke::<i64>(&mut *conn)
        });
        match renewed {
            // A subscription lost during the call must not be covered by this renewal.
            Ok(_) if self.local.is_subscribed() => {
                self.local.renewed(started);
                self.last_renewed_ms.fetch_max(started, Ordering::AcqRel);
            }
            Ok(_) => self.local.revoke(),
            Err(e) => {
                self.local.revoke();
                self.report_failure("lease", &e);
            }
        }
    }

    /// After an invalidation could not be sent: how long until every instance that lost Redis
    /// together with this one has stopped serving from memory.
    pub fn time_until_peer_leases_lapse(&self) -> Duration {
        let last = self.last_renewed_ms.load(Ordering::Acquire);
        if last == 0 {
            return Duration::ZERO;
        }
        let lapse = last + LEASE.as_millis() as u64;
        let now = self.local.renewal_started();
        Duration::from_millis(lapse.saturating_sub(now))
    }

    pub fn ping(&self) -> RedisResult<()> {
        let mut conn = self.connection()?;
        metrics::time_cache_call("PING", || redis::cmd("PING").query::<String>(&mut *conn))?;
        Ok(())
    }

    /// `CACHE_TTL_SECS` less a random 0–10%, never below one millisecond.
    fn ttl_with_jitter(&self) -> Duration {
        let ttl_ms = self.ttl.as_millis() as u64;
        let jitter = rand::rng().random_range(0..=ttl_ms / 10);
        Duration::from_millis((ttl_ms - jitter).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_early_refresh_is_likelier_near_expiry_and_for_slow_aggregates() {
        let ms = Duration::from_millis;
        // Far from expiry: never, even at the unluckiest draw of a realistic generator.
        assert!(!early_refresh_due(ms(100), ms(60_000), 1e-9));
        // Past expiry: always.
        assert!(early_refresh_due(ms(100), ms(0), 1.0));
        // The same draw refreshes a slow aggregate and not a fast one.
        assert!(early_refresh_due(ms(100), ms(200), 0.5));
        assert!(!early_refresh_due(ms(1), ms(200), 0.5));
    }

    #[test]
    fn keys_carry_the_prefix() {
        let keys = Keys::new("app");
        assert_eq!(keys.value, "app:students:average_age");
        assert_eq!(keys.channel, "app:invalidations");
        assert_eq!(keys.generation, "app:students:average_age:generation");
        assert_eq!(keys.lock, "app:students:average_age:lock");
    }
}
