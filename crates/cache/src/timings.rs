//! The record of database and cache work done while serving one request, which the application
//! turns into its `Server-Timing` header (the Debug Toolbar's SQL and Cache panels, in the
//! browser).
//!
//! The record follows the request across the thread hop to blocking work: the application's
//! middleware puts it in a tokio task-local ([`REQUEST_TIMINGS`]), [`blocking`] carries it to the
//! blocking thread and installs it in a thread-local there, and whatever records work (the
//! Redis calls here, the application's Diesel instrumentation) writes to what is installed.
//! Work outside a request (the outbox worker, a command) has no record installed and is not
//! counted.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::CacheError;

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
    /// The request's `X-Request-Id`, for every log line written while serving it, on the
    /// request's task or on a blocking thread it uses.
    pub request_id: Option<Arc<str>>,
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

/// The id of the request being served by this task, or by the request whose blocking work runs
/// on this thread. Never waits: a record locked at that moment (by this thread, pushing a
/// call) is taken for none.
pub fn current_request_id() -> Option<Arc<str>> {
    let of = |timings: &SharedTimings| timings.try_lock().ok()?.request_id.clone();
    if let Ok(id) = REQUEST_TIMINGS.try_with(of) {
        return id;
    }
    INSTALLED
        .try_with(|slot| slot.try_borrow().ok()?.as_ref().and_then(of))
        .ok()
        .flatten()
}

/// Runs `f` on this thread with `timings` as the place where queries and cache calls are recorded.
pub fn with_installed_timings<T>(timings: Option<SharedTimings>, f: impl FnOnce() -> T) -> T {
    let previous = INSTALLED.with(|slot| slot.replace(timings));
    let out = f();
    INSTALLED.with(|slot| *slot.borrow_mut() = previous);
    out
}

/// Adds to the record installed on this thread, if any (the application's query recorder uses
/// it for database statements).
pub fn record(push: impl FnOnce(&mut RequestTimings)) {
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

/// Runs blocking work (Diesel, the Redis pool) on the runtime's blocking threads, carrying the
/// current request's record along so the work shows in it.
pub async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, CacheError> {
    let timings = current_request_timings();
    Ok(tokio::task::spawn_blocking(move || with_installed_timings(timings, f)).await?)
}

/// [`run_blocking`] for work that can fail.
pub async fn blocking<T, E>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, CacheError>
where
    T: Send + 'static,
    E: Into<CacheError> + Send + 'static,
{
    run_blocking(f).await?.map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_sums_durations_and_counts_calls() {
        let timings = RequestTimings {
            debug: false,
            request_id: None,
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
    fn the_request_id_is_found_on_a_blocking_thread_of_the_request_and_nowhere_else() {
        let shared: SharedTimings = Arc::new(Mutex::new(RequestTimings {
            request_id: Some("req-1".into()),
            ..RequestTimings::default()
        }));
        assert_eq!(current_request_id(), None);
        let seen = with_installed_timings(Some(shared), current_request_id);
        assert_eq!(seen.as_deref(), Some("req-1"));
        assert_eq!(current_request_id(), None);
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
