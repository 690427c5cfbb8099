//! Where every password hash of a web request runs: on threads of its own, one per core, with a
//! bounded queue in front.
//!
//! An Argon2id hash takes 19 MiB and a core for its whole run. Run on the blocking pool as
//! requests arrived, a burst of 64 sign-ins ran 64 hashes at once (1.2 GiB resident) on the
//! threads that pages and `/readyz` also need. Here `cores` dedicated threads do all the
//! hashing: at most `cores` hashes run at once, and no thread a page needs is ever taken. Each
//! keeps its Argon2 working memory for the next hash (`models::staff::verify_password`), so the
//! memory for hashing is `cores` × 19 MiB however many sign-ins arrive; on the blocking pool's
//! hundreds of threads that reuse would have been a leak.
//!
//! The wait is bounded too: once `cores` × (1 + [`QUEUE_PER_CORE`]) requests are in, the next
//! is refused with 503 and `Retry-After` rather than queued for longer than a client waits.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::oneshot;

use crate::error::AppError;

/// Requests allowed to wait per hashing thread.
const QUEUE_PER_CORE: usize = 16;
/// What a refused request is told to wait: about one queue's worth of hashes.
const RETRY_AFTER_SECS: u64 = 2;

type Job = Box<dyn FnOnce() + Send>;

struct Gate {
    jobs: Mutex<Sender<Job>>,
    /// Requests inside the gate, hashing or waiting to.
    inside: AtomicUsize,
    capacity: usize,
}

fn gate() -> &'static Gate {
    static GATE: OnceLock<Gate> = OnceLock::new();
    GATE.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Gate::start(cores, cores * (1 + QUEUE_PER_CORE))
    })
}

impl Gate {
    /// Starts `threads` hashing threads, admitting at most `capacity` requests at a time.
    fn start(threads: usize, capacity: usize) -> Gate {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads {
            let queue = Arc::clone(&queue);
            let spawned = std::thread::Builder::new()
                .name(format!("password-hash-{n}"))
                .spawn(move || work(&queue));
            if let Err(e) = spawned {
                log::error!("cannot start a password hashing thread: {e}");
            }
        }
        Gate {
            jobs: Mutex::new(jobs),
            inside: AtomicUsize::new(0),
            capacity,
        }
    }
}

fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while taking a job, not while running it.
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        match job {
            // A panicking job loses its answer (the caller sees an error), not the thread.
            Ok(job) => drop(catch_unwind(AssertUnwindSafe(job))),
            Err(_) => return,
        }
    }
}

/// Leaves the gate when the request is done or dropped (a client that hung up while waiting).
struct Inside(&'static Gate);

impl Drop for Inside {
    fn drop(&mut self) {
        self.0.inside.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs `hash` (Argon2 work) on a hashing thread and waits for it without blocking.
pub async fn run<T: Send + 'static>(
    hash: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AppError> {
    run_at(gate(), hash).await
}

async fn run_at<T: Send + 'static>(
    gate: &'static Gate,
    hash: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AppError> {
    // Counting in before checking makes the check and the entry one atomic step, so a burst
    // cannot all see room.
    let _inside = Inside(gate);
    if gate.inside.fetch_add(1, Ordering::SeqCst) >= gate.capacity {
        return Err(AppError::Busy {
            retry_after_secs: RETRY_AFTER_SECS,
        });
    }
    let (answer, answered) = oneshot::channel();
    let job: Job = Box::new(move || {
        // A caller that hung up while queued needs no hash: its place is already free, and
        // hashing anyway would keep the queue's bound from bounding the work.
        if answer.is_closed() {
            return;
        }
        let _ = answer.send(hash());
    });
    gate.jobs
        .lock()
        .map_err(|_| AppError::unexpected(anyhow::anyhow!("hashing queue poisoned")))?
        .send(job)
        .map_err(|_| AppError::unexpected(anyhow::anyhow!("no hashing thread is running")))?;
    answered
        .await
        .map_err(|_| AppError::unexpected(anyhow::anyhow!("a password hash failed")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_beyond_the_queue_are_refused_busy_and_the_rest_run_in_turn() {
        let gate: &'static Gate = Box::leak(Box::new(Gate::start(1, 3)));
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = Arc::new(Mutex::new(released));
        let running = Arc::new(AtomicUsize::new(0));
        let most_running = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let (released, running, most) =
                (released.clone(), running.clone(), most_running.clone());
            tasks.push(tokio::spawn(run_at(gate, move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let _ = released.lock().map(|r| r.recv());
                running.fetch_sub(1, Ordering::SeqCst);
            })));
        }
        while gate.inside.load(Ordering::SeqCst) < 3 {
            tokio::task::yield_now().await;
        }
        let refused = run_at(gate, || ()).await;
        assert!(matches!(
            refused,
            Err(AppError::Busy {
                retry_after_secs: 2
            })
        ));
        for _ in 0..3 {
            release.send(()).unwrap();
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(
            most_running.load(Ordering::SeqCst),
            1,
            "one thread, one hash at a time"
        );
        assert!(
            run_at(gate, || ()).await.is_ok(),
            "room again once they are done"
        );
    }

    #[tokio::test]
    async fn a_queued_hash_whose_caller_hung_up_is_not_run() {
        let gate: &'static Gate = Box::leak(Box::new(Gate::start(1, 3)));
        let (release, released) = std::sync::mpsc::channel::<()>();
        // The one thread is busy with a first hash until released.
        let first = tokio::spawn(run_at(gate, move || {
            let _ = released.recv();
        }));
        while gate.inside.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        let ran = Arc::new(AtomicUsize::new(0));
        let counted = ran.clone();
        let queued = tokio::spawn(run_at(gate, move || {
            counted.fetch_add(1, Ordering::SeqCst);
        }));
        while gate.inside.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        queued.abort();
        let _ = queued.await;
        release.send(()).unwrap();
        first.await.unwrap().unwrap();
        // A hash queued after it runs, so the hung-up one had its turn before.
        let after = ran.clone();
        run_at(gate, move || {
            after.fetch_add(10, Ordering::SeqCst);
        })
        .await
        .unwrap();
        assert_eq!(
            ran.load(Ordering::SeqCst),
            10,
            "the abandoned hash did not run"
        );
    }
}
