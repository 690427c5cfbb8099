//! The badge, `X-Cache-Tier`, the JSON's `"tier"` and `Server-Timing` say which tier served a hit.

use crate::helpers::{header, spawn_app, spawn_second_instance};

#[tokio::test(flavor = "multi_thread")]
async fn a_second_view_on_the_same_instance_is_a_hit_from_memory_and_says_so() {
    let app = spawn_app().await;
    app.insert_students(&[20, 22]);
    let miss = app.get("/students/average-age").await;
    assert_eq!(header(&miss, "x-cache"), "MISS");
    assert_eq!(header(&miss, "x-cache-tier"), "", "a miss has no tier");

    let hit = app.get_from_memory("/students/average-age").await;
    assert_eq!(header(&hit, "x-cache"), "HIT");
    assert!(
        header(&hit, "server-timing").ends_with(r#"cache-tier;desc="memory""#),
        "{}",
        header(&hit, "server-timing")
    );
    let body = hit.text().await.unwrap();
    assert!(body.contains("Cache hit · memory"), "{body}");
    assert!(!body.contains("Served from Redis"), "{body}");
    assert!(body.contains("Served from this server’s memory"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hit_on_another_instance_right_after_a_fill_is_from_redis_and_says_so() {
    let app = spawn_app().await;
    let other = spawn_second_instance(&app).await;
    app.insert_students(&[20, 22]);
    app.average().await;

    let hit = other.get("/students/average-age").await;
    assert_eq!(header(&hit, "x-cache"), "HIT");
    assert_eq!(header(&hit, "x-cache-tier"), "redis");
    assert!(
        header(&hit, "server-timing").ends_with(r#"cache-tier;desc="redis""#),
        "{}",
        header(&hit, "server-timing")
    );
    let body = hit.text().await.unwrap();
    assert!(body.contains("Cache hit · Redis"), "{body}");
    assert!(body.contains("Served from Redis"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_json_names_the_tier_of_a_hit_and_null_otherwise() {
    let app = spawn_app().await;
    let other = spawn_second_instance(&app).await;
    app.insert_students(&[18, 19]);
    let (miss, _) = app.average().await;
    assert_eq!(miss["tier"], serde_json::Value::Null);

    let from_redis = other.get("/api/students/average-age").await;
    assert_eq!(header(&from_redis, "x-cache-tier"), "redis");
    let json: serde_json::Value = from_redis.json().await.unwrap();
    assert_eq!(
        json,
        serde_json::json!({"average_age": 18.5, "student_count": 2, "age_sum": 37, "cache": "hit", "tier": "redis"})
    );

    let from_memory = other.get_from_memory("/api/students/average-age").await;
    assert_eq!(header(&from_memory, "x-cache"), "HIT");
    let from_memory: serde_json::Value = from_memory.json().await.unwrap();
    assert_eq!(from_memory["tier"], "memory");
}

/// A visitor's average page is kept rendered by its validator with a hole for the timing: each
/// hit shows its own timing, in the page's own words, and nothing of the hole; a write makes a
/// new validator, so the kept page is never shown for another value or badge.
#[tokio::test(flavor = "multi_thread")]
async fn every_hit_on_the_kept_average_page_shows_its_own_timing() {
    let app = spawn_app().await;
    app.insert_students(&[20, 22]);
    let timing = |body: &str| -> String {
        let start = body.find(r#"<strong id="elapsed">"#).expect("the timing") + 21;
        body[start..start + body[start..].find("</strong>").unwrap()].to_owned()
    };
    let miss = app.get("/students/average-age").await.text().await.unwrap();
    assert!(miss.contains("Cache miss"), "{miss}");
    for _ in 0..3 {
        let hit = app.get_from_memory("/students/average-age").await;
        let body = hit.text().await.unwrap();
        assert!(body.contains("Cache hit · memory"), "{body}");
        assert!(body.contains("21.00"), "{body}");
        assert!(!body.contains('\u{1}'), "the hole's mark leaked: {body}");
        let shown = timing(&body);
        assert!(
            shown.ends_with(" µs") || shown.ends_with(" ms"),
            "a timing in words: {shown}"
        );
    }
    app.insert_students(&[30]);
    let after = app.get("/students/average-age").await.text().await.unwrap();
    assert!(
        after.contains("24.00"),
        "the new value, not the kept page: {after}"
    );
    assert!(after.contains("Cache miss"), "{after}");
    let hit = app
        .get_from_memory("/students/average-age")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        hit.contains("24.00") && hit.contains("Cache hit · memory"),
        "{hit}"
    );
}
