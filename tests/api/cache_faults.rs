//! Faults real deployments meet (issue 11): Redis losing data, a value the app did not write,
//! a subscription dropped without a FIN, a rolling restart. After each, no read that starts
//! after a write answered shows a value from before it.

use std::time::Duration;

use futures_util::future::join_all;

use crate::helpers::{spawn_app, spawn_app_with, spawn_second_instance, AppOptions, TestApp};

async fn count_and_cache(app: &TestApp) -> (i64, String) {
    let (json, x_cache) = app.average().await;
    (json["student_count"].as_i64().unwrap_or(-1), x_cache)
}

/// Reads for a while; each must show `expected` students.
async fn every_read_shows(app: &TestApp, expected: i64, reads: usize) {
    for _ in 0..reads {
        let (count, x_cache) = count_and_cache(app).await;
        assert_eq!(
            count, expected,
            "a read answered {x_cache} from before a write"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn eventually_hit(app: &TestApp, expected: i64) {
    app.eventually(Duration::from_secs(10), "HIT again", || async {
        count_and_cache(app).await == (expected, "HIT".to_string())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_restored_from_an_older_snapshot_serves_nothing_from_before_an_answered_write() {
    let app = spawn_app().await;
    app.insert_students(&[20, 22]);
    app.sign_in().await;
    app.average().await;
    assert_eq!(count_and_cache(&app).await, (2, "HIT".to_string()));
    // The snapshot holds the value with 2 students; the write after it is lost with Redis.
    app.save_redis();
    assert_eq!(app.add_student("Ada", "40").await.status(), 303);
    assert_eq!(count_and_cache(&app).await.0, 3);
    app.stop_redis();
    app.restart_redis();

    // A new instance, whose floor is 0, must not trust the restored value either.
    let fresh = spawn_second_instance(&app).await;
    every_read_shows(&fresh, 3, 10).await;
    every_read_shows(&app, 3, 30).await;
    eventually_hit(&app, 3).await;
    eventually_hit(&fresh, 3).await;
}

/// Puts `foreign` in the key (no TTL), then 32 concurrent and 20 sequential reads.
async fn a_foreign_value_is_replaced_by_one_aggregate(foreign: &str) {
    let app = spawn_app().await;
    app.insert_students(&[20, 30]);
    redis::cmd("SET")
        .arg(app.value_key())
        .arg(foreign)
        .query::<()>(&mut app.redis_direct())
        .unwrap();

    let burst = join_all((0..32).map(|_| count_and_cache(&app))).await;
    for (count, x_cache) in burst {
        assert_eq!(count, 2, "{x_cache}");
    }
    for _ in 0..20 {
        assert_eq!(count_and_cache(&app).await.0, 2);
    }
    assert_eq!(count_and_cache(&app).await, (2, "HIT".to_string()));
    assert_eq!(
        app.metric("cachewithredis_db_aggregate_queries_total")
            .await,
        1.0,
        "aggregate queries for 53 reads of a foreign value"
    );
    let stored: serde_json::Value =
        serde_json::from_str(&app.redis_get(&app.value_key()).unwrap()).unwrap();
    assert_eq!(
        stored["payload"]["student_count"], 2,
        "the foreign value was replaced"
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg(app.value_key())
        .query(&mut app.redis_direct())
        .unwrap();
    assert!(ttl > 0, "the replacement has a TTL ({ttl})");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_value_typed_by_hand_into_the_key_is_replaced_by_one_aggregate_then_hit() {
    a_foreign_value_is_replaced_by_one_aggregate("\u{0}unparseable").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_value_left_by_an_older_release_is_replaced_by_one_aggregate_then_hit() {
    a_foreign_value_is_replaced_by_one_aggregate(r#"{"average_age":99.0,"student_count":1}"#).await;
}

fn lease_holders(app: &TestApp) -> (i64, Vec<u64>, u64) {
    let mut conn = app.redis_direct();
    // Without the table's marker (scored +inf).
    let holders: i64 = redis::cmd("ZCOUNT")
        .arg(app.key("instances"))
        .arg("-inf")
        .arg("(+inf")
        .query(&mut conn)
        .unwrap();
    let acks: Vec<u64> = redis::cmd("HVALS")
        .arg(app.key("acks"))
        .query(&mut conn)
        .unwrap();
    let generation: Option<u64> = redis::cmd("GET")
        .arg(app.generation_key())
        .query(&mut conn)
        .unwrap();
    (holders, acks, generation.unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_whose_subscription_dropped_silently_serves_nothing_old_and_takes_its_lease_back(
) {
    let app = spawn_app().await;
    let other = spawn_second_instance(&app).await;
    app.insert_students(&[20]);
    app.sign_in().await;
    other.average().await;
    assert_eq!(count_and_cache(&other).await, (1, "HIT".to_string()));
    // Every connection the other instance has now goes silent, without a FIN; new ones work.
    other.proxy.black_hole();
    assert_eq!(app.add_student("Unheard", "40").await.status(), 303);

    every_read_shows(&other, 2, 20).await;
    // The silent subscription is found out: the other instance listens again, has
    // acknowledged the write, and holds its lease again.
    app.eventually(
        Duration::from_secs(5),
        "both instances hold a lease and acknowledged the last write",
        || async {
            let (holders, acks, generation) = lease_holders(&app);
            holders == 2 && acks.len() == 2 && acks.iter().all(|&a| a >= generation)
        },
    )
    .await;
    every_read_shows(&other, 2, 5).await;
    // Its subscription works again: an announcement reaches both instances (only a live
    // subscription acknowledges a generation that the renewals do not know of).
    let (_, _, generation) = lease_holders(&app);
    redis::cmd("PUBLISH")
        .arg(app.key("invalidations"))
        .arg(generation + 1)
        .query::<()>(&mut app.redis_direct())
        .unwrap();
    app.eventually(
        Duration::from_secs(2),
        "both instances heard the announcement",
        || async { lease_holders(&app).1 == vec![generation + 1; 2] },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_during_a_rolling_restart_waits_for_no_stopped_instance_and_bypasses_nothing() {
    let app = spawn_app().await;
    let other = spawn_second_instance(&app).await;
    app.insert_students(&[20]);
    app.sign_in().await;
    other.average().await;
    app.average().await;
    // SIGTERM's graceful stop.
    other.server.stop(true).await;
    app.eventually(
        Duration::from_secs(5),
        "the stopped instance withdrew its lease",
        || async {
            let (holders, acks, _) = lease_holders(&app);
            (holders, acks.len()) == (1, 1)
        },
    )
    .await;

    let app = std::sync::Arc::new(app);
    let writer = {
        let app = app.clone();
        tokio::spawn(async move { app.add_student("Restart", "40").await.status() })
    };
    let mut seen = Vec::new();
    while !writer.is_finished() {
        seen.push(count_and_cache(&app).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(writer.await.unwrap(), 303);
    assert!(
        seen.iter().all(|(_, x_cache)| x_cache != "BYPASS"),
        "reads during the write: {seen:?}"
    );
    let (count, x_cache) = count_and_cache(&app).await;
    assert_eq!(count, 2, "{x_cache}");
    assert_ne!(x_cache, "BYPASS");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_that_missed_an_announcement_stops_serving_its_copy_and_takes_its_lease_back() {
    let app = spawn_app().await;
    app.insert_students(&[20]);
    app.average().await;
    assert_eq!(count_and_cache(&app).await, (1, "HIT".to_string()));
    // A write whose announcement was lost: committed, generation raised and value deleted in
    // Redis, nothing published. The instance still holds the old copy in memory.
    app.insert_students(&[30]);
    let mut conn = app.redis_direct();
    let generation_key = app.generation_key();
    let generation: Option<u64> = redis::cmd("GET")
        .arg(&generation_key)
        .query(&mut conn)
        .unwrap();
    redis::cmd("SET")
        .arg(&generation_key)
        .arg(generation.unwrap_or(0) + 1)
        .query::<()>(&mut conn)
        .unwrap();
    redis::cmd("DEL")
        .arg(app.value_key())
        .query::<()>(&mut conn)
        .unwrap();

    // Its lease is not renewed while it lags, so the copy is dropped within one lease.
    app.eventually(Duration::from_secs(3), "the new count", || async {
        count_and_cache(&app).await.0 == 2
    })
    .await;
    every_read_shows(&app, 2, 10).await;
    // And it catches up: it holds a lease again, at the current generation.
    app.eventually(
        Duration::from_secs(3),
        "a lease at the current generation",
        || async {
            let (holders, acks, generation) = lease_holders(&app);
            holders == 1 && acks.iter().all(|&a| a >= generation)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_acknowledgement_still_missing_at_the_deadline_leaves_the_invalidation_pending() {
    let app = spawn_app().await;
    app.insert_students(&[20]);
    app.sign_in().await;
    app.average().await;
    // A lease holder that never acknowledges: its lease reaches far past the write's deadline.
    let far: u64 = 32_503_680_000_000;
    redis::cmd("ZADD")
        .arg(app.key("instances"))
        .arg(far)
        .arg("never-acknowledges")
        .query::<()>(&mut app.redis_direct())
        .unwrap();
    assert_eq!(app.add_student("Unacknowledged", "40").await.status(), 303);
    use diesel::prelude::*;
    let pending: i64 = cachewithredis::cache::schema::cache_invalidations::table
        .count()
        .get_result(&mut app.conn())
        .unwrap();
    assert_eq!(pending, 1, "the invalidation is not counted as done");
    let (json, x_cache) = app.average().await;
    assert_eq!(
        (json["student_count"].as_i64(), x_cache.as_str()),
        (Some(2), "BYPASS")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_clear_after_a_change_behind_the_apps_back_drops_the_copy_in_memory_too() {
    let app = spawn_app().await;
    app.insert_students(&[20]);
    app.average().await;
    assert_eq!(count_and_cache(&app).await, (1, "HIT".to_string()));
    app.insert_students(&[30]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cachewithredis"))
        .arg("cache-clear")
        .env("DATABASE_URL", app.database.url_string())
        .env("REDIS_URL", app.redis_url())
        .env("CACHE_KEY_PREFIX", &app.prefix)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(count_and_cache(&app).await.0, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_value_at_the_current_generation_is_replaced_by_one_aggregate_then_hit() {
    a_foreign_value_is_replaced_by_one_aggregate(r#"{"generation":0}"#).await;
}

/// `reader` with one student, serving it from memory (it holds its lease), and a second
/// instance with a signed-in staff user and a CSRF token for the add form.
async fn serving_from_memory_beside_a_writer(reader: TestApp) -> (TestApp, TestApp, String) {
    let writer = spawn_second_instance(&reader).await;
    reader.insert_students(&[20]);
    writer.sign_in().await;
    let token = writer.csrf_token("/admin/students/new").await;
    reader
        .eventually(Duration::from_secs(10), "a hit from memory", || async {
            let response = reader.get("/api/students/average-age").await;
            crate::helpers::header(&response, "x-cache-tier") == "memory"
        })
        .await;
    (reader, writer, token)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_from_an_instance_cut_off_from_redis_answers_only_once_the_others_dropped_the_old_value(
) {
    let (reader, writer, token) = serving_from_memory_beside_a_writer(spawn_app().await).await;
    // A partial partition: the writer loses Redis, the reader keeps it (and renews its lease).
    // Past a lease, a writer judging by its own last renewal would take every peer's lease for
    // lapsed; the reader's has not.
    writer.proxy.cut();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let response = writer
        .post_form(
            "/admin/students",
            &[
                ("name", "Partitioned"),
                ("age", "40"),
                ("csrf_token", &token),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    every_read_shows(&reader, 2, 20).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_to_a_redis_just_restarted_waits_out_the_memory_leases_the_old_one_granted() {
    // The reader's calls to a frozen Redis, and the PING of its silent subscription, take long to
    // fail, so only its lease's end stops it serving from memory.
    let reader = spawn_app_with(AppOptions {
        redis_timeout_ms: Some(3_000),
        ..Default::default()
    })
    .await;
    let (reader, writer, token) = serving_from_memory_beside_a_writer(reader).await;
    // The reader's lease was granted by this Redis; the restarted one has no record of it.
    reader.proxy.stall();
    reader.stop_redis();
    reader.restart_redis();
    // The writer finds the new server (its first call fails on a dead connection) and trusts it
    // once its outbox is applied: its write then reaches Redis at the first try.
    writer
        .eventually(
            Duration::from_secs(5),
            "the writer on the new Redis",
            || async { writer.average().await.1 != "BYPASS" },
        )
        .await;
    let response = writer
        .post_form(
            "/admin/students",
            &[
                ("name", "After restart"),
                ("age", "40"),
                ("csrf_token", &token),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    every_read_shows(&reader, 2, 5).await;
}
