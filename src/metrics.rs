//! Counters for `/metrics`, and the Diesel instrumentation that adds each statement to the
//! request's record of database and cache work (see [`cache::timings`]), which becomes the
//! `Server-Timing` header.

use std::sync::Arc;
use std::time::Instant;

use cache::metrics::CacheMetrics;
use diesel::connection::{Instrumentation, InstrumentationEvent};
use prometheus::{Encoder, HistogramOpts, HistogramVec, Registry, TextEncoder};

/// The application's Prometheus series, one set per running application.
pub struct Metrics {
    registry: Registry,
    pub http_request_duration: HistogramVec,
    /// The cache's series, in the same registry; shared with the cache.
    pub cache: Arc<CacheMetrics>,
}

impl Metrics {
    // The series are fixed in this function: a bad name or a duplicate is a programming error
    // that every test run would find, and start-up must abort on it.
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        let registry = Registry::new();
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
        registry
            .register(Box::new(http_request_duration.clone()))
            .expect("unique metric names");
        let cache = CacheMetrics::register(&registry, "cachewithredis")
            .expect("valid, unique metric names");
        Metrics {
            registry,
            http_request_duration,
            cache: Arc::new(cache),
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

use cache::timings::record;
pub use cache::timings::{
    current_request_timings, time_cache_call, with_installed_timings, Call, RequestTimings,
    SharedTimings, REQUEST_TIMINGS,
};

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
}
