//! The races of SPEC §4, provoked: readers and writers at once, cold bursts, two instances.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use futures_util::future::join_all;

use crate::helpers::{spawn_app, spawn_app_with, spawn_second_instance, AppOptions, TestApp};

/// The rows every test starts from. The aggregate reads per-age counts, so its time does not
/// grow with them: what a reader's computation overlaps is its Redis round trips and thread hops.
const MANY: usize = 2_000;

fn seed_many(app: &TestApp) {
    let ages: Vec<i32> = (0..MANY).map(|i| 18 + (i % 8) as i32).collect();
    app.insert_students(&ages);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_read_after_a_write_answered_shows_the_old_count_while_readers_race_the_writes() {
    let app = Arc::new(spawn_app().await);
    let other = Arc::new(spawn_second_instance(&app).await);
    seed_many(&app);
    app.sign_in().await;

    // The count every read that starts from now on must show at least.
    let answered = Arc::new(AtomicI64::new(MANY as i64));
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..6)
        .map(|i| {
            let instance = if i % 2 == 0 {
                app.clone()
            } else {
                other.clone()
            };
            let (answered, stop) = (answered.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut reads, mut stale) = (0, Vec::new());
                while !stop.load(Ordering::Acquire) {
                    let floor = answered.load(Ordering::Acquire);
                    let (json, x_cache) = instance.average().await;
                    let seen = json["student_count"].as_i64().unwrap_or(-1);
                    reads += 1;
                    if seen < floor {
                        stale.push(format!("{x_cache}: saw {seen} after {floor} was answered"));
                    }
                }
                (reads, stale)
            })
        })
        .collect();

    // Writes back to back, so that they commit while readers' aggregates are running.
    for write in 1..=60 {
        assert_eq!(app.add_student("Racer", "30").await.status(), 303);
        answered.store((MANY + write) as i64, Ordering::Release);
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, Ordering::Release);
    let mut stale_reads = Vec::new();
    let mut reads = 0;
    for reader in join_all(readers).await {
        let (n, stale) = reader.unwrap();
        reads += n;
        stale_reads.extend(stale);
    }
    assert!(reads > 60, "the readers ran ({reads} reads)");
    assert!(
        stale_reads.is_empty(),
        "{} stale reads of {reads}: {:?}",
        stale_reads.len(),
        &stale_reads[..stale_reads.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cold_burst_of_64_requests_over_two_instances_runs_one_aggregate() {
    let app = spawn_app().await;
    let other = spawn_second_instance(&app).await;
    seed_many(&app);
    let requests = (0..64).map(|i| {
        let target = if i % 2 == 0 { &app } else { &other };
        target.average()
    });
    let answers = join_all(requests).await;
    for (json, x_cache) in &answers {
        assert_eq!(json["student_count"], MANY as i64, "{x_cache}");
        assert_ne!(x_cache, "BYPASS");
    }
    let queries = app
        .metric("cachewithredis_db_aggregate_queries_total")
        .await
        + other
            .metric("cachewithredis_db_aggregate_queries_total")
            .await;
    assert_eq!(queries, 1.0, "aggregate queries for one cold burst");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_on_one_instance_is_seen_by_the_next_read_on_the_other() {
    let app = spawn_app().await;
    let other = spawn_second_instance(&app).await;
    app.insert_students(&[20]);
    app.sign_in().await;
    other.average().await;
    assert_eq!(other.average().await.1, "HIT");
    assert_eq!(app.add_student("Ada", "40").await.status(), 303);
    let (json, x_cache) = other.average().await;
    assert_eq!(
        (x_cache.as_str(), json["student_count"].as_i64()),
        ("MISS", Some(2))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_that_stops_hearing_invalidations_stops_serving_from_memory_before_a_write_answers(
) {
    let app = spawn_app().await;
    let other = spawn_second_instance(&app).await;
    app.insert_students(&[20]);
    app.sign_in().await;
    other.average().await;
    other.average().await;
    // The other instance's Redis connections freeze: it neither hears the invalidation nor
    // can acknowledge it, but its lease is still valid for a while.
    other.proxy.stall();
    assert_eq!(app.add_student("Unheard", "40").await.status(), 303);
    let (json, x_cache) = other.average().await;
    assert_eq!(
        json["student_count"], 2,
        "served {x_cache} from before the write"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_made_on_one_instance_works_on_the_other() {
    let app = spawn_app().await;
    let other = spawn_second_instance(&app).await;
    app.sign_in().await;
    // Cookies are scoped by host, not port: the same browser reaches the other instance with
    // the session cookie the first one set, as behind a load balancer.
    let response = app
        .client
        .get(other.url("/admin/students"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("Signed in as"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalidation_left_in_the_outbox_is_applied_before_a_new_instance_reads_redis() {
    let app = spawn_app().await;
    app.insert_students(&[20]);
    app.average().await;
    // A writer that committed and died before it reached Redis.
    {
        use cachewithredis::cache::outbox;
        use diesel::Connection;
        let mut conn = app.conn();
        conn.transaction(|conn| {
            cachewithredis::models::Student::insert(
                conn,
                &cachewithredis::models::NewStudent {
                    name: "Late".into(),
                    age: 40,
                },
            )?;
            outbox::record(conn, outbox::ALL)
        })
        .unwrap();
    }
    assert!(
        app.redis_get(&app.value_key()).is_some(),
        "the old value is still cached"
    );
    let fresh = spawn_second_instance(&app).await;
    let (json, _) = fresh.average().await;
    assert_eq!(json["student_count"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hot_key_is_recomputed_before_it_expires_so_readers_never_miss() {
    let app = Arc::new(
        spawn_app_with(AppOptions {
            ttl_secs: Some(1),
            ..Default::default()
        })
        .await,
    );
    seed_many(&app);
    let until = std::time::Instant::now() + std::time::Duration::from_millis(3500);
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut misses = 0;
                while std::time::Instant::now() < until {
                    let (json, x_cache) = app.average().await;
                    assert_eq!(json["student_count"], MANY as i64);
                    misses += usize::from(x_cache == "MISS");
                }
                misses
            })
        })
        .collect();
    let misses: usize = join_all(readers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .sum();
    assert_eq!(
        misses, 1,
        "only the first read misses; later values were refreshed in time"
    );
    let aggregates = app
        .metric("cachewithredis_db_aggregate_queries_total")
        .await;
    assert!(
        aggregates >= 3.0,
        "refreshed about once a TTL: {aggregates} aggregates in 3.5 s"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_taken_before_a_write_is_taken_over_by_the_next_reader_at_once() {
    let app = spawn_app().await;
    app.insert_students(&[20]);
    let generation = app.redis_get(&app.generation_key()).expect("generation");
    // What a reader whose query outlives a write leaves behind: its lease, named by the
    // generation it read, for longer than a reader waits for a leader (30 s).
    let lock = format!("{}:lock", app.value_key());
    let _: () = redis::cmd("SET")
        .arg(&lock)
        .arg(format!("{generation}:a-slow-reader"))
        .arg("PX")
        .arg(60_000)
        .query(&mut app.redis_direct())
        .unwrap();
    app.sign_in().await;
    assert_eq!(app.add_student("Ada", "30").await.status(), 303);
    let (json, x_cache) = app.average().await;
    assert_eq!(
        (json["student_count"].as_i64(), x_cache.as_str()),
        (Some(2), "MISS")
    );
    // Had the reader waited for the old lease, it would have answered from the database after
    // 30 s and stored nothing.
    assert_eq!(
        app.current_value()
            .map(|v| v["payload"]["student_count"].clone()),
        Some(serde_json::json!(2)),
        "stored by the reader that took the lease over"
    );
    assert_eq!(app.redis_get(&lock), None, "and released");
}
