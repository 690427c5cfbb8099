//! The read path of every cached query: cache-aside with a lease, bounded waiting, and a
//! database fallback whenever Redis cannot be trusted or reached.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::generation::Generation;
use super::redis_value::{FillLease, ReadOutcome};
use super::single_flight::Shared;
use super::{Cache, CachedQuery, Tier, ValueKeys, RENEW_LOCK_EVERY, WAIT_FOR_LEADER};
use crate::db::{self, DbConn, DbPool};
use crate::error::CacheError;
use crate::timings;
/// How often a request waiting for another request's aggregate looks for the value, at first;
/// the interval grows with the wait, up to [`MAX_POLL_INTERVAL`], so that a slow aggregate's
/// waiters do not flood Redis.
const POLL_INTERVAL: Duration = Duration::from_millis(5);
const MAX_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Where the value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Miss,
    /// Redis was not used: down, slow, or an invalidation is pending.
    Bypass,
}

impl CacheOutcome {
    /// The `X-Cache` header value.
    pub fn header(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "HIT",
            CacheOutcome::Miss => "MISS",
            CacheOutcome::Bypass => "BYPASS",
        }
    }

    /// The JSON and metrics label.
    pub fn label(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Bypass => "bypass",
        }
    }
}

/// A query's result and how it was obtained.
#[derive(Debug)]
pub struct Lookup<V> {
    pub value: Arc<V>,
    pub outcome: CacheOutcome,
    /// Which tier served a hit; `None` for a miss or a bypass.
    pub tier: Option<Tier>,
    /// A generation the value is current at: the stored one on a hit, the computing lease's on
    /// a miss (the value, read after the lease was taken, holds at least every write up to
    /// it). `None` when the value was read without Redis, whose generation is then unknown.
    /// Every write after it moves the generation, so what it names cannot come back changed.
    pub generation: Option<Generation>,
    pub elapsed: Duration,
}

/// Runs the query and counts it.
pub fn run_query<Q: CachedQuery>(
    cache: &Cache,
    query: &Q,
    conn: &mut DbConn,
) -> Result<Q::Value, CacheError> {
    let metrics = cache.metrics();
    metrics.db_aggregate_queries.inc();
    metrics.db_aggregate_queries_running.inc();
    let value = if query.several_statements() {
        super::snapshot::read_in_one_snapshot(conn, |conn| query.compute(conn))
    } else {
        query.compute(conn)
    };
    metrics.db_aggregate_queries_running.dec();
    Ok(value?)
}

/// A shared result as the query's type. Each key is only ever filled by its own query type, so
/// this never fails; if it did, the value would be recomputed rather than the request failed.
fn typed<V: Send + Sync + 'static>(shared: Shared) -> Option<Arc<V>> {
    shared.downcast::<V>().ok()
}

/// The query's result, from Redis when it can be trusted, else from the database.
pub async fn lookup<Q: CachedQuery>(
    cache: &Arc<Cache>,
    db: &DbPool,
    query: &Q,
) -> Result<Lookup<Q::Value>, CacheError> {
    let started = Instant::now();
    let deadline = started + WAIT_FOR_LEADER;
    let key = query.key();
    let mut tier = None;
    let mut keys: Option<Arc<ValueKeys>> = None;
    let (value, outcome, generation) = loop {
        if !cache.is_usable() {
            break (
                from_database(cache, db, query).await?,
                CacheOutcome::Bypass,
                None,
            );
        }
        // The in-process tier: no thread hop, no round trip (see `cache::local`).
        if let Some(hit) = cache.local().get(&key) {
            if let Some(value) = typed::<Q::Value>(hit.value) {
                cache.served(hit.generation, query, &value);
                refresh_early_if_due(cache, db, query, hit.compute, hit.remaining);
                tier = Some(Tier::Memory);
                break (value, CacheOutcome::Hit, Some(hit.generation));
            }
        }
        let keys = Arc::clone(keys.get_or_insert_with(|| Arc::new(cache.keys().value(&key))));
        let reader = Arc::clone(cache);
        let read = timings::run_blocking(move || reader.read_or_lease::<Q::Value>(&keys)).await?;
        match read {
            Ok(ReadOutcome::Hit(found)) => {
                cache.served(found.generation, query, &found.value);
                cache.local().offer(
                    &key,
                    Arc::clone(&found.value) as Shared,
                    found.generation,
                    found.remaining,
                    found.compute,
                );
                refresh_early_if_due(cache, db, query, found.compute, found.remaining);
                tier = Some(Tier::Redis);
                break (found.value, CacheOutcome::Hit, Some(found.generation));
            }
            Ok(ReadOutcome::Lead(lease)) => {
                let generation = lease.generation;
                break (
                    compute_and_fill(cache, db, query, lease).await?,
                    CacheOutcome::Miss,
                    Some(generation),
                );
            }
            // The lease exists only while its holder is alive and renewing it (or for
            // `LOCK_TTL` after it died), so waiting on it waits for a query that runs.
            Ok(ReadOutcome::Wait) if Instant::now() < deadline => {
                let interval = (started.elapsed() / 20).clamp(POLL_INTERVAL, MAX_POLL_INTERVAL);
                tokio::time::sleep(interval).await;
            }
            // The lease holder is taking too long: answer from the database, do not hang.
            Ok(ReadOutcome::Wait) => {
                break (
                    from_database(cache, db, query).await?,
                    CacheOutcome::Miss,
                    None,
                )
            }
            Err(e) => {
                cache.report_failure("read", &e);
                break (
                    from_database(cache, db, query).await?,
                    CacheOutcome::Bypass,
                    None,
                );
            }
        }
    };
    let metrics = cache.metrics();
    match outcome {
        CacheOutcome::Hit => metrics.cache_hits.inc(),
        CacheOutcome::Miss => metrics.cache_misses.inc(),
        CacheOutcome::Bypass => metrics.cache_bypasses.inc(),
    }
    Ok(Lookup {
        value,
        outcome,
        tier,
        generation,
        elapsed: started.elapsed(),
    })
}

