//! One database aggregate at a time in this process while Redis cannot be used, shared by the
//! requests that wait for it.
//!
//! # Why no request is given a value from before it arrived
//!
//! Sharing the aggregate that is *running* when a request arrives would be a stale read: that
//! aggregate may have started before a write that answered before this request was sent. So a
//! request joins the *next* aggregate, one that has not started yet: requests that arrive while
//! aggregate A runs wait for A to end, then share B, which starts after all of them arrived.
//! The batch a request joins is taken out of `next`, under the same lock that joins it, at the
//! moment it starts running; a request that arrives later finds `next` empty and forms the
//! batch after it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// The requests waiting for one aggregate that has not started yet, and then its result.
struct Batch<T> {
    result: OnceLock<T>,
}

pub struct SingleFlight<T> {
    /// The batch that new requests join; `None` once it started and until someone arrives.
    next: Mutex<Option<Arc<Batch<T>>>>,
    /// Held while an aggregate runs: one at a time. Tokio's mutex is fair, so the members of a
    /// finished batch leave before the next batch starts.
    running: tokio::sync::Mutex<()>,
}

impl<T> Default for SingleFlight<T> {
    fn default() -> Self {
        SingleFlight {
            next: Mutex::new(None),
            running: tokio::sync::Mutex::new(()),
        }
    }
}

impl<T: Clone> SingleFlight<T> {
    /// The result of a `work` started after this call, shared with the calls that joined the
    /// same batch. A failure is not shared: the members that find no result run `work` again,
    /// still one at a time.
    pub async fn run<E, F, Fut>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let batch = {
            let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(next.get_or_insert_with(|| {
                Arc::new(Batch {
                    result: OnceLock::new(),
                })
            }))
        };
        let _running = self.running.lock().await;
        if let Some(result) = batch.result.get() {
            return Ok(result.clone());
        }
        {
            // This batch starts now: whoever arrives from here on waits for the next one.
            let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
            if next.as_ref().is_some_and(|n| Arc::ptr_eq(n, &batch)) {
                *next = None;
            }
        }
        let result = work().await?;
        let _ = batch.result.set(result.clone());
        Ok(result)
    }
}

/// A result shared between requests, whatever the query: each key's flight is typed by the
/// query that runs it, the map is not.
pub type Shared = Arc<dyn std::any::Any + Send + Sync>;

/// One [`SingleFlight`] per cached value (per key), made on first use and dropped when no
/// request is in it any more, so that asking for many pages does not grow the map for ever.
#[derive(Default)]
pub struct Flights {
    by_key: Mutex<HashMap<String, Arc<SingleFlight<Shared>>>>,
}

impl Flights {
    /// [`SingleFlight::run`] on `key`'s flight.
    pub async fn run<E, F, Fut>(&self, key: &str, work: F) -> Result<Shared, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Shared, E>>,
    {
        let flight = {
            let mut by_key = self.by_key.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(by_key.entry(key.to_owned()).or_default())
        };
        let result = flight.run(work).await;
        let mut by_key = self.by_key.lock().unwrap_or_else(PoisonError::into_inner);
        // The map's reference and this one: nobody else is in this flight.
        if Arc::strong_count(&flight) == 2 {
            by_key.remove(key);
        }
        result
    }

    /// How many keys have a flight now (for the tests).
    pub fn len(&self) -> usize {
        self.by_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn callers_that_arrive_while_one_runs_share_the_next_run_not_that_one() {
        let flight = Arc::new(SingleFlight::<u32>::default());
        let runs = Arc::new(AtomicU32::new(0));
        let call = |flight: Arc<SingleFlight<u32>>, runs: Arc<AtomicU32>| async move {
            flight
                .run(|| async {
                    let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, ()>(n)
                })
                .await
        };
        let first = tokio::spawn(call(flight.clone(), runs.clone()));
        tokio::time::sleep(Duration::from_millis(10)).await;
        // These arrive while run 1 is under way: it may predate them, so they get run 2.
        let late: Vec<_> = (0..8)
            .map(|_| tokio::spawn(call(flight.clone(), runs.clone())))
            .collect();
        assert_eq!(first.await.unwrap(), Ok(1));
        for handle in late {
            assert_eq!(handle.await.unwrap(), Ok(2));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failure_is_not_shared() {
        let flight = SingleFlight::<u32>::default();
        assert_eq!(
            flight.run(|| async { Err::<u32, _>("down") }).await,
            Err("down")
        );
        assert_eq!(flight.run(|| async { Ok::<_, &str>(7) }).await, Ok(7));
    }

    #[tokio::test]
    async fn each_key_has_its_own_flight_and_none_is_kept_once_it_ends() {
        let flights = Arc::new(Flights::default());
        let run = |flights: Arc<Flights>, key: &'static str, n: u32, pause: u64| async move {
            let shared = flights
                .run(key, || async move {
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    Ok::<Shared, ()>(Arc::new(n))
                })
                .await;
            *shared.unwrap().downcast_ref::<u32>().unwrap()
        };
        let slow = tokio::spawn(run(flights.clone(), "x", 0, 100));
        tokio::time::sleep(Duration::from_millis(10)).await;
        // In one flight these two would form one batch behind "x" and share its result.
        let a = tokio::spawn(run(flights.clone(), "a", 1, 0));
        let b = tokio::spawn(run(flights.clone(), "b", 2, 0));
        assert_eq!((a.await.unwrap(), b.await.unwrap()), (1, 2));
        assert!(
            !slow.is_finished(),
            "\"a\" and \"b\" did not wait for \"x\""
        );
        assert_eq!(slow.await.unwrap(), 0);
        assert!(flights.is_empty());
    }
}
