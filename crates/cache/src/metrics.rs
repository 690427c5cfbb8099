//! The cache's Prometheus series, registered in the application's registry under its
//! namespace (`cachewithredis_cache_requests_total`, ...).

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub struct CacheMetrics {
    pub cache_requests: IntCounterVec,
    /// `cache_requests` for each result, resolved once: the hit path skips the label lookup.
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    pub cache_bypasses: IntCounter,
    pub cache_errors: IntCounter,
    /// Queries of cached values run against the database.
    pub db_aggregate_queries: IntCounter,
    /// Such queries running now: what a stampede costs the database at once.
    pub db_aggregate_queries_running: IntGauge,
    pub cache_invalidations: IntCounter,
    pub cache_invalidations_pending: IntGauge,
    /// The consistency monitor's checks of a served value against the database.
    pub cache_consistency_checks: IntCounter,
    /// Checks that found the served value differing from the database.
    pub cache_inconsistencies: IntCounter,
    /// Values found in Redis that another database's application wrote (see [`crate::owner`]).
    pub cache_foreign_values: IntCounter,
    /// Rounds that found the database's mark ahead of Redis with no outbox row due: a change
    /// made outside the application.
    pub cache_outside_changes: IntCounter,
}

impl CacheMetrics {
    /// Creates the series and registers them in `registry` under `namespace`.
    pub fn register(registry: &Registry, namespace: &str) -> prometheus::Result<Self> {
        let opts = |name: &str, help: &str| Opts::new(name, help).namespace(namespace);
        let cache_requests = IntCounterVec::new(
            opts(
                "cache_requests_total",
                "Lookups of cached queries by cache outcome.",
            ),
            &["result"],
        )?;
        let cache_errors = IntCounter::with_opts(opts(
            "cache_errors_total",
            "Redis calls that failed or timed out.",
        ))?;
        let db_aggregate_queries = IntCounter::with_opts(opts(
            "db_aggregate_queries_total",
            "Queries of cached values run against the database.",
        ))?;
        let db_aggregate_queries_running = IntGauge::with_opts(opts(
            "db_aggregate_queries_running",
            "Queries of cached values running against the database now.",
        ))?;
        let cache_invalidations = IntCounter::with_opts(opts(
            "cache_invalidations_total",
            "Cache invalidations confirmed by Redis.",
        ))?;
        let cache_invalidations_pending = IntGauge::with_opts(opts(
            "cache_invalidations_pending",
            "Invalidations recorded in the outbox and not yet confirmed by Redis.",
        ))?;
        let cache_consistency_checks = IntCounter::with_opts(opts(
            "cache_consistency_checks_total",
            "Values served from the cache that the consistency monitor compared with the database.",
        ))?;
        let cache_inconsistencies = IntCounter::with_opts(opts(
            "cache_inconsistencies_total",
            "Consistency checks that found a served value differing from the database.",
        ))?;
        let cache_foreign_values = IntCounter::with_opts(opts(
            "cache_foreign_values_total",
            "Values in Redis computed from another database, treated as misses.",
        ))?;
        let cache_outside_changes = IntCounter::with_opts(opts(
            "cache_mark_ahead_total",
            "Rounds in which the worker found the database's mark ahead of Redis with no outbox row due (a change made outside the application) and invalidated.",
        ))?;
        // Resolved at start, which also makes each series present from the start, so that a
        // dashboard's rate() has a baseline.
        let cache_hits = cache_requests.with_label_values(&["hit"]);
        let cache_misses = cache_requests.with_label_values(&["miss"]);
        let cache_bypasses = cache_requests.with_label_values(&["bypass"]);
        for collector in [
            Box::new(cache_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(cache_errors.clone()),
            Box::new(db_aggregate_queries.clone()),
            Box::new(db_aggregate_queries_running.clone()),
            Box::new(cache_invalidations.clone()),
            Box::new(cache_invalidations_pending.clone()),
            Box::new(cache_consistency_checks.clone()),
            Box::new(cache_inconsistencies.clone()),
            Box::new(cache_foreign_values.clone()),
            Box::new(cache_outside_changes.clone()),
        ] {
            registry.register(collector)?;
        }
        Ok(CacheMetrics {
            cache_requests,
            cache_hits,
            cache_misses,
            cache_bypasses,
            cache_errors,
            db_aggregate_queries,
            db_aggregate_queries_running,
            cache_invalidations,
            cache_invalidations_pending,
            cache_consistency_checks,
            cache_inconsistencies,
            cache_foreign_values,
            cache_outside_changes,
        })
    }

    /// Series in a registry of their own, for tests and tools that render none.
    // The names are fixed above and valid; a failure is a programming error every test finds.
    #[allow(clippy::expect_used)]
    pub fn unregistered() -> Self {
        Self::register(&Registry::new(), "cache").expect("valid, unique metric names")
    }
}
