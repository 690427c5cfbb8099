//! `/admin/cache`: its figures against what the test did, the instances of a two-instance
//! set-up, the buttons, and the staff-only guard.

use std::time::Duration;

use crate::helpers::{header, spawn_app, spawn_second_instance, TestApp};

/// The text of the element with `id` (up to its first tag).
fn by_id(body: &str, id: &str) -> String {
    let marker = format!(r#"id="{id}""#);
    let at = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in {body}"));
    let rest = &body[at..];
    let start = rest.find('>').unwrap() + 1;
    let rest = &rest[start..];
    rest[..rest.find('<').unwrap()].trim().to_owned()
}

async fn cache_page(app: &TestApp) -> String {
    let (status, body) = app.get_text("/admin/cache").await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_and_its_buttons_are_for_staff_only() {
    let app = spawn_app().await;
    let response = app.get("/admin/cache").await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        header(&response, "location"),
        "/admin/login?next=%2Fadmin%2Fcache"
    );
    for button in ["/admin/cache/clear", "/admin/cache/recompute"] {
        let response = app.post_form(button, &[("csrf_token", "x")]).await;
        assert_eq!(response.status(), 403, "{button}");
    }
    app.sign_in().await;
    let (_, students) = app.get_text("/admin/students").await;
    assert!(
        students.contains(r#"<a href="/admin/cache">Cache</a>"#),
        "linked from the staff navigation"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_counts_the_hits_misses_queries_and_invalidations_the_test_caused() {
    let app = spawn_app().await;
    app.insert_students(&[20, 30]);
    app.sign_in().await;
    for _ in 0..4 {
        app.average().await; // 1 miss, 3 hits
    }
    assert_eq!(app.add_student("Ada", "40").await.status(), 303);
    assert_eq!(app.add_student("Bob", "50").await.status(), 303);
    let (_, miss) = app.average().await;
    assert_eq!(miss, "MISS");
    // A hit from memory; a renewal that crossed a write's announcement can make the first
    // ones hits from Redis.
    let (_, last_hits) = app
        .get_from_memory_counted("/api/students/average-age")
        .await;
    let hits = 3 + last_hits;

    let body = cache_page(&app).await;
    assert_eq!(by_id(&body, "this-hits"), hits.to_string());
    assert_eq!(by_id(&body, "this-misses"), "2");
    assert_eq!(by_id(&body, "this-bypasses"), "0");
    assert_eq!(by_id(&body, "this-aggregate-queries"), "2");
    assert_eq!(by_id(&body, "this-invalidations"), "2");
    assert_eq!(
        by_id(&body, "this-hit-ratio"),
        format!("{:.1}%", 100.0 * f64::from(hits) / f64::from(hits + 2))
    );
    assert_eq!(
        by_id(&body, "all-hits"),
        hits.to_string(),
        "one instance: the same"
    );

    assert_eq!(by_id(&body, "value-average"), "35.00");
    assert_eq!(by_id(&body, "value-count"), "4");
    let generation: String = redis::cmd("GET")
        .arg(app.generation_key())
        .query(&mut app.redis_direct())
        .unwrap();
    assert_eq!(by_id(&body, "value-generation"), generation);
    assert_eq!(by_id(&body, "generation"), generation);
    assert_eq!(by_id(&body, "last-hit-tier"), "memory");
    assert!(by_id(&body, "redis-gate").contains("usable"));
    assert_eq!(by_id(&body, "serving-from-memory"), "yes");
    let master = app.proxy.url();
    let master = master.trim_start_matches("redis://").trim_end_matches("/0");
    assert!(
        body.contains(&format!(r#"id="redis-master"><code>{master}</code>"#)),
        "{body}"
    );
    assert!(by_id(&body, "pending").starts_with("None"));

    let writes = &body[body.find(r#"id="writes""#).unwrap()..];
    let ada = writes.find("added “Ada” (age 40)").expect("Ada's write");
    let bob = writes.find("added “Bob” (age 50)").expect("Bob's write");
    assert!(bob < ada, "newest first");
    assert!(writes.contains("<td>staff</td>"), "who");
    // One SVG bar per minute of the hour, per series.
    let chart = &body[body.find(r#"id="chart-hits""#).unwrap()..];
    let chart = &chart[..chart.find("</figure>").unwrap()];
    assert_eq!(chart.matches("<rect").count(), 60);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_instance_is_listed_and_the_figures_add_up_across_instances() {
    let app = spawn_app().await;
    let other = spawn_second_instance(&app).await;
    app.insert_students(&[20]);
    app.sign_in().await;
    app.average().await; // a miss here
    other.average().await; // a hit from Redis there
    other.average().await; // and one from memory

    // The lease holders, without the table's marker (scored +inf).
    let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
        .arg(app.key("instances"))
        .arg("-inf")
        .arg("(+inf")
        .query(&mut app.redis_direct())
        .unwrap();
    assert_eq!(ids.len(), 2);
    let other_address = other.address.trim_start_matches("http://").to_owned();
    app.eventually(
        Duration::from_secs(5),
        "the other instance's figures",
        || async {
            let body = cache_page(&app).await;
            by_id(&body, "all-hits") == "2" && body.contains(&other_address)
        },
    )
    .await;
    let body = cache_page(&app).await;
    assert_eq!(by_id(&body, "this-hits"), "0");
    assert_eq!(by_id(&body, "this-misses"), "1");
    assert_eq!(by_id(&body, "all-misses"), "1");
    assert_eq!(by_id(&body, "all-aggregate-queries"), "1");
    let instances = &body[body.find(r#"id="instances""#).unwrap()..];
    for id in &ids {
        assert!(instances.contains(&format!("<code>{id}</code>")), "{id}");
    }
    assert_eq!(instances.matches("ends in").count(), 2, "both leases live");
    assert_eq!(instances.matches("this one").count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn clear_cache_and_recompute_now_answer_with_a_flash_message() {
    let app = spawn_app().await;
    app.insert_students(&[20, 30]);
    app.sign_in().await;
    app.average().await;
    assert!(app.current_value().is_some());

    let token = app.csrf_token("/admin/cache").await;
    let response = app
        .post_form("/admin/cache/clear", &[("csrf_token", &token)])
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(header(&response, "location"), "/admin/cache");
    assert_eq!(
        app.current_value(),
        None,
        "the value is older than the generation"
    );
    let body = cache_page(&app).await;
    assert!(
        body.contains(r#"class="flash" role="status">The cache was cleared"#),
        "{body}"
    );
    assert!(body.contains("cleared the cache"), "logged");
    assert_eq!(
        by_id(&body, "cached-value"),
        "Nothing cached: the next view computes it."
    );

    let response = app
        .post_form("/admin/cache/recompute", &[("csrf_token", &token)])
        .await;
    assert_eq!(response.status(), 303);
    let stored: serde_json::Value =
        serde_json::from_str(&app.redis_get(&app.value_key()).expect("stored again")).unwrap();
    assert_eq!(stored["payload"]["student_count"], 2);
    let body = cache_page(&app).await;
    assert!(
        body.contains("Recomputed: 25.00 years over 2 students."),
        "{body}"
    );
    assert_eq!(by_id(&body, "this-aggregate-queries"), "2");
    assert_eq!(by_id(&body, "value-count"), "2");

    let response = app
        .post_form("/admin/cache/clear", &[("csrf_token", "wrong")])
        .await;
    assert_eq!(response.status(), 403);
    assert!(app.current_value().is_some(), "not cleared");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_down_the_page_shows_the_pending_invalidation_and_the_closed_gate() {
    let app = spawn_app().await;
    app.sign_in().await;
    app.average().await;
    app.stop_redis();
    assert_eq!(app.add_student("Ada", "40").await.status(), 303);

    let body = cache_page(&app).await;
    let pending = &body[body.find(r#"id="pending""#).unwrap()..];
    // A row moves the generation, so it invalidates every value: its key says so.
    assert!(pending.contains("<code>generation</code>"), "{body}");
    assert!(by_id(&body, "redis-gate").contains("distrusted"), "{body}");
    assert!(by_id(&body, "cached-value").starts_with("Redis did not answer"));
    assert!(body.contains("added “Ada” (age 40)"), "the write is logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_key_is_under_the_prefix_as_a_hash_tag_so_a_cluster_keeps_them_in_one_slot() {
    let app = spawn_app().await;
    let other = spawn_second_instance(&app).await;
    app.insert_students(&[20, 30]);
    app.sign_in().await;
    app.average().await;
    other.average().await;
    assert_eq!(other.get("/students").await.status(), 200);
    assert_eq!(app.add_student("Tagged", "40").await.status(), 303);
    assert_eq!(app.get("/admin/cache").await.status(), 200);
    // Both instances' figures, in the one hash (published every second).
    app.eventually(
        Duration::from_secs(5),
        "both instances published",
        || async {
            let fields: Vec<String> = redis::cmd("HKEYS")
                .arg(app.key("stats"))
                .query(&mut app.redis_direct())
                .unwrap();
            fields.len() == 2
        },
    )
    .await;

    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut app.redis_direct())
        .unwrap();
    for expected in ["generation", "instances", "acks", "database", "stats"] {
        assert!(keys.contains(&app.key(expected)), "{expected} in {keys:?}");
    }
    assert!(keys.contains(&app.value_key()), "{keys:?}");
    assert!(keys.contains(&app.key("students:page:1")), "{keys:?}");
    let outside: Vec<&String> = keys.iter().filter(|k| !k.starts_with("{test}:")).collect();
    assert!(outside.is_empty(), "keys outside the hash tag: {outside:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_that_left_is_forgotten_from_the_published_figures() {
    let app = spawn_app().await;
    let other = spawn_second_instance(&app).await;
    let stats = app.key("stats");
    let published = |app: &TestApp| -> usize {
        redis::cmd("HLEN")
            .arg(&stats)
            .query(&mut app.redis_direct())
            .unwrap()
    };
    app.eventually(
        Duration::from_secs(5),
        "both instances published",
        || async { published(&app) == 2 },
    )
    .await;
    // A graceful stop withdraws the lease; the figures stay until a publisher forgets them.
    other.server.stop(true).await;
    app.eventually(
        Duration::from_secs(5),
        "the instance that left is forgotten",
        || async { published(&app) == 1 },
    )
    .await;
}
