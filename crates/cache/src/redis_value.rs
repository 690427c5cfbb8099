//! One cached value in Redis: reading it or taking its computing lease, renewing the lease,
//! filling the value. The scripts see the envelope only ([`super::envelope`]); the payload is
//! parsed here, into the query's type.

use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use redis::RedisResult;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::envelope::{Envelope, Sealed};
use super::generation::Generation;
use super::{redis_target, trust, Cache, ValueKeys, LOCK_TTL};
use crate::timings;

/// A value found in Redis.
#[derive(Debug)]
pub struct Found<V> {
    pub value: Arc<V>,
    pub generation: Generation,
    /// The key's remaining TTL.
    pub remaining: Duration,
    /// How long the query took when the value was computed.
    pub compute: Duration,
}

/// The computing lease on one value: held by the one request that computes it on a miss.
/// It names the generation it was taken at, so an invalidation frees it (see
/// `read_or_lease.lua`).
#[derive(Debug, Clone)]
pub struct FillLease {
    pub generation: Generation,
    /// The lease's value in Redis, `<generation>:<token>`: only its holder renews or releases it.
    holder: String,
}

/// What the read script found.
#[derive(Debug)]
pub enum ReadOutcome<V> {
    Hit(Found<V>),
    /// No current value; this request holds the lease and must compute it.
    Lead(FillLease),
    /// No current value and another request holds the lease.
    Wait,
}

fn token() -> String {
    format!("{:032x}", rand::rng().random::<u128>())
}

impl Cache {
    /// One round trip: the current value, or the lease, or the news that someone else holds it.
    /// Two when Redis lost the generation, which is put back first (see
    /// [`super::resync::Resync::repair`]).
    pub fn read_or_lease<V: DeserializeOwned>(
        &self,
        keys: &ValueKeys,
    ) -> RedisResult<ReadOutcome<V>> {
        let mut conn = self.redis.connection()?;
        let token = token();
        let scripts = &self.redis.scripts;
        let script = match self.support().script_flags() {
            true => &scripts.read_or_lease_guarded,
            false => &scripts.read_or_lease,
        };
        let read = |conn: &mut redis_target::RedisConnection| -> RedisResult<Vec<String>> {
            timings::time_cache_call("EVALSHA read_or_lease", || {
                script
                    .key(&keys.value)
                    .key(&self.redis.keys.generation)
                    .key(&keys.lock)
                    .arg(&token)
                    .arg(LOCK_TTL.as_millis() as u64)
                    .arg(self.local.floor())
                    .arg(self.redis.owner.identity())
                    .invoke(conn)
            })
        };
        let mut reply = read(&mut conn)?;
        if reply.first().is_some_and(|kind| kind == "resync") {
            self.resync.repair(&mut *conn, self.local.floor())?;
            reply = read(&mut conn)?;
        }
        drop(conn);
        match reply.as_slice() {
            [kind, value, ttl_ms] if kind == "hit" => match Envelope::<V>::open(value) {
                Some(stored) => Ok(ReadOutcome::Hit(Found {
                    value: Arc::new(stored.payload),
                    generation: Generation::new(stored.generation),
                    // PTTL is -1 for a key without expiry, which the fill never writes.
                    remaining: Duration::from_millis(ttl_ms.parse().unwrap_or(0)),
                    compute: Duration::from_micros(stored.compute_us),
                })),
                // An envelope at the current generation around a payload this release cannot
                // read: a miss like any other foreign value, and the fill replaces it.
                None => Ok(match self.try_lease(keys)? {
                    Some(lease) => ReadOutcome::Lead(lease),
                    None => ReadOutcome::Wait,
                }),
            },
            [kind, generation, foreign, holder] if kind == "lead" => {
                if foreign == "1" {
                    self.metrics.cache_foreign_values.inc();
                    log::warn!(
                        "the cached {} in redis was computed from another database; \
                         recomputing it from this one",
                        keys.value
                    );
                }
                Ok(ReadOutcome::Lead(FillLease {
                    generation: Generation::parse(generation)?,
                    holder: holder.clone(),
                }))
            }
            // Still lost after the repair: something deletes it as fast as it is put back.
            [kind] if kind == "resync" => Err(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "the generation is lost again at once",
            ))),
            _ => Ok(ReadOutcome::Wait),
        }
    }

    /// Stores `value` unless the generation moved since the lease was taken, and releases the
    /// lease; with `None`, only releases it. Returns the TTL it was stored with, or `None` when
    /// it was not stored.
    pub fn fill<V: Serialize>(
        &self,
        keys: &ValueKeys,
        lease: &FillLease,
        value: Option<&V>,
        compute: Duration,
    ) -> RedisResult<Option<Duration>> {
        let mut conn = self.redis.connection()?;
        let json = value.map_or_else(String::new, |payload| {
            Sealed {
                generation: lease.generation.get(),
                database: self.redis.owner.identity(),
                computed_at_ms: trust::now_ms(),
                compute_us: compute.as_micros() as u64,
                payload,
            }
            .to_json()
        });
        let ttl = self.ttl_with_jitter();
        let ttl_ms = ttl.as_millis() as u64;
        let stored: i64 = timings::time_cache_call("EVALSHA fill_if_generation", || {
            self.redis
                .scripts
                .fill
                .key(&keys.value)
                .key(&self.redis.keys.generation)
                .key(&keys.lock)
                .arg(lease.generation)
                .arg(json)
                .arg(ttl_ms)
                .arg(&lease.holder)
                .invoke(&mut *conn)
        })?;
        Ok((stored == 1).then_some(ttl))
    }

    /// Takes the computing lease without touching the value, for an early refresh; `None` when
    /// another request holds it.
    pub fn try_lease(&self, keys: &ValueKeys) -> RedisResult<Option<FillLease>> {
        let mut conn = self.redis.connection()?;
        let taken: Option<(String, String)> =
            timings::time_cache_call("EVALSHA try_lease", || {
                self.redis
                    .scripts
                    .try_lease
                    .key(&self.redis.keys.generation)
                    .key(&keys.lock)
                    .arg(token())
                    .arg(LOCK_TTL.as_millis() as u64)
                    .invoke(&mut *conn)
            })?;
        taken
            .map(|(generation, holder)| {
                Ok(FillLease {
                    generation: Generation::parse(&generation)?,
                    holder,
                })
            })
            .transpose()
    }

    /// Extends the computing lease by [`LOCK_TTL`]; false once it is no longer held (it
    /// expired, or an invalidation freed it and a reader took it).
    pub fn renew_fill_lease(&self, keys: &ValueKeys, lease: &FillLease) -> RedisResult<bool> {
        let mut conn = self.redis.connection()?;
        let renewed: i64 = timings::time_cache_call("EVALSHA renew_lock", || {
            self.redis
                .scripts
                .renew_lock
                .key(&keys.lock)
                .arg(&lease.holder)
                .arg(LOCK_TTL.as_millis() as u64)
                .invoke(&mut *conn)
        })?;
        Ok(renewed == 1)
    }
}
