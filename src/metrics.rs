//! Counters for `/metrics`, and the per-request record of database and cache work that becomes
//! the `Server-Timing` header (the Debug Toolbar's SQL and Cache panels, in the browser).
//!
//! The per-request record follows the request across the thread hop of `web::block`: the
//! middleware puts it in a tokio task-local, `db::blocking` carries it to the blocking thread and
//! installs it in a thread-local there, and the Diesel instrumentation and the Redis helpers
//! write to whatever is installed. Work outside a request (the outbox worker, the CLI) has no
//! record installed and is not counted.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// The application's Prometheus series, one set per running application.
pub struct Metrics {
    registry: Registry,
    pub cache_requests: IntCounterVec,
    /// `cache_requests` for each result, resolved once: the hit path skips the label lookup.
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    pub cache_bypasses: IntCounter,
    pub cache_errors: IntCounter,
    pub db_aggregate_queries: IntCounter,
    /// Aggregate queries running now: what a stampede costs the database at once.
    pub db_aggregate_queries_running: IntGauge,
    pub cache_invalidations: IntCounter,
    pub cache_invalidations_pending: IntGauge,
    pub http_request_duration: HistogramVec,
    /// The consistency monitor's checks of a served value against the database.
    pub cache_consistency_checks: IntCounter,
    /// Checks that found the served value differing from the database.
    pub cache_inconsistencies: IntCounter,
    /// Values found in Redis that another database's application wrote (see `cache::owner`).
    pub cache_foreign_values: IntCounter,
    /// Changes to `students` made outside this application, followed by an invalidation.
    pub cache_outside_changes: IntCounter,
}

impl Metrics {
    // The series are fixed in this function: a bad name or a duplicate is a programming error
    // that every test run would find, and start-up must abort on it.
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        let registry = Registry::new();
        let cache_requests = IntCounterVec::new(
            Opts::new(
                "cachewithredis_cache_requests_total",
                "Average-age lookups by cache outcome.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let cache_errors = IntCounter::new(
            "cachewithredis_cache_errors_total",
            "Redis calls that failed or timed out.",
        )
        .expect("valid metric");
        let db_aggregate_queries = IntCounter::new(
            "cachewithredis_db_aggregate_queries_total",
            "Average-age aggregates (a read of student_age_counts) run against the database.",
        )
        .expect("valid metric");
        let db_aggregate_queries_running = IntGauge::new(
            "cachewithredis_db_aggregate_queries_running",
            "Average-age aggregates running against the database now.",
        )
        .expect("valid metric");
        let cache_invalidations = IntCounter::new(
            "cachewithredis_cache_invalidations_total",
            "Cache invalidations confirmed by Redis.",
        )
        .expect("valid metric");
        let cache_invalidations_pending = IntGauge::new(
            "cachewithredis_cache_invalidations_pending",
            "Invalidations recorded in the outbox and not yet confirmed by Redis.",
        )
        .expect("valid metric");
        let http_request_duration = HistogramVec::new(
            HistogramOpts::new(
                "cachewithredis_http_request_duration_seconds",
                "HTTP request latency by route pattern, method and status.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0,
            ]),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let cache_consistency_checks = IntCounter::new(
            "cachewithredis_cache_consistency_checks_total",
            "Values served from the cache that the consistency monitor compared with the database.",
        )
        .expect("valid metric");
        let cache_inconsistencies = IntCounter::new(
            "cachewithredis_cache_inconsistencies_total",
            "Consistency checks that found a served value differing from the database.",
        )
        .expect("valid metric");
        let cache_foreign_values = IntCounter::new(
            "cachewithredis_cache_foreign_values_total",
            "Values in Redis computed from another database, treated as misses.",
        )
        .expect("valid metric");
        let cache_outside_changes = IntCounter::new(
            "cachewithredis_cache_mark_ahead_total",
            "Rounds in which the worker found the database's mark ahead of Redis with no outbox row due (a change made outside the application) and invalidated.",
        )
        .expect("valid metric");
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
            Box::new(http_request_duration.clone()),
            Box::new(cache_consistency_checks.clone()),
            Box::new(cache_inconsistencies.clone()),
            Box::new(cache_foreign_values.clone()),
            Box::new(cache_outside_changes.clone()),
        ] {
            registry.register(collector).expect("unique metric names");
        }
        Metrics {
            registry,
            cache_requests,
            cache_hits,
            cache_misses,
            cache_bypasses,
            cache_errors,
            db_aggregate_queries,
            db_aggregate_queries_running,
            cache_invalidations,
            cache_invalidations_pending,
            http_request_duration,
            cache_consistency_checks,
            cache_inconsistencies,
            cache_foreign_values,
            cache_outside_changes,
        }
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec only fails on a metric family that breaks the format, which the
        // fixed set above cannot produce.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The `method` label of a request: the standard methods by name, anything else `OTHER`, so that
/// a client sending made-up methods cannot add series without bound.
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "OTHER",
    }
}

