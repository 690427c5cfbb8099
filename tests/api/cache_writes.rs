//! Writes and slow aggregates under faults (issue 11, cases 5–8): stampedes that outlast the
//! wait for the leader, `seed` interrupted, writes that wait on Redis, clocks that disagree.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cachewithredis::cache::schema::cache_invalidations;
use cachewithredis::cache::{generation, outbox};
use cachewithredis::config::DatabaseUrl;
use cachewithredis::models::{NewStudent, Student};
use diesel::prelude::*;
use futures_util::future::join_all;

use crate::helpers::{spawn_app, TestApp};

const AGGREGATES: &str = "cachewithredis_db_aggregate_queries_total";
const AGGREGATES_RUNNING: &str = "cachewithredis_db_aggregate_queries_running";

/// Holds `LOCK TABLE student_age_counts IN ACCESS EXCLUSIVE MODE` for `hold` on a connection of
/// its own, so that every aggregate started meanwhile waits; returns once the lock is taken.
fn lock_age_counts(url: &str, hold: Duration) -> std::thread::JoinHandle<()> {
    use diesel::connection::SimpleConnection;
    let mut conn = diesel::PgConnection::establish(url).expect("connect");
    conn.batch_execute("BEGIN; LOCK TABLE student_age_counts IN ACCESS EXCLUSIVE MODE")
        .expect("lock");
    std::thread::spawn(move || {
        std::thread::sleep(hold);
        conn.batch_execute("COMMIT").expect("unlock");
    })
}

fn pending_invalidations(app: &TestApp) -> i64 {
    cache_invalidations::table
        .count()
        .get_result(&mut app.conn())
        .expect("count outbox rows")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cold_burst_that_outlasts_the_wait_for_the_leader_still_runs_one_aggregate() {
    let app = spawn_app().await;
    // SQLite in WAL mode never makes a reader wait for a writer, and nothing else there slows an
    // aggregate down for seconds without burning that CPU: this case needs PostgreSQL's lock.
    let DatabaseUrl::Postgres(url) = app.database.url.clone() else {
        return;
    };
    app.insert_students(&[20, 22]);
    let lock = lock_age_counts(&url, Duration::from_secs(4));
    let answers = join_all((0..32).map(|_| app.average())).await;
    lock.join().expect("lock released");
    for (json, x_cache) in &answers {
        assert_eq!(json["student_count"], 2, "{x_cache}");
        assert_ne!(x_cache, "BYPASS");
    }
    assert_eq!(app.metric(AGGREGATES).await, 1.0, "aggregates for 32 reads");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_cut_a_burst_of_reads_runs_its_aggregates_one_at_a_time() {
    let app = Arc::new(spawn_app().await);
    // A burst piles up only behind a slow aggregate, and only PostgreSQL's lock makes one slow
    // (SQLite's reads of the per-age counts never wait and take microseconds).
    let DatabaseUrl::Postgres(url) = app.database.url.clone() else {
        return;
    };
    app.insert_students(&[18, 19, 20, 21]);
    app.proxy.cut();
    assert_eq!(app.average().await.1, "BYPASS");
    let before = app.metric(AGGREGATES).await;

    // Watches how many aggregates run at once while the burst is served.
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (app, done) = (app.clone(), done.clone());
        tokio::spawn(async move {
            let mut most = 0.0_f64;
            while !done.load(Ordering::Acquire) {
                most = most.max(app.metric(AGGREGATES_RUNNING).await);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            most
        })
    };
    // The first aggregate is held up, so that the others pile up behind it.
    let lock = lock_age_counts(&url, Duration::from_secs(2));
    let answers = join_all((0..32).map(|_| app.average())).await;
    lock.join().expect("lock released");
    done.store(true, Ordering::Release);
    let most_at_once = watcher.await.expect("watcher");
    for (json, x_cache) in &answers {
        assert_eq!(json["student_count"], 4, "{x_cache}");
        assert_eq!(x_cache, "BYPASS");
    }
    assert!(
        most_at_once <= 1.0,
        "{most_at_once} aggregates running at once"
    );
    let burst = app.metric(AGGREGATES).await - before;
    assert!(burst <= 4.0, "{burst} aggregates for 32 reads");
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
        .args(["seed", "--count", "65000", "--seed", "3"])
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
    assert_eq!(pending_invalidations(&app), 3, "one per batch of 30,000");
    app.proxy.restore();
    app.eventually(Duration::from_secs(10), "the outbox applied", || async {
        pending_invalidations(&app) == 0
    })
    .await;
    assert_eq!(app.average().await.0["student_count"], 65_001);
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
        .arg(app.key("instances"))
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
async fn an_outbox_row_stamped_by_a_writer_whose_clock_runs_ahead_is_applied_after_the_grace_period(
) {
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
            // As `outbox::record` does, with the writer's own clock for the row's stamp.
            generation::bump(conn)?;
            diesel::insert_into(cache_invalidations::table)
                .values((
                    cache_invalidations::cache_key.eq(outbox::ALL),
                    cache_invalidations::created_at_ms.eq(ahead_ms),
                ))
                .execute(conn)
        })
        .expect("skewed write");
    let grace_and_polls = outbox::GRACE + 3 * outbox::POLL_EVERY;
    app.eventually(grace_and_polls, "the row applied", || async {
        pending_invalidations(&app) == 0
    })
    .await;
    assert_eq!(app.average().await.0["student_count"], 2);
}
