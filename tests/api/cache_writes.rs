//! Writes and slow aggregates under faults (issue 11, cases 5–8): stampedes that outlast the
//! wait for the leader, `seed` interrupted, writes that wait on Redis, clocks that disagree.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use cachewithredis::cache::outbox;
use cachewithredis::models::{NewStudent, Student};
use cachewithredis::schema::cache_invalidations;
use diesel::prelude::*;
use futures_util::future::join_all;

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

#[tokio::test(flavor = "multi_thread")]
async fn writes_waiting_on_redis_give_their_database_connection_back_so_every_request_answers() {
    let app = Arc::new(spawn_app().await);
    app.sign_in().await;
    app.insert_students(&[20]);
    // A peer whose lease is live but which never acknowledges: every write waits on it, as
    // it would on an instance whose subscription went silent.
    let mut redis = app.redis_direct();
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query(&mut redis).expect("TIME");
    let lease_end = secs * 1000 + micros / 1000 + 60_000;
    let _: i64 = redis::cmd("ZADD")
        .arg(format!("{}:instances", app.prefix))
        .arg(lease_end)
        .arg("silent-peer")
        .query(&mut redis)
        .expect("ZADD");
    let token = app.csrf_token("/admin/students/new").await;
    let writes = (0..40).map(|i| {
        let (app, token) = (app.clone(), token.clone());
        async move {
            let name = format!("Writer {i}");
            let fields = [
                ("name", name.as_str()),
                ("age", "30"),
                ("csrf_token", &token),
            ];
            app.post_form("/admin/students", &fields).await.status()
        }
    });
    let reads = (0..20).map(|i| {
        let app = app.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(50 * i)).await;
            let path = if i % 2 == 0 {
                "/students"
            } else {
                "/students/average-age"
            };
            app.get(path).await.status()
        }
    });
    let (writes, reads) = tokio::join!(join_all(writes), join_all(reads));
    assert!(writes.iter().all(|s| *s == 303), "writes: {writes:?}");
    assert!(reads.iter().all(|s| *s == 200), "reads: {reads:?}");
    assert_eq!(app.student_count(), 41);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outbox_row_stamped_by_a_writer_whose_clock_runs_ahead_is_applied_within_a_second() {
    let app = spawn_app().await;
    app.insert_students(&[20]);
    app.average().await;
    assert_eq!(app.average().await.1, "HIT");
    // A writer on another host, its clock a minute ahead, commits a student and its outbox row
    // as that host's code did, then loses Redis before it can invalidate.
    let ahead_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        + 60_000;
    app.conn()
        .transaction(|conn| {
            let late = NewStudent {
                name: "Skewed".into(),
                age: 40,
            };
            Student::insert(conn, &late)?;
            diesel::insert_into(cache_invalidations::table)
                .values((
                    cache_invalidations::cache_key.eq(outbox::AVERAGE_AGE),
                    cache_invalidations::created_at_ms.eq(ahead_ms),
                ))
                .execute(conn)
        })
        .expect("skewed write");
    app.eventually(Duration::from_secs(3), "the row applied", || async {
        pending_invalidations(&app) == 0
    })
    .await;
    assert_eq!(app.average().await.0["student_count"], 2);
}