/// One database statement or Redis command made while serving a request.
#[derive(Clone, Debug)]
pub struct Call {
    pub what: String,
    pub duration: Duration,
}

/// The database and cache work of one request.
#[derive(Default, Debug)]
pub struct RequestTimings {
    /// Whether this request's HTML pages show the debug panel (`DEBUG=1`).
    pub debug: bool,
    pub db: Vec<Call>,
    pub cache: Vec<Call>,
}

impl RequestTimings {
    /// The `Server-Timing` header value, e.g. `db;dur=0.41;desc="1 query", cache;dur=0.08;desc="1 call"`,
    /// followed by `cache-tier;desc="memory"` when a hit names its tier.
    pub fn server_timing(&self, tier: Option<&str>) -> String {
        // Every response carries it, so it is pushed piece by piece with integer formatting:
        // `format!` with a float to two decimals cost a tenth of a cache hit's instructions.
        fn entry(out: &mut String, name: &str, calls: &[Call], one: &str, many: &str) {
            let total: Duration = calls.iter().map(|c| c.duration).sum();
            let hundredths_of_ms =
                u64::try_from((total.as_nanos() + 5_000) / 10_000).unwrap_or(u64::MAX);
            let mut digits = itoa::Buffer::new();
            out.push_str(name);
            out.push_str(";dur=");
            out.push_str(digits.format(hundredths_of_ms / 100));
            out.push_str(if hundredths_of_ms % 100 < 10 {
                ".0"
            } else {
                "."
            });
            out.push_str(digits.format(hundredths_of_ms % 100));
            out.push_str(";desc=\"");
            out.push_str(digits.format(calls.len()));
            out.push(' ');
            out.push_str(if calls.len() == 1 { one } else { many });
            out.push('"');
        }
        let mut out = String::with_capacity(112);
        entry(&mut out, "db", &self.db, "query", "queries");
        out.push_str(", ");
        entry(&mut out, "cache", &self.cache, "call", "calls");
        if let Some(tier) = tier {
            out.push_str(", cache-tier;desc=\"");
            out.push_str(tier);
            out.push('"');
        }
        out
    }
}

/// A request's timings, shared between the async handler and the blocking threads it uses.
pub type SharedTimings = Arc<Mutex<RequestTimings>>;

tokio::task_local! {
    /// Set by the timing middleware around each request's future.
    pub static REQUEST_TIMINGS: SharedTimings;
}

thread_local! {
    static INSTALLED: RefCell<Option<SharedTimings>> = const { RefCell::new(None) };
}

/// The timings of the request being served by the current task, if any.
pub fn current_request_timings() -> Option<SharedTimings> {
    REQUEST_TIMINGS.try_with(Arc::clone).ok()
}

/// Runs `f` on this thread with `timings` as the place where queries and cache calls are recorded.
pub fn with_installed_timings<T>(timings: Option<SharedTimings>, f: impl FnOnce() -> T) -> T {
    let previous = INSTALLED.with(|slot| slot.replace(timings));
    let out = f();
    INSTALLED.with(|slot| *slot.borrow_mut() = previous);
    out
}

fn record(push: impl FnOnce(&mut RequestTimings)) {
    INSTALLED.with(|slot| {
        if let Some(timings) = slot.borrow().as_ref() {
            if let Ok(mut timings) = timings.lock() {
                push(&mut timings);
            }
        }
    });
}

