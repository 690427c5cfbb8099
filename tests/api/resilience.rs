use std::time::Duration;

use cachewithredis::startup::Resources;

use crate::helpers::{header, spawn_app, test_settings};

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_stopped_pages_are_served_from_the_database_as_bypass() {
    let app = spawn_app().await;
    app.insert_students(&[20, 22]);
    app.stop_redis();
    let response = app.get("/students/average-age").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-cache"), "BYPASS");
    let body = response.text().await.unwrap();
    assert!(
        body.contains("Cache unavailable") && body.contains("21.00"),
        "{body}"
    );
    let (json, x_cache) = app.average().await;
    assert_eq!(
        (x_cache.as_str(), json["cache"].as_str()),
        ("BYPASS", Some("bypass"))
    );
    assert_eq!(json["student_count"], 2);
    assert!(app.metric("cachewithredis_cache_errors_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn caching_resumes_by_itself_when_redis_comes_back() {
    let app = spawn_app().await;
    app.insert_students(&[20]);
    app.stop_redis();
    assert_eq!(app.average().await.1, "BYPASS");
    app.restart_redis();
    app.eventually(
        Duration::from_secs(10),
        "a hit after Redis returned",
        || async { app.average().await.1 == "HIT" },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_reports_redis_down_as_degraded_not_failed() {
    let app = spawn_app().await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({
            "database": "ok",
            "cache": "ok",
            "redis_master": format!("127.0.0.1:{}", app.proxy.port),
        })
    );
    app.proxy.cut();
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["cache"],
        "unavailable"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_answers_503_when_the_database_is_unusable() {
    let app = spawn_app().await;
    // A table the app needs disappears: the database answers, but not usefully.
    use diesel::connection::SimpleConnection;
    app.conn().batch_execute("DROP TABLE students").unwrap();
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["database"],
        "unavailable"
    );
    let (status, body) = app.get_text("/students").await;
    assert_eq!(status, 500);
    assert!(
        !body.contains("no such table"),
        "no internal detail in the page"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_hung_requests_skip_it_instead_of_each_waiting_for_a_timeout() {
    let app = spawn_app().await;
    app.insert_students(&[20]);
    app.proxy.stall();
    for _ in 0..20 {
        let response = app.get("/students/average-age").await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-cache"), "BYPASS");
    }
    // Each request that tried Redis would have waited out the command timeout and counted an
    // error; with the breaker open only the first (and the odd background probe) does.
    let errors = app.metric("cachewithredis_cache_errors_total").await;
    assert!(
        (1.0..=3.0).contains(&errors),
        "{errors} Redis errors for 20 requests"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_while_redis_is_cut_is_not_lost_and_the_old_value_is_never_served() {
    let app = spawn_app().await;
    app.sign_in().await;
    app.insert_students(&[20]);
    app.average().await;
    assert!(
        app.redis_get(&app.value_key()).is_some(),
        "old value cached"
    );

    app.proxy.cut();
    let response = app.add_student("Written During The Cut", "40").await;
    assert_eq!(response.status(), 303, "the write succeeds");
    assert!(
        app.redis_get(&app.value_key()).is_some(),
        "Redis still holds the old value"
    );

    // Redis is reachable again but still holds the old value: it must not be served.
    app.proxy.restore();
    for _ in 0..30 {
        let (json, x_cache) = app.average().await;
        assert_eq!(
            json["student_count"], 2,
            "served {x_cache} with the old count"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.eventually(Duration::from_secs(5), "the outbox applied", || async {
        app.current_value()
            .is_none_or(|v| v["payload"]["student_count"] == 2)
    })
    .await;
    use diesel::prelude::*;
    let pending: i64 = cachewithredis::cache::schema::cache_invalidations::table
        .count()
        .get_result(&mut app.conn())
        .unwrap();
    assert_eq!(pending, 0, "outbox emptied");
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_names_the_redis_in_use_only_on_this_host_or_to_staff() {
    let app = spawn_app().await;
    let readiness = |forwarded: bool| {
        let request = app.client.get(app.url("/readyz"));
        let request = if forwarded {
            // Through the proxy in front: a visitor on the internet.
            request.header("x-forwarded-for", "203.0.113.9")
        } else {
            request
        };
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<serde_json::Value>().await.unwrap()
        }
    };
    let public = readiness(true).await;
    assert_eq!(public["database"], "ok");
    assert!(public.get("redis_master").is_none(), "{public}");
    assert!(readiness(false).await["redis_master"].is_string());
    app.sign_in().await;
    assert!(readiness(true).await["redis_master"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_server_is_met_while_every_database_connection_is_busy() {
    // Meeting a server raises its generation to the database's mark before the connection is
    // used. That read must not queue behind the pages' queries: with every connection of the
    // pool taken, a cache that opens its first connection to Redis still gets one.
    let app = spawn_app().await;
    app.insert_students(&[20]);
    let settings = test_settings(&app.database, app.redis_url(), "busy", &app.secret_key);
    let resources = tokio::task::spawn_blocking(move || Resources::open(&settings))
        .await
        .unwrap()
        .expect("resources open");
    let held: Vec<_> = (0..resources.db.max_size())
        .map(|_| resources.db.get().expect("a database connection"))
        .collect();
    let cache = resources.cache.clone();
    let met = tokio::task::spawn_blocking(move || cache.ping())
        .await
        .unwrap();
    assert!(met.is_ok(), "the first redis connection failed: {met:?}");
    let mark = cachewithredis::cache::generation::committed(&mut app.conn()).expect("mark");
    assert_eq!(
        app.redis_get("{busy}:generation"),
        Some(mark.to_string()),
        "the new server's generation was raised to the mark"
    );
    drop(held);
}
