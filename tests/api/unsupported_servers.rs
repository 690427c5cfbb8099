//! A server that answers but cannot do the cache's job (an old Redis; a proxy or an ACL that
//! refuses scripts or pub/sub) is named in `/readyz`, and pages come from the database.

use std::time::Duration;

use cachewithredis::cache::memory_lease::LEASE;
use diesel::prelude::*;
use testkit::FakeRedis;

use crate::helpers::{header, spawn_app_with, AppOptions, RedisServer, TestApp};

/// An app whose `REDIS_URL` is a fake server that says it is Redis `version` and refuses
/// scripts and pub/sub (see `testkit::FakeRedis`).
async fn app_behind_a_fake_server(version: &str) -> (TestApp, FakeRedis) {
    let fake = FakeRedis::start(version).await.unwrap();
    let app = spawn_app_with(AppOptions {
        redis_url: Some(fake.url()),
        ..Default::default()
    })
    .await;
    (app, fake)
}

/// Waits until `/readyz` names the server unsupported; returns its `cache_error`.
async fn named_unsupported(app: &TestApp) -> String {
    app.eventually(
        Duration::from_secs(5),
        "readyz says unsupported",
        || async {
            let response = app.get("/readyz").await;
            let json: serde_json::Value = response.json().await.unwrap();
            json["cache"] == "unsupported"
        },
    )
    .await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200, "degraded, still serving");
    let json: serde_json::Value = response.json().await.unwrap();
    json["cache_error"].as_str().unwrap_or_default().to_owned()
}

async fn pages_come_from_the_database(app: &TestApp) {
    let (json, x_cache) = app.average().await;
    assert_eq!(
        (x_cache.as_str(), json["average_age"].as_f64()),
        ("BYPASS", Some(25.0))
    );
    let response = app.get("/students/average-age").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-cache"), "BYPASS");
    assert!(response.text().await.unwrap().contains("Cache unavailable"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_that_refuses_scripts_is_named_and_pages_come_from_the_database() {
    let (app, _fake) = app_behind_a_fake_server("7.2.0").await;
    app.insert_students(&[20, 30]);
    let why = named_unsupported(&app).await;
    assert!(
        why.contains("scripts refused") && why.contains("EVALSHA"),
        "{why}"
    );
    pages_come_from_the_database(&app).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_older_than_six_two_is_named_with_its_version() {
    let (app, _fake) = app_behind_a_fake_server("5.0.7").await;
    app.insert_students(&[20, 30]);
    let why = named_unsupported(&app).await;
    assert!(why.contains("5.0.7") && why.contains("6.2"), "{why}");
    pages_come_from_the_database(&app).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_refuses_pub_sub_is_named_and_pages_come_from_the_database() {
    let no_pubsub = RedisServer::start_with(&["--rename-command", "SUBSCRIBE", ""]).unwrap();
    let app = spawn_app_with(AppOptions {
        redis_server: Some(no_pubsub),
        no_memory_lease: true,
        ..Default::default()
    })
    .await;
    app.insert_students(&[20, 30]);
    let why = named_unsupported(&app).await;
    assert!(
        why.contains("pub/sub refused") && why.contains("SUBSCRIBE"),
        "{why}"
    );
    pages_come_from_the_database(&app).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_through_a_server_that_refuses_scripts_answers_without_waiting_for_a_handover() {
    let (app, _fake) = app_behind_a_fake_server("7.2.0").await;
    app.sign_in().await;
    named_unsupported(&app).await;
    // Once scripts have been refused for a lease, no instance can be serving anything old.
    tokio::time::sleep(LEASE + Duration::from_millis(500)).await;
    assert_eq!(app.add_student("Unwaited", "40").await.status(), 303);
    assert_eq!(app.student_count(), 1);
    // The invalidation stays for a server that can run it, and was not handed over: the write
    // did not wait for the other instances to apply it (`Cache::await_handover`).
    use cachewithredis::cache::schema::cache_invalidations::dsl::*;
    let rows: Vec<bool> = cache_invalidations
        .select(handed_over)
        .load(&mut app.conn())
        .unwrap();
    assert_eq!(rows, vec![false]);
}