/// Times one Redis command for the current request's record.
pub fn time_cache_call<T>(what: &'static str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    let duration = started.elapsed();
    record(|t| {
        t.cache.push(Call {
            what: what.to_owned(),
            duration,
        })
    });
    out
}

/// Diesel instrumentation that records each statement into the current request's record.
#[derive(Default)]
pub struct QueryRecorder {
    started: Option<Instant>,
}

impl Instrumentation for QueryRecorder {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { .. } => self.started = Some(Instant::now()),
            InstrumentationEvent::FinishQuery { query, .. } => {
                let duration = self.started.take().map(|s| s.elapsed()).unwrap_or_default();
                // The pool's check of a connection it hands out is the pool's work, not the
                // request's: the request's count stays what its handler ran.
                if is_pool_check(query) {
                    return;
                }
                record(|t| {
                    // The statement's text is for the debug panel only: formatting it (with its
                    // binds) on every query would cost more than some queries do.
                    let what = if t.debug {
                        query.to_string()
                    } else {
                        String::new()
                    };
                    t.db.push(Call { what, duration })
                });
            }
            _ => {}
        }
    }
}

/// Whether a statement is r2d2's check at checkout (diesel's `CheckConnectionQuery`, shown as
/// `SELECT 1 -- binds: []`), told from the first bytes of its text only: formatting a whole
/// statement on every query would cost more than some queries do.
fn is_pool_check(query: &dyn std::fmt::Display) -> bool {
    use std::fmt::Write;
    const CHECK: &str = "SELECT 1";
    /// Keeps the first bytes written, and stops the formatting after them.
    struct Head(String);
    impl Write for Head {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let room = (CHECK.len() + 3).saturating_sub(self.0.len());
            let take = s.char_indices().nth(room).map_or(s.len(), |(i, _)| i);
            self.0.push_str(&s[..take]);
            if take < s.len() {
                Err(std::fmt::Error)
            } else {
                Ok(())
            }
        }
    }
    let mut head = Head(String::new());
    let _ = write!(head, "{query}");
    head.0 == CHECK || head.0.starts_with("SELECT 1 --")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_pools_check_is_told_apart() {
        assert!(is_pool_check(&"SELECT 1"));
        assert!(is_pool_check(&"SELECT 1 -- binds: []"));
        for query in [
            "SELECT 1 FROM students LIMIT 1",
            "SELECT 10",
            "SELECT age FROM x",
        ] {
            assert!(!is_pool_check(&query), "{query}");
        }
    }

    #[test]
    fn server_timing_sums_durations_and_counts_calls() {
        let timings = RequestTimings {
            debug: false,
            db: vec![Call {
                what: "SELECT 1".into(),
                duration: Duration::from_micros(410),
            }],
            cache: vec![
                Call {
                    what: "GET".into(),
                    duration: Duration::from_micros(50),
                },
                Call {
                    what: "SET".into(),
                    duration: Duration::from_micros(30),
                },
            ],
        };
        assert_eq!(
            timings.server_timing(None),
            r#"db;dur=0.41;desc="1 query", cache;dur=0.08;desc="2 calls""#
        );
        let slow = RequestTimings {
            db: vec![Call {
                what: "SELECT 2".into(),
                duration: Duration::from_micros(1_234_567),
            }],
            ..RequestTimings::default()
        };
        assert!(slow.server_timing(None).starts_with("db;dur=1234.57;"));
        assert_eq!(
            RequestTimings::default().server_timing(Some("memory")),
            r#"db;dur=0.00;desc="0 queries", cache;dur=0.00;desc="0 calls", cache-tier;desc="memory""#
        );
    }

    #[test]
    fn calls_outside_a_request_are_not_recorded() {
        let shared: SharedTimings = Default::default();
        time_cache_call("PING", || ());
        with_installed_timings(Some(shared.clone()), || time_cache_call("GET", || ()));
        time_cache_call("PING", || ());
        assert_eq!(shared.lock().unwrap().cache.len(), 1);
    }
}
