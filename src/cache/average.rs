//! The read path of the average-age page: cache-aside with a lease, bounded waiting, and a
//! database fallback whenever Redis cannot be trusted or reached.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::generation::Generation;
use super::{Cache, ReadOutcome, Tier, RENEW_LOCK_EVERY, WAIT_FOR_LEADER};
use crate::db::{self, DbConn, DbPool};
use crate::error::AppError;
use crate::models::{AverageAge, Student};

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

/// The average and how it was obtained.
#[derive(Debug, Clone, Copy)]
pub struct AverageLookup {
    pub stats: AverageAge,
    pub outcome: CacheOutcome,
    /// Which tier served a hit; `None` for a miss or a bypass.
    pub tier: Option<Tier>,
    pub elapsed: Duration,
}

/// Runs the aggregate and counts it.
pub fn aggregate(cache: &Cache, conn: &mut DbConn) -> Result<AverageAge, AppError> {
    let metrics = cache.metrics();
    metrics.db_aggregate_queries.inc();
    metrics.db_aggregate_queries_running.inc();
    let stats = Student::average_age(conn);
    metrics.db_aggregate_queries_running.dec();
    Ok(stats?)
}

/// The average age, from Redis when it can be trusted, else from the database.
pub async fn lookup(cache: &Arc<Cache>, db: &DbPool) -> Result<AverageLookup, AppError> {
    let started = Instant::now();
    let deadline = started + WAIT_FOR_LEADER;
    let mut tier = None;
    let (stats, outcome) = loop {
        if !cache.is_usable() {
            break (from_database(cache, db).await?, CacheOutcome::Bypass);
        }
        // The in-process tier: no thread hop, no round trip (see `cache::local`).
        if let Some(hit) = cache.local().get() {
            cache.served(hit.stats, hit.generation);
            refresh_early_if_due(cache, db, hit.compute, hit.remaining);
            tier = Some(Tier::Memory);
            break (hit.stats, CacheOutcome::Hit);
        }
        let reader = Arc::clone(cache);
        let read = db::blocking(move || Ok::<_, AppError>(reader.read_or_lease())).await?;
        match read {
            Ok(ReadOutcome::Hit(found)) => {
                cache.served(found.stats, found.generation);
                let local = cache.local();
                local.offer(
                    found.stats,
                    found.generation,
                    found.remaining,
                    found.compute,
                );
                refresh_early_if_due(cache, db, found.compute, found.remaining);
                tier = Some(Tier::Redis);
                break (found.stats, CacheOutcome::Hit);
            }
            Ok(ReadOutcome::Lead { generation, token }) => {
                break (
                    compute_and_fill(cache, db, generation, token).await?,
                    CacheOutcome::Miss,
                )
            }
            // The lease exists only while its holder is alive and renewing it (or for
            // `LOCK_TTL` after it died), so waiting on it waits for an aggregate that runs.
            Ok(ReadOutcome::Wait) if Instant::now() < deadline => {
                let interval = (started.elapsed() / 20).clamp(POLL_INTERVAL, MAX_POLL_INTERVAL);
                tokio::time::sleep(interval).await;
            }
            // The lease holder is taking too long: answer from the database, do not hang.
            Ok(ReadOutcome::Wait) => break (from_database(cache, db).await?, CacheOutcome::Miss),
            Err(e) => {
                cache.report_failure("read", &e);
                break (from_database(cache, db).await?, CacheOutcome::Bypass);
            }
        }
    };
    let metrics = cache.metrics();
    match outcome {
        CacheOutcome::Hit => metrics.cache_hits.inc(),
        CacheOutcome::Miss => metrics.cache_misses.inc(),
        CacheOutcome::Bypass => metrics.cache_bypasses.inc(),
    }
    Ok(AverageLookup {
        stats,
        outcome,
        tier,
        elapsed: started.elapsed(),
    })
}