/// Stores a computed value in Redis (if no write intervened, and if it is worth keeping) and
/// in memory.
fn store<Q: CachedQuery>(
    cache: &Cache,
    query: &Q,
    keys: &ValueKeys,
    lease: &FillLease,
    value: &Arc<Q::Value>,
    compute: Duration,
) {
    let kept = query.worth_storing(value).then_some(&**value);
    match cache.fill(keys, lease, kept, compute) {
        Ok(Some(ttl)) => cache.local().offer(
            &query.key(),
            Arc::clone(value) as Shared,
            lease.generation,
            ttl,
            compute,
        ),
        Ok(None) => {}
        Err(e) => cache.report_failure("fill", &e),
    }
}

/// XFetch: now and then, as the expiry nears, one request recomputes the value in the
/// background while every request goes on being served the current one, so that a hot key is
/// not missed by everyone when it expires. One refresh per process at a time, and one across
/// all instances (the computing lease).
fn refresh_early_if_due<Q: CachedQuery>(
    cache: &Arc<Cache>,
    db: &DbPool,
    query: &Q,
    compute: Duration,
    remaining: Duration,
) {
    let uniform = 1.0 - rand::random::<f64>();
    if !super::early_refresh_due(compute, remaining, uniform) || !cache.start_refresh() {
        return;
    }
    let (cache, pool, query) = (Arc::clone(cache), db.clone(), query.clone());
    tokio::spawn(async move {
        let refresher = Arc::clone(&cache);
        let refreshed = timings::blocking(move || {
            let keys = refresher.keys().value(&query.key());
            let lease = match refresher.try_lease(&keys) {
                Ok(Some(lease)) => lease,
                Ok(None) => return Ok(()),
                Err(e) => {
                    refresher.report_failure("refresh", &e);
                    return Ok(());
                }
            };
            let started = Instant::now();
            let value = with_lease_renewed(&refresher, &keys, &lease, || {
                run_query(&refresher, &query, &mut *pool.get()?)
            })?;
            store(
                &refresher,
                &query,
                &keys,
                &lease,
                &Arc::new(value),
                started.elapsed(),
            );
            Ok::<_, CacheError>(())
        })
        .await;
        if let Err(e) = refreshed {
            log::warn!("early refresh of a cached value failed: {e}");
        }
        cache.end_refresh();
    });
}

/// The query without Redis' lease: one at a time per key in this process, each shared by the
/// requests that arrived before it started (see [`super::single_flight`]).
async fn from_database<Q: CachedQuery>(
    cache: &Arc<Cache>,
    db: &DbPool,
    query: &Q,
) -> Result<Arc<Q::Value>, CacheError> {
    let shared = cache
        .database_flights()
        .run(&query.key(), || {
            let (cache, query) = (Arc::clone(cache), query.clone());
            db::with_conn(db, move |conn| {
                Ok(Arc::new(run_query(&cache, &query, conn)?) as Shared)
            })
        })
        .await?;
    match typed::<Q::Value>(shared) {
        Some(value) => Ok(value),
        None => {
            let (cache, query) = (Arc::clone(cache), query.clone());
            db::with_conn(db, move |conn| {
                Ok(Arc::new(run_query(&cache, &query, conn)?))
            })
            .await
        }
    }
}

/// Runs `work` while another thread renews the computing lease, so that the requests waiting
/// for this query go on waiting however long it takes, instead of each running their own once
/// the lease would have expired.
fn with_lease_renewed<T>(
    cache: &Cache,
    keys: &ValueKeys,
    lease: &FillLease,
    work: impl FnOnce() -> T,
) -> T {
    let (finished, stop) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let renewer = std::thread::Builder::new()
            .name("cache-lease-renewal".into())
            .spawn_scoped(scope, move || {
                while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(RENEW_LOCK_EVERY) {
                    match cache.renew_fill_lease(keys, lease) {
                        Ok(true) => {}
                        // A write freed the lease: this value will not be stored anyway.
                        Ok(false) => return,
                        Err(e) => return cache.report_failure("lease renewal", &e),
                    }
                }
            });
        if let Err(e) = renewer {
            log::warn!("cannot renew the computing lease, waiters may compute too: {e}");
        }
        let value = work();
        drop(finished);
        value
    })
}

/// The lease holder's work: query, then store only if no write happened since the lease's
/// generation.
async fn compute_and_fill<Q: CachedQuery>(
    cache: &Arc<Cache>,
    db: &DbPool,
    query: &Q,
    lease: FillLease,
) -> Result<Arc<Q::Value>, CacheError> {
    let (cache, pool, query) = (Arc::clone(cache), db.clone(), query.clone());
    timings::blocking(move || {
        let keys = cache.keys().value(&query.key());
        // If the query fails the lease is left to expire: a database that fails for one request
        // would fail the next one too, so retrying at once gains nothing.
        let started = Instant::now();
        let value = Arc::new(with_lease_renewed(&cache, &keys, &lease, || {
            run_query(&cache, &query, &mut *pool.get()?)
        })?);
        store(&cache, &query, &keys, &lease, &value, started.elapsed());
        Ok::<_, CacheError>(value)
    })
    .await
}
