//! What a request costs, made visible: Server-Timing, the debug panel, /metrics.

use crate::helpers::{header, spawn_app, spawn_app_with, AppOptions};

#[tokio::test(flavor = "multi_thread")]
async fn the_debug_panel_is_absent_unless_debug_is_set() {
    let app = spawn_app().await;
    app.insert_students(&[20]);
    for path in ["/students", "/students/average-age", "/admin/login"] {
        let (_, body) = app.get_text(path).await;
        assert!(!body.contains("debug-panel"), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_debug_set_the_panel_lists_each_statement_and_redis_command() {
    let app = spawn_app_with(AppOptions {
        debug: true,
        ..Default::default()
    })
    .await;
    app.insert_students(&[20]);
    let (_, miss) = app.get_text("/students/average-age").await;
    assert!(miss.contains("id=\"debug-panel\""), "{miss}");
    assert!(miss.contains("1 SQL query in"), "{miss}");
    assert!(
        miss.contains("student_age_counts"),
        "the statement is shown"
    );
    assert!(miss.contains("EVALSHA read_or_lease") && miss.contains("EVALSHA fill_if_generation"));
    assert!(miss.contains("cache: miss"));
    let (_, hit) = app.get_text("/students/average-age").await;
    assert!(
        hit.contains("0 SQL queries in") && hit.contains("cache: hit"),
        "{hit}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_debug_panel_escapes_what_it_shows_and_stays_out_of_json() {
    let app = spawn_app_with(AppOptions {
        debug: true,
        ..Default::default()
    })
    .await;
    app.sign_in().await;
    let (_, body) = app
        .get_text("/admin/students?q=%3Cscript%3Ex%3C%2Fscript%3E")
        .await;
    assert!(body.contains("debug-panel"));
    assert!(
        !body.contains("<script>x</script>"),
        "a bound value is escaped in the panel"
    );
    let response = app.get("/api/students/average-age").await;
    let json = response.text().await.unwrap();
    assert!(!json.contains("debug"), "{json}");
    serde_json::from_str::<serde_json::Value>(&json).expect("still plain JSON");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_histogram_is_labelled_by_route_pattern_so_ids_add_no_series() {
    let app = spawn_app().await;
    app.sign_in().await;
    app.get("/admin/students/1/edit").await;
    let series = |body: &str| {
        body.lines()
            .filter(|l| l.starts_with("cachewithredis_http_request_duration_seconds_count"))
            .count()
    };
    let (_, before) = app.get_text("/metrics").await;
    for id in 2..102 {
        assert_eq!(
            app.get(&format!("/admin/students/{id}/edit"))
                .await
                .status(),
            404
        );
    }
    let (_, after) = app.get_text("/metrics").await;
    assert!(
        after.contains(r#"route="/admin/students/{id}/edit""#),
        "{after}"
    );
    // One new series: the 404 status of the same route; none per id.
    assert!(
        series(&after) <= series(&before) + 2,
        "{} → {}",
        series(&before),
        series(&after)
    );
    assert!(!after.contains("/admin/students/57/edit"));
}

#[tokio::test(flavor = "multi_thread")]
async fn invalidations_are_counted_in_metrics() {
    let app = spawn_app().await;
    app.sign_in().await;
    app.add_student("Ada", "30").await;
    app.add_student("Bob", "31").await;
    assert_eq!(
        app.metric("cachewithredis_cache_invalidations_total").await,
        2.0
    );
    assert_eq!(
        app.metric("cachewithredis_cache_invalidations_pending")
            .await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_invalidation_shows_in_metrics_until_applied() {
    let app = spawn_app().await;
    app.sign_in().await;
    app.proxy.cut();
    assert_eq!(app.add_student("Ada", "30").await.status(), 303);
    assert!(
        app.metric("cachewithredis_cache_invalidations_pending")
            .await
            >= 1.0
    );
    app.proxy.restore();
    app.eventually(
        std::time::Duration::from_secs(5),
        "the pending gauge back at 0",
        || async {
            app.metric("cachewithredis_cache_invalidations_pending")
                .await
                == 0.0
        },
    )
    .await;
    let response = app.get("/api/students/average-age").await;
    assert_eq!(header(&response, "x-cache"), "MISS");
}

#[tokio::test(flavor = "multi_thread")]
async fn made_up_methods_and_paths_add_no_series_to_metrics() {
    let app = spawn_app().await;
    let send = |method: String, path: String| {
        let request = app.client.request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            app.url(&path),
        );
        async move { request.send().await.unwrap() }
    };
    // Every series this test can produce exists once, /metrics' own included.
    send("BREW".into(), "/students".into()).await;
    send("BREW".into(), "/no/such/page".into()).await;
    send("GET".into(), "/no/such/page".into()).await;
    app.get("/metrics").await;
    let (_, before) = app.get_text("/metrics").await;
    for i in 0..150 {
        send(format!("M{i}X"), "/students".into()).await;
        send(format!("Q{i}"), format!("/made-up/{i}")).await;
    }
    let (_, after) = app.get_text("/metrics").await;
    assert_eq!(before.lines().count(), after.lines().count());
    assert!(after.contains(r#"method="OTHER""#), "{after}");
    assert!(after.contains(r#"route="unmatched""#), "{after}");
    assert!(!after.contains("M1X"));
}
