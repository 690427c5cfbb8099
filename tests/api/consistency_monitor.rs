//! The consistency monitor (SPEC §4): values served from the cache are checked against the
//! database in the background, and a stale one is counted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::helpers::spawn_app;

const CHECKS: &str = "cachewithredis_cache_consistency_checks_total";
const INCONSISTENCIES: &str = "cachewithredis_cache_inconsistencies_total";

#[tokio::test(flavor = "multi_thread")]
async fn values_served_from_the_cache_while_staff_write_are_checked_and_found_consistent() {
    let app = Arc::new(spawn_app().await);
    app.insert_students(&[20, 22, 24]);
    app.sign_in().await;

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (app, stop) = (app.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Acquire) {
                app.average().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut written = 0;
    app.eventually(Duration::from_secs(20), "three consistency checks", || {
        written += 1;
        let app = app.clone();
        async move {
            // A write between checks: the monitor must not mistake it for a stale value.
            let age = (18 + written % 10).to_string();
            assert_eq!(app.add_student("Writer", &age).await.status(), 303);
            app.metric(CHECKS).await >= 3.0
        }
    })
    .await;
    stop.store(true, Ordering::Release);
    reader.await.expect("reader");

    assert_eq!(app.metric(INCONSISTENCIES).await, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cached_value_that_disagrees_with_the_database_is_counted_as_an_inconsistency() {
    let app = spawn_app().await;
    app.insert_students(&[20, 30]);
    // What a stale set would leave: a well-formed value at the current generation, computed
    // from a database state that is gone.
    let generation: Option<u64> = redis::cmd("GET")
        .arg(app.generation_key())
        .query(&mut app.redis_direct())
        .expect("GET generation");
    let stale = serde_json::json!({
        "generation": generation.unwrap_or(0),
        "database": app.database_identity(),
        "compute_us": 100,
        "payload": {"average_age": 20.0, "student_count": 1, "ages": {"20": 1}},
    });
    let _: () = redis::cmd("SET")
        .arg(app.value_key())
        .arg(stale.to_string())
        .arg("EX")
        .arg(300)
        .query(&mut app.redis_direct())
        .expect("SET");

    let (json, x_cache) = app.average().await;
    assert_eq!(x_cache, "HIT");
    assert_eq!(json["student_count"], 1, "the planted value is served");

    // The monitor samples a hit served in the 50 ms before each check, so keep serving it, as
    // visitors would: one hit alone is checked only if it happens to fall in that window.
    app.eventually(
        Duration::from_secs(10),
        "an inconsistency counted",
        || async {
            assert_eq!(app.average().await.0["student_count"], 1, "still served");
            app.metric(INCONSISTENCIES).await >= 1.0
        },
    )
    .await;
    assert!(app.metric(CHECKS).await >= 1.0);
}