/// Stores a computed value in Redis (if no write intervened) and in memory.
fn store(cache: &Cache, generation: Generation, token: &str, stats: AverageAge, compute: Duration) {
    match cache.fill(generation, token, &stats, compute) {
        Ok(Some(ttl)) => cache.local().offer(stats, generation, ttl, compute),
        Ok(None) => {}
        Err(e) => cache.report_failure("fill", &e),
    }
}

/// XFetch: now and then, as the expiry nears, one request recomputes the value in the
/// background while every request goes on being served the current one, so that a hot key is
/// not missed by everyone when it expires. One refresh per process at a time, and one across
/// all instances (the computing lease).
fn refresh_early_if_due(cache: &Arc<Cache>, db: &DbPool, compute: Duration, remaining: Duration) {
    let uniform = 1.0 - rand::random::<f64>();
    if !super::early_refresh_due(compute, remaining, uniform) || !cache.start_refresh() {
        return;
    }
    let (cache, pool) = (Arc::clone(cache), db.clone());
    tokio::spawn(async move {
        let refresher = Arc::clone(&cache);
        let refreshed = db::blocking(move || {
            let token = format!("{:032x}", rand::random::<u128>());
            let generation = match refresher.try_lease(&token) {
                Ok(Some(generation)) => generation,
                Ok(None) => return Ok(()),
                Err(e) => {
                    refresher.report_failure("refresh", &e);
                    return Ok(());
                }
            };
            let started = Instant::now();
            let stats = with_lease_renewed(&refresher, &token, || {
                aggregate(&refresher, &mut *pool.get()?)
            })?;
            store(&refresher, generation, &token, stats, started.elapsed());
            Ok::<_, AppError>(())
        })
        .await;
        if let Err(e) = refreshed {
            log::warn!("early refresh of the average failed: {e}");
        }
        cache.end_refresh();
    });
}

/// The aggregate without Redis' lease: one at a time in this process, each shared by the
/// requests that arrived before it started (see [`super::single_flight`]).
async fn from_database(cache: &Arc<Cache>, db: &DbPool) -> Result<AverageAge, AppError> {
    cache
        .database_flight()
        .run(|| {
            let cache = Arc::clone(cache);
            db::with_conn(db, move |conn| aggregate(&cache, conn))
        })
        .await
}

/// Runs `compute` while another thread renews the computing lease held with `token`, so that
/// the requests waiting for this aggregate go on waiting however long it takes, instead of
/// each running their own once the lease would have expired.
fn with_lease_renewed<T>(cache: &Cache, token: &str, compute: impl FnOnce() -> T) -> T {
    let (finished, stop) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let renewer = std::thread::Builder::new()
            .name("cache-lease-renewal".into())
            .spawn_scoped(scope, move || {
                while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(RENEW_LOCK_EVERY) {
                    match cache.renew_computing_lease(token) {
                        Ok(true) => {}
                        // A write took the lease away: this value will not be stored anyway.
                        Ok(false) => return,
                        Err(e) => return cache.report_failure("lease renewal", &e),
                    }
                }
            });
        if let Err(e) = renewer {
            log::warn!("cannot renew the computing lease, waiters may compute too: {e}");
        }
        let value = compute();
        drop(finished);
        value
    })
}

/// The lease holder's work: query, then store only if no write happened since `generation`.
async fn compute_and_fill(
    cache: &Arc<Cache>,
    db: &DbPool,
    generation: Generation,
    token: String,
) -> Result<AverageAge, AppError> {
    let cache = Arc::clone(cache);
    let pool = db.clone();
    db::blocking(move || {
        // If the query fails the lease is left to expire: a database that fails for one request
        // would fail the next one too, so retrying at once gains nothing.
        let started = Instant::now();
        let stats = with_lease_renewed(&cache, &token, || aggregate(&cache, &mut *pool.get()?))?;
        store(&cache, generation, &token, stats, started.elapsed());
        Ok::<_, AppError>(stats)
    })
    .await
}
