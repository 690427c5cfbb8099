//! The gate every password hash of a web request passes: at most one hash per core at a time,
//! and a bounded queue in front.
//!
//! An Argon2id hash takes 19 MiB and a core for its whole run. Run on the blocking pool as
//! requests arrive, a burst of 64 sign-ins ran 64 at once (1.2 GiB resident) and took the
//! threads that pages and `/readyz` need. Here a request first waits, asynchronously, for one
//! of `cores` permits, and only then takes a blocking thread, so hashing never holds more than
//! `cores` threads and `cores` × 19 MiB. The wait itself is bounded: once `cores` ×
//! (1 + [`QUEUE_PER_PERMIT`]) requests are in, the next is refused with 503 and `Retry-After`
//! rather than queued for longer than a client would wait.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use tokio::sync::Semaphore;

use crate::db;
use crate::error::AppError;

/// Requests allowed to wait per hash running.
const QUEUE_PER_PERMIT: usize = 8;
/// What a refused request is told to wait: about one queue's worth of hashes.
const RETRY_AFTER_SECS: u64 = 2;

struct Gate {
    permits: Semaphore,
    /// Requests inside the gate, hashing or waiting to.
    inside: AtomicUsize,
    capacity: usize,
}

fn gate() -> &'static Gate {
    static GATE: OnceLock<Gate> = OnceLock::new();
    GATE.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Gate {
            permits: Semaphore::new(cores),
            inside: AtomicUsize::new(0),
            capacity: cores * (1 + QUEUE_PER_PERMIT),
        }
    })
}

/// Leaves the gate when the request is done or dropped (a client that hung up while waiting).
struct Inside(&'static Gate);

impl Drop for Inside {
    fn drop(&mut self) {
        self.0.inside.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs `hash` (Argon2 work) once a permit is free, on a blocking thread.
pub async fn run<T: Send + 'static>(
    hash: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AppError> {
    let gate = gate();
    // Counting in before checking makes the check and the entry one atomic step, so a burst
    // cannot all see room.
    let inside = Inside(gate);
    if gate.inside.fetch_add(1, Ordering::SeqCst) >= gate.capacity {
        return Err(AppError::Busy {
            retry_after_secs: RETRY_AFTER_SECS,
        });
    }
    let _permit = gate.permits.acquire().await.map_err(AppError::unexpected)?;
    let out = db::blocking(move || Ok::<_, AppError>(hash())).await;
    drop(inside);
    out
}
