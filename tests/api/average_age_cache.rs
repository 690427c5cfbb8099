use crate::helpers::{header, spawn_app, spawn_app_with, spawn_second_instance, AppOptions};

#[tokio::test(flavor = "multi_thread")]
async fn the_first_view_is_a_miss_and_the_second_a_hit_with_the_key_in_redis() {
    let app = spawn_app().await;
    app.insert_students(&[20, 21, 25]);
    assert_eq!(app.redis_get(&app.value_key()), None);

    let response = app.get("/students/average-age").await;
    assert_eq!(header(&response, "x-cache"), "MISS");
    let body = response.text().await.unwrap();
    assert!(body.contains("22.00"), "{body}");
    assert!(body.contains("Cache miss"));
    assert!(body.contains(">3</strong> students"));

    let stored = app
        .redis_get(&app.value_key())
        .expect("value stored under the prefix");
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["payload"]["average_age"], 22.0);
    assert_eq!(stored["payload"]["student_count"], 3);

    let response = app.get("/students/average-age").await;
    assert_eq!(header(&response, "x-cache"), "HIT");
    let body = response.text().await.unwrap();
    assert!(body.contains("Cache hit"));
    assert!(body.contains("22.00"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_answers_json_with_the_same_header() {
    let app = spawn_app().await;
    app.insert_students(&[18, 19]);
    let (json, x_cache) = app.average().await;
    assert_eq!(x_cache, "MISS");
    assert_eq!(
        json,
        serde_json::json!({"average_age": 18.5, "student_count": 2, "age_sum": 37, "cache": "miss", "tier": null})
    );
    let (json, x_cache) = app.average().await;
    assert_eq!(x_cache, "HIT");
    assert_eq!(json["cache"], "hit");
    assert_eq!(json["average_age"], 18.5);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_average_is_shown_to_two_decimals() {
    let app = spawn_app().await;
    app.insert_students(&[20, 20, 21]);
    let (_, body) = app.get_text("/students/average-age").await;
    assert!(body.contains("20.33"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_key_expires_after_the_ttl_less_at_most_ten_percent() {
    let app = spawn_app_with(AppOptions {
        ttl_secs: Some(100),
        ..Default::default()
    })
    .await;
    app.average().await;
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(app.value_key())
        .query(&mut app.redis_direct())
        .unwrap();
    assert!((89_000..=100_000).contains(&ttl_ms), "PTTL {ttl_ms}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_miss_makes_one_query_and_a_repeated_view_neither_a_query_nor_a_redis_call() {
    let app = spawn_app().await;
    app.insert_students(&[20]);
    let miss = app.get("/api/students/average-age").await;
    let timing = header(&miss, "server-timing");
    assert!(timing.contains(r#"desc="1 query""#), "{timing}");
    let hit = app.get_from_memory("/api/students/average-age").await;
    assert_eq!(header(&hit, "x-cache"), "HIT");
    let timing = header(&hit, "server-timing");
    assert_eq!(
        timing,
        r#"db;dur=0.00;desc="0 queries", cache;dur=0.00;desc="0 calls", cache-tier;desc="memory""#,
        "served from memory"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn another_instance_reads_the_value_from_redis_once_then_from_memory() {
    let app = spawn_app().await;
    let other = spawn_second_instance(&app).await;
    app.insert_students(&[20]);
    app.average().await;
    let first = other.get("/api/students/average-age").await;
    assert_eq!(header(&first, "x-cache"), "HIT");
    let timing = header(&first, "server-timing");
    assert!(
        timing.starts_with(r#"db;dur=0.00;desc="0 queries", cache;"#),
        "{timing}"
    );
    assert!(
        timing.ends_with(r#"desc="1 call", cache-tier;desc="redis""#),
        "one Redis round trip: {timing}"
    );
    let second = other.get_from_memory("/api/students/average-age").await;
    assert!(
        header(&second, "server-timing").ends_with(r#"desc="0 calls", cache-tier;desc="memory""#),
        "from memory"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_hits_misses_and_aggregate_queries() {
    let app = spawn_app().await;
    app.average().await;
    app.average().await;
    app.average().await;
    assert_eq!(
        app.metric(r#"cachewithredis_cache_requests_total{result="miss"}"#)
            .await,
        1.0
    );
    assert_eq!(
        app.metric(r#"cachewithredis_cache_requests_total{result="hit"}"#)
            .await,
        2.0
    );
    assert_eq!(
        app.metric("cachewithredis_db_aggregate_queries_total")
            .await,
        1.0
    );
    let (_, body) = app.get_text("/metrics").await;
    assert!(body.contains("cachewithredis_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/students/average-age\",status=\"200\""), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_value_expires_with_its_ttl_in_redis_and_in_memory() {
    let app = spawn_app_with(AppOptions {
        ttl_secs: Some(1),
        ..Default::default()
    })
    .await;
    app.insert_students(&[20]);
    app.average().await;
    let (json, x_cache) = app.average().await;
    assert_eq!(
        (x_cache.as_str(), json["student_count"].as_i64()),
        ("HIT", Some(1))
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (json, x_cache) = app.average().await;
    assert_eq!(
        (x_cache.as_str(), json["student_count"].as_i64()),
        ("MISS", Some(1)),
        "expired in Redis and in memory"
    );
}
