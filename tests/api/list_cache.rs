//! The list pages are cached by the same core as the average: one key per page under the
//! prefix, the same generation, the same guarantees, `X-Cache` on every answer.

use std::time::Duration;

use cachewithredis::config::DatabaseUrl;
use diesel::connection::SimpleConnection;

use crate::helpers::{header, spawn_app, spawn_second_instance, DatabaseOutage, TestApp};

const AGGREGATES: &str = "cachewithredis_db_aggregate_queries_total";

fn page_key(app: &TestApp, page: i64) -> String {
    app.key(&format!("students:page:{page}"))
}

/// The total the list shows, and the `X-Cache` and `X-Cache-Tier` it was served with.
async fn list(app: &TestApp, path: &str) -> (String, String, String) {
    let response = app.get(path).await;
    assert_eq!(response.status(), 200, "{path}");
    let (x_cache, tier) = (
        header(&response, "x-cache"),
        header(&response, "x-cache-tier"),
    );
    (response.text().await.unwrap(), x_cache, tier)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_page_is_a_miss_then_a_hit_from_memory_and_from_redis_on_another_instance() {
    let app = spawn_app().await;
    let other = spawn_second_instance(&app).await;
    app.insert_students(&[20; 120]);

    let (body, x_cache, _) = list(&app, "/students").await;
    assert_eq!(x_cache, "MISS");
    assert!(body.contains("120 students in total"), "{body}");
    let stored: serde_json::Value =
        serde_json::from_str(&app.redis_get(&page_key(&app, 1)).expect("page 1 stored")).unwrap();
    assert_eq!(stored["payload"]["total"], 120);
    assert_eq!(stored["payload"]["students"].as_array().unwrap().len(), 50);
    assert_eq!(stored["database"], app.database_identity());

    // From memory, once this instance holds its lease (a loaded machine can leave it lapsed
    // for a renewal; see `get_from_memory`).
    let again = app.get_from_memory("/students").await;
    assert_eq!(header(&again, "x-cache"), "HIT");
    assert_eq!(again.text().await.unwrap(), body, "the same page");
    let (_, x_cache, tier) = list(&other, "/").await;
    assert_eq!(
        (x_cache.as_str(), tier.as_str()),
        ("HIT", "redis"),
        "/ is page 1"
    );

    let (page3, x_cache, _) = list(&app, "/students?page=3").await;
    assert_eq!(x_cache, "MISS", "each page is its own value");
    assert_eq!(page3.matches("<tr><td>").count(), 20);
    assert_eq!(list(&app, "/students?page=3").await.1, "HIT");
    assert!(app.redis_get(&page_key(&app, 3)).is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_staff_write_shows_on_every_cached_page_of_every_instance_before_it_answers() {
    let app = spawn_app().await;
    let other = spawn_second_instance(&app).await;
    app.insert_students(&[20; 100]);
    app.sign_in().await;
    for instance in [&app, &other] {
        for path in ["/students", "/students?page=2"] {
            list(instance, path).await;
            assert_eq!(list(instance, path).await.1, "HIT", "{path} cached");
        }
    }
    assert_eq!(app.add_student("Grace Hopper", "45").await.status(), 303);
    // The first instance recomputes each page; the other then finds the new value in Redis.
    for (instance, fresh) in [(&app, "MISS"), (&other, "HIT")] {
        let (body, x_cache, _) = list(instance, "/students").await;
        assert_eq!(x_cache, fresh);
        assert!(body.contains("101 students in total"), "{body}");
        let (page2, x_cache, tier) = list(instance, "/students?page=2").await;
        assert_eq!(
            x_cache, fresh,
            "every page was invalidated by the one write"
        );
        assert_ne!(tier, "memory");
        assert!(page2.contains("101 students in total"));
        let (last, _, _) = list(instance, "/students?page=3").await;
        assert!(last.contains("Grace Hopper"), "{last}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_made_outside_the_application_shows_on_the_cached_list_within_a_second() {
    let app = spawn_app().await;
    app.insert_students(&[20, 21]);
    list(&app, "/students").await;
    assert_eq!(list(&app, "/students").await.1, "HIT");
    app.conn()
        .batch_execute("UPDATE students SET name = 'Renamed By Hand' WHERE age = 21")
        .unwrap();
    app.eventually(Duration::from_millis(1_500), "the rename shown", || async {
        list(&app, "/students").await.0.contains("Renamed By Hand")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_past_the_end_is_not_stored_so_asking_for_any_number_adds_no_keys() {
    let app = spawn_app().await;
    app.insert_students(&[20; 3]);
    for _ in 0..2 {
        let response = app.get("/students?page=999999").await;
        assert_eq!(response.status(), 404);
        assert_eq!(header(&response, "x-cache"), "");
    }
    assert_eq!(app.redis_get(&page_key(&app, 999_999)), None);
    assert_eq!(
        app.redis_get(&format!("{}:lock", page_key(&app, 999_999))),
        None,
        "its lease was released"
    );
    // Page 1 of an empty table is a page (SPEC §3), and is kept.
    let empty = spawn_app().await;
    let (body, x_cache, _) = list(&empty, "/students").await;
    assert_eq!(x_cache, "MISS");
    assert!(body.contains("No students yet"));
    assert_eq!(list(&empty, "/students").await.1, "HIT");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_on_a_page_after_a_write_runs_its_query_once_across_two_instances() {
    let app = spawn_app().await;
    let other = spawn_second_instance(&app).await;
    app.insert_students(&[20; 200]);
    list(&app, "/students?page=3").await;
    app.sign_in().await;
    assert_eq!(app.add_student("Ada", "30").await.status(), 303);
    let before = app.metric(AGGREGATES).await + other.metric(AGGREGATES).await;
    let reads = (0..32).map(|i| {
        let instance = if i % 2 == 0 { &app } else { &other };
        reqwest::get(instance.url("/students?page=3"))
    });
    for response in futures_util::future::join_all(reads).await {
        assert_eq!(response.unwrap().status(), 200);
    }
    let after = app.metric(AGGREGATES).await + other.metric(AGGREGATES).await;
    assert_eq!(after - before, 1.0, "one query for 32 concurrent reads");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_cut_the_list_is_read_from_the_database_as_a_bypass() {
    let app = spawn_app().await;
    app.insert_students(&[20, 30]);
    list(&app, "/students").await;
    app.proxy.cut();
    app.sign_in().await;
    assert_eq!(
        app.add_student("Written During The Cut", "40")
            .await
            .status(),
        303
    );
    let (body, x_cache, _) = list(&app, "/students").await;
    assert_eq!(x_cache, "BYPASS");
    assert!(body.contains("Written During The Cut"), "{body}");
    assert!(body.contains("3 students in total"));
    app.proxy.restore();
    app.eventually(Duration::from_secs(5), "caching resumed", || async {
        list(&app, "/students").await.1 == "HIT"
    })
    .await;
    assert!(list(&app, "/students")
        .await
        .0
        .contains("3 students in total"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cached_page_is_served_while_the_database_is_down() {
    let app = spawn_app().await;
    // SQLite's outage here (a held write lock) leaves reads working: only PostgreSQL's stops
    // the list's query.
    let DatabaseUrl::Postgres(_) = &app.database.url else {
        return;
    };
    app.insert_students(&[20, 30]);
    list(&app, "/students").await;
    let outage = DatabaseOutage::start(&app);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (body, x_cache, tier) = list(&app, "/students").await;
    assert_eq!((x_cache.as_str(), tier.as_str()), ("HIT", "memory"));
    assert!(body.contains("2 students in total"));
    assert_eq!(
        app.get("/students?page=2").await.status(),
        503,
        "not cached: 503"
    );
    outage.end();
}
