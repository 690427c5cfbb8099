//! Redis is a copy that can lose anything, and the database decides what is current (SPEC §4):
//! what operators do to a running cache (`FLUSHALL`, writes from `psql`, eviction, a command
//! pointed at the wrong Redis, two deployments in one Redis, a database failover or outage),
//! each provoked, and what visitors see afterwards.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachewithredis::config::DatabaseUrl;
use diesel::connection::SimpleConnection;
use futures_util::future::join_all;

use crate::helpers::{
    header, spawn_app, spawn_app_with, spawn_second_instance, AppOptions, DatabaseOutage,
    RedisServer, TestApp,
};

/// Runs SQL on the app's database over a connection of its own, as `psql` or `sqlite3` would.
fn outside(app: &TestApp, sql: &str) {
    app.conn().batch_execute(sql).expect("outside statement");
}

fn redis_command(app: &TestApp, command: &str) {
    redis::cmd(command)
        .query::<()>(&mut app.redis_direct())
        .expect("redis command");
}

async fn count_on(app: &TestApp) -> (i64, String) {
    let (json, x_cache) = app.average().await;
    (json["student_count"].as_i64().expect("count"), x_cache)
}

/// Waits until `app` shows `count`; returns how long that took.
async fn until_count(app: &TestApp, count: i64, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (seen, _) = count_on(app).await;
        if seen == count {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "still {seen} students shown, not {count}, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_made_outside_the_application_shows_on_every_instance_without_waiting_for_the_ttl()
{
    let app = spawn_app().await;
    let other = spawn_second_instance(&app).await;
    app.insert_students(&[20, 30]);
    for instance in [&app, &other] {
        instance.average().await;
        assert_eq!(count_on(instance).await, (2, "HIT".to_owned()));
    }
    // The default TTL is 300 s: without the mark raised by the database itself, both
    // instances would serve 2 from memory for five minutes.
    outside(
        &app,
        "INSERT INTO students (name, age) VALUES ('From psql', 40)",
    );
    for instance in [&app, &other] {
        until_count(instance, 3, Duration::from_secs(3)).await;
    }
    outside(
        &app,
        "UPDATE students SET age = 60 WHERE name = 'From psql'",
    );
    app.eventually(Duration::from_secs(3), "the update shown", || async {
        let (json, _) = other.average().await;
        json["average_age"].as_f64() == Some(36.67) && json["age_sum"] == 110
    })
    .await;
    outside(&app, "DELETE FROM students");
    for instance in [&app, &other] {
        until_count(instance, 0, Duration::from_secs(3)).await;
    }
    assert!(app.metric("cachewithredis_cache_mark_ahead_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_flush_a_burst_runs_one_aggregate_and_reads_hit_again() {
    let app = spawn_app().await;
    let other = Arc::new(spawn_second_instance(&app).await);
    app.insert_students(&[20, 30]);
    app.average().await;
    // The other instance holds nothing in memory, so its reads meet the flushed Redis at once.
    redis_command(&app, "FLUSHALL");
    let before = other
        .metric("cachewithredis_db_aggregate_queries_total")
        .await;
    let burst = (0..32).map(|_| {
        let other = other.clone();
        async move { count_on(&other).await }
    });
    for (count, x_cache) in join_all(burst).await {
        assert_eq!(count, 2);
        assert_ne!(x_cache, "BYPASS");
    }
    let after_burst = other
        .metric("cachewithredis_db_aggregate_queries_total")
        .await;
    assert_eq!(
        after_burst - before,
        1.0,
        "one aggregate for 32 concurrent reads"
    );
    for _ in 0..9 {
        assert_eq!(count_on(&other).await, (2, "HIT".to_owned()));
    }
    assert_eq!(
        other
            .metric("cachewithredis_db_aggregate_queries_total")
            .await,
        after_burst,
        "the sequential reads after it hit"
    );
    // The generation is back, at the database's mark.
    let mark = cachewithredis::cache::generation::committed(&mut app.conn()).unwrap();
    let generation = app.redis_get(&app.generation_key());
    assert_eq!(generation, Some(mark.to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_lease_table_does_not_let_a_write_skip_an_instance_still_serving_from_memory() {
    let app = spawn_app().await;
    let other = spawn_second_instance(&app).await;
    app.insert_students(&[20]);
    app.sign_in().await;
    other.average().await;
    assert_eq!(count_on(&other).await, (1, "HIT".to_owned()));
    // The other instance's link to Redis freezes: it neither hears the next invalidation nor
    // acknowledges it, and serves from memory while its lease runs. Then the table that names
    // it as a lease holder is evicted.
    other.proxy.stall();
    redis::cmd("DEL")
        .arg(app.key("instances"))
        .query::<()>(&mut app.redis_direct())
        .unwrap();
    assert_eq!(app.add_student("Unheard", "40").await.status(), 303);
    let (json, x_cache) = other.average().await;
    assert_eq!(
        json["student_count"], 2,
        "served {x_cache} from before the write"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_value_computed_from_another_database_is_a_miss_and_counted() {
    let app = spawn_app().await;
    app.insert_students(&[20]);
    let generation: u64 = app
        .redis_get(&app.generation_key())
        .unwrap()
        .parse()
        .unwrap();
    let planted = serde_json::json!({
        "generation": generation,
        "database": "staging",
        "compute_us": 100,
        "payload": {"average_age": 99.0, "student_count": 99, "ages": {"99": 99}},
    });
    let _: () = redis::cmd("SET")
        .arg(app.value_key())
        .arg(planted.to_string())
        .query(&mut app.redis_direct())
        .unwrap();
    assert_eq!(count_on(&app).await, (1, "MISS".to_owned()));
    assert_eq!(
        app.metric("cachewithredis_cache_foreign_values_total")
            .await,
        1.0
    );
    assert_eq!(count_on(&app).await, (1, "HIT".to_owned()));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_deployments_sharing_one_redis_and_prefix_never_serve_each_others_values() {
    let production = spawn_app().await;
    production.insert_students(&[20, 30]);
    production.average().await;
    assert_eq!(count_on(&production).await, (2, "HIT".to_owned()));
    // Staging: its own database, production's Redis and the same prefix.
    let staging = spawn_app_with(AppOptions {
        share_redis_with: Some(production.backends()),
        ..Default::default()
    })
    .await;
    staging.insert_students(&[40]);
    // Generations are counted per database, so they can agree by chance; make them agree.
    let generation = production.redis_get(&production.generation_key()).unwrap();
    outside(
        &staging,
        &format!("UPDATE cache_generation SET generation = {generation}"),
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    for _ in 0..3 {
        assert_eq!(count_on(&staging).await, (1, "BYPASS".to_owned()));
    }
    staging.sign_in().await;
    assert_eq!(staging.add_student("Staging", "50").await.status(), 303);
    assert_eq!(count_on(&staging).await, (2, "BYPASS".to_owned()));
    assert_eq!(count_on(&production).await, (2, "HIT".to_owned()));
    assert_eq!(
        production.redis_get(&production.key("database")).as_deref(),
        Some(production.database_identity().as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_seed_pointed_at_another_redis_leaves_its_invalidation_to_the_instances() {
    let app = spawn_app().await;
    app.insert_students(&[20]);
    app.average().await;
    assert_eq!(count_on(&app).await, (1, "HIT".to_owned()));
    // REDIS_URL unset on a production box: the command reaches a local Redis that answers.
    let wrong = RedisServer::start().expect("redis-server");
    let out = Command::new(env!("CARGO_BIN_EXE_cachewithredis"))
        .args(["seed", "--count", "10"])
        .env("DATABASE_URL", app.database.url_string())
        .env("REDIS_URL", wrong.url())
        .env("CACHE_KEY_PREFIX", &app.prefix)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("left in the outbox for the running instances"),
        "{stderr}"
    );
    assert_eq!(
        count_on(&app).await.0,
        11,
        "shown as soon as the command exits"
    );
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*:students:average_age")
        .query(&mut wrong.connection().expect("redis answers"))
        .unwrap();
    assert!(
        keys.is_empty(),
        "nothing cached in the wrong Redis: {keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mark_that_fell_behind_redis_is_raised_before_a_write_answers() {
    let app = spawn_app().await;
    let other = spawn_second_instance(&app).await;
    app.insert_students(&[20]);
    // Fifty writes ago, as far as Redis knows.
    outside(&app, "UPDATE cache_generation SET generation = 50");
    app.await_mark_followed();
    app.sign_in().await;
    for instance in [&app, &other] {
        instance.average().await;
        assert_eq!(count_on(instance).await, (1, "HIT".to_owned()));
    }
    // A failover to a replica that lost the last commits: the mark is far below Redis'.
    outside(&app, "UPDATE cache_generation SET generation = 1");
    assert_eq!(app.add_student("After failover", "40").await.status(), 303);
    for instance in [&app, &other] {
        assert_eq!(count_on(instance).await.0, 2);
    }
    let mark = cachewithredis::cache::generation::committed(&mut app.conn()).unwrap();
    let generation: u64 = app
        .redis_get(&app.generation_key())
        .unwrap()
        .parse()
        .unwrap();
    assert!(generation <= mark.get(), "{generation} > mark {mark}");
}

#[tokio::test(flavor = "multi_thread")]
async fn through_a_database_outage_cached_pages_answer_from_memory_and_writes_503_at_once() {
    let app = spawn_app().await;
    // SQLite's outage here (a held write lock) leaves reads working: only PostgreSQL's can
    // cut the outbox worker off.
    let DatabaseUrl::Postgres(_) = &app.database.url else {
        return;
    };
    app.insert_students(&[20]);
    app.sign_in().await;
    app.average().await;
    let token = app.csrf_token("/admin/students/new").await;
    let outage = DatabaseOutage::start(&app);
    // Past a lease (2 s): the copy in memory is served because its lease is renewed without
    // the database.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    // A visitor's request (a signed-in one needs the database for its session).
    let response = reqwest::get(app.url("/api/students/average-age"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-cache"), "HIT");
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        (json["student_count"].as_i64(), &json["tier"]),
        (Some(1), &serde_json::json!("memory"))
    );
    let response = app
        .post_form(
            "/admin/students",
            &[("name", "Ada"), ("age", "20"), ("csrf_token", &token)],
        )
        .await;
    assert_eq!(response.status(), 503);
    assert!(!header(&response, "retry-after").is_empty());
    assert_eq!(app.get("/readyz").await.status(), 503);
    let list = reqwest::get(app.url("/students")).await.unwrap();
    assert_eq!(list.status(), 503);
    outage.end();
    // The pool's connections died with the outage: none is handed to a request.
    for path in ["/students", "/readyz", "/students?page=1"] {
        let response = reqwest::get(app.url(path)).await.unwrap();
        assert_eq!(response.status(), 200, "{path} right after the outage");
    }
    assert_eq!(app.add_student("After", "40").await.status(), 303);
    assert_eq!(count_on(&app).await.0, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn after_the_database_restarts_no_request_is_handed_a_dead_connection() {
    let app = spawn_app().await;
    let DatabaseUrl::Postgres(url) = &app.database.url else {
        return;
    };
    app.insert_students(&[20]);
    // Connections in the pool, idle.
    for _ in 0..4 {
        assert_eq!(
            reqwest::get(app.url("/students")).await.unwrap().status(),
            200
        );
    }
    // A restart or a failover of the server: every connection ends under the application.
    let name = url.rsplit('/').next().unwrap();
    crate::helpers::postgres_admin()
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' \
             AND pid <> pg_backend_pid()"
        ))
        .unwrap();
    for path in ["/students", "/students?page=1", "/readyz", "/admin/login"] {
        let response = reqwest::get(app.url(path)).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
}
