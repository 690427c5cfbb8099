//! Writes and slow aggregates under faults (issue 11, cases 5–8): stampedes that outlast the
//! wait for the leader, `seed` interrupted, writes that wait on Redis, clocks that disagree.

use std::process::Command;
use std::time::Duration;

use cachewithredis::schema::cache_invalidations;
use diesel::prelude::*;

use crate::helpers::{spawn_app, TestApp};

fn pending_invalidations(app: &TestApp) -> i64 {
    cache_invalidations::table
        .count()
        .get_result(&mut app.conn())
        .expect("count outbox rows")
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_records_an_invalidation_with_every_batch_so_an_interruption_loses_none() {
    let app = spawn_app().await;
    app.insert_students(&[20]);
    app.average().await;
    assert!(
        app.redis_get(&app.value_key()).is_some(),
        "old value cached"
    );
    // Redis unreachable for the command and for the server alike: what each batch commits is
    // all that tells the fleet about it, as if the command were killed after each one.
    app.proxy.cut();
    let out = Command::new(env!("CARGO_BIN_EXE_cachewithredis"))
        .args(["seed", "--count", "25000", "--seed", "3"])
        .env("DATABASE_URL", app.database.url_string())
        .env("REDIS_URL", app.proxy.url())
        .env("CACHE_KEY_PREFIX", &app.prefix)
        .env("RUST_LOG", "warn")
        .output()
        .expect("seed runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(pending_invalidations(&app), 3, "one per batch of 10,000");
    app.proxy.restore();
    app.eventually(Duration::from_secs(10), "the outbox applied", || async {
        pending_invalidations(&app) == 0
    })
    .await;
    assert_eq!(app.average().await.0["student_count"], 25_001);
}
