use crate::helpers::{header, spawn_app};

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_table_shows_no_students_yet() {
    let app = spawn_app().await;
    let (status, body) = app.get_text("/students/average-age").await;
    assert_eq!(status, 200);
    assert!(body.contains("No students yet"), "{body}");
    let (status, body) = app.get_text("/students").await;
    assert_eq!(status, 200);
    assert!(body.contains("0 students in total"));
    let (json, _) = app.average().await;
    assert_eq!(json["average_age"], serde_json::Value::Null);
    assert_eq!(json["student_count"], 0);
    assert_eq!(json["age_sum"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_rounds_the_average_as_the_page_prints_it_and_gives_the_exact_sum() {
    // 62 / 3 = 20.666…, and 169 / 8 = 21.125 exactly: a tie, which the page's formatting
    // rounds to even and a naive round(x * 100) / 100 would not.
    for (ages, shown, sum) in [
        (vec![20, 21, 21], "20.67", 62),
        (vec![21, 21, 21, 21, 21, 21, 21, 22], "21.12", 169),
    ] {
        let app = spawn_app().await;
        app.insert_students(&ages);
        let (_, page) = app.get_text("/students/average-age").await;
        assert!(
            page.contains(&format!(r#"id="average-age">{shown}<"#)),
            "{page}"
        );
        let (json, _) = app.average().await;
        assert_eq!(json["average_age"].to_string(), shown, "{json}");
        assert_eq!(json["age_sum"], sum);
        assert_eq!(json["student_count"], ages.len());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_root_and_the_list_show_names_ages_and_the_total() {
    let app = spawn_app().await;
    app.insert_students(&[20, 30]);
    for path in ["/", "/students"] {
        let (status, body) = app.get_text(path).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            body.contains("<td>Student 0</td><td class=\"num\">20</td>"),
            "{body}"
        );
        assert!(body.contains("<td>Student 1</td><td class=\"num\">30</td>"));
        assert!(body.contains("2 students in total"));
        assert!(body.contains("href=\"/students/average-age\""));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_list_is_paginated_fifty_a_page() {
    let app = spawn_app().await;
    app.insert_students(&[20; 120]);
    let rows = |body: &str| body.matches("<tr><td>").count();

    let (status, body) = app.get_text("/students").await;
    assert_eq!(status, 200);
    assert_eq!(rows(&body), 50);
    assert!(body.contains("href=\"?page=2\""));
    assert!(!body.contains("rel=\"prev\""));

    let (status, body) = app.get_text("/students?page=3").await;
    assert_eq!(status, 200);
    assert_eq!(rows(&body), 20);
    assert!(body.contains("Student 119"));
    assert!(body.contains("href=\"?page=2\""));
    assert!(!body.contains("rel=\"next\""));

    assert_eq!(app.get("/students?page=4").await.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_page_numbers_answer_400() {
    let app = spawn_app().await;
    app.insert_students(&[20]);
    for page in ["0", "-1", "abc", "1.5", ""] {
        let response = app.get(&format!("/students?page={page}")).await;
        assert_eq!(response.status(), 400, "page={page}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn page_one_of_an_empty_table_is_fine_but_page_two_is_not_found() {
    let app = spawn_app().await;
    assert_eq!(app.get("/students?page=1").await.status(), 200);
    assert_eq!(app.get("/students?page=2").await.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app().await;
    for path in [
        "/students",
        "/students/average-age",
        "/api/students/average-age",
        "/nope",
        "/admin/login",
        "/static/css/site.css",
    ] {
        let response = app.get(path).await;
        let csp = header(&response, "content-security-policy");
        for directive in [
            "default-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "object-src 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert_eq!(
            header(&response, "cross-origin-opener-policy"),
            "same-origin",
            "{path}"
        );
        assert!(
            header(&response, "permissions-policy").contains("camera=()"),
            "{path}"
        );
        assert_eq!(
            header(&response, "strict-transport-security"),
            "",
            "{path}: not over HTTP"
        );
        assert_eq!(header(&response, "x-frame-options"), "DENY", "{path}");
        assert_eq!(
            header(&response, "x-content-type-options"),
            "nosniff",
            "{path}"
        );
        assert_eq!(
            header(&response, "referrer-policy"),
            "same-origin",
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stylesheet_is_served_with_cache_control() {
    let app = spawn_app().await;
    let response = app.get("/static/css/site.css").await;
    assert_eq!(response.status(), 200);
    assert!(header(&response, "content-type").starts_with("text/css"));
    assert!(header(&response, "cache-control").contains("max-age="));
    assert!(response.text().await.unwrap().contains(".badge-hit"));
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_answers_200_and_unknown_paths_a_404_page() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let (status, body) = app.get_text("/no/such/page").await;
    assert_eq!(status, 404);
    assert!(body.contains("Not found"));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_response_carries_server_timing() {
    let app = spawn_app().await;
    app.insert_students(&[20]);
    let response = app.get("/students").await;
    let timing = header(&response, "server-timing");
    assert!(timing.starts_with("db;dur="), "{timing}");
    // The count and the page, in one snapshot: BEGIN and COMMIT, and on PostgreSQL the SET
    // TRANSACTION that makes it REPEATABLE READ.
    let statements = match app.database.url {
        cachewithredis::config::DatabaseUrl::Postgres(_) => 5,
        cachewithredis::config::DatabaseUrl::Sqlite(_) => 4,
    };
    assert!(
        timing.contains(&format!(r#"desc="{statements} queries""#)),
        "{timing}"
    );
    assert!(
        timing.contains(r#"desc="2 calls""#),
        "a miss: the read and the fill: {timing}"
    );
    let hit = header(&app.get_from_memory("/students").await, "server-timing");
    assert!(hit.contains(r#"desc="0 queries""#), "{hit}");
    assert!(
        hit.contains(r#"cache;dur=0.00;desc="0 calls""#),
        "a hit from memory: {hit}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deep_page_shows_the_right_rows_and_follows_inserts_and_deletes() {
    let app = spawn_app().await;
    app.sign_in().await;
    app.insert_students(&[20; 3000]);
    let first_row = |body: &str| {
        let start = body.find("<tr><td>").expect("a row") + "<tr><td>".len();
        body[start..start + body[start..].find('<').unwrap()].to_owned()
    };
    let (status, body) = app.get_text("/students?page=40").await;
    assert_eq!(status, 200);
    assert_eq!(first_row(&body), "Student 1950");
    assert_eq!(body.matches("<tr><td>").count(), 50);
    assert!(body.contains("3,000 students in total"));

    // Deleting a student before page 40 shifts it by one row.
    let (_, confirm) = app.get_text("/admin/students/10/delete").await;
    let token = crate::helpers::csrf_token_in(&confirm).unwrap();
    app.post_form("/admin/students/10/delete", &[("csrf_token", &token)])
        .await;
    let (_, body) = app.get_text("/students?page=40").await;
    assert_eq!(first_row(&body), "Student 1951");
    assert!(body.contains("2,999 students in total"));

    let (_, body) = app.get_text("/students?page=60").await;
    assert_eq!(
        body.matches("<tr><td>").count(),
        49,
        "the last page holds the remainder"
    );
    assert_eq!(app.get("/students?page=61").await.status(), 404);
    app.add_student("Newcomer", "30").await;
    let (_, body) = app.get_text("/students?page=60").await;
    assert!(
        body.contains("<td>Newcomer</td>"),
        "an insert reaches the index too"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_written_by_another_program_are_counted_after_a_restart() {
    let app = spawn_app().await;
    app.insert_students(&[20]);
    use diesel::connection::SimpleConnection;
    app.conn()
        .batch_execute("INSERT INTO students (name, age) VALUES ('Raw', 30), ('Sql', 31)")
        .unwrap();
    let restarted = crate::helpers::spawn_second_instance(&app).await;
    let (_, body) = restarted.get_text("/students").await;
    assert!(body.contains("3 students in total"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_get_route_answers_head_with_the_same_status_and_headers_and_no_body() {
    let app = spawn_app().await;
    app.insert_students(&[20, 30]);
    app.sign_in().await;
    let id = app.first_student_id();
    let routes = [
        "/".to_owned(),
        "/students".into(),
        "/students?page=1".into(),
        "/students/average-age".into(),
        "/api/students/average-age".into(),
        "/healthz".into(),
        "/readyz".into(),
        "/metrics".into(),
        "/static/css/site.css".into(),
        "/admin/login".into(),
        "/admin/students".into(),
        "/admin/students/new".into(),
        format!("/admin/students/{id}/edit"),
        format!("/admin/students/{id}/delete"),
        "/admin/password".into(),
        "/admin/cache".into(),
        "/students?page=0".into(),
        "/no-such-page".into(),
    ];
    for route in &routes {
        let get = app.get(route).await;
        let head = app
            .client
            .head(app.url(route))
            .send()
            .await
            .expect("HEAD sent");
        assert_eq!(head.status(), get.status(), "HEAD {route}");
        assert_eq!(
            header(&head, "content-type"),
            header(&get, "content-type"),
            "HEAD {route}"
        );
        assert!(
            head.bytes().await.unwrap().is_empty(),
            "HEAD {route} has no body"
        );
    }
}

/// Every deep page, found through the id blocks, holds the rows OFFSET finds, after writes from
/// the application, from another program's SQL (inserts, a delete across blocks, an id moved),
/// on either database: the triggers keep the blocks exact whoever writes.
#[tokio::test(flavor = "multi_thread")]
async fn deep_pages_found_through_the_id_blocks_agree_with_offset_after_writes_from_anywhere() {
    use cachewithredis::models::student::list_page;
    use cachewithredis::models::Student;
    use diesel::connection::SimpleConnection;

    let app = spawn_app().await;
    app.insert_students(&vec![20; 5_000]);
    let mut conn = app.conn();
    conn.batch_execute(
        "INSERT INTO students (name, age) VALUES ('Raw', 30), ('Sql', 31), ('Shell', 32);
         DELETE FROM students WHERE id BETWEEN 1000 AND 2100;
         UPDATE students SET id = 100000 WHERE id = 50;
         UPDATE students SET age = 21 WHERE id BETWEEN 3000 AND 3010;",
    )
    .unwrap();
    let total = Student::count(&mut conn).unwrap();
    assert_eq!(total, 5_000 + 3 - 1_101);
    let in_blocks: i64 = Student::id_blocks(&mut conn)
        .unwrap()
        .iter()
        .map(|&(_, n)| n)
        .sum();
    assert_eq!(in_blocks, total, "the blocks count every student");
    let last_page = (total + 49) / 50;
    for page in 21..=last_page + 1 {
        let found = list_page(&mut conn, page, 50).unwrap();
        let truth = Student::page_rows(&mut conn, page, 50).unwrap();
        assert_eq!(found.total, total);
        assert_eq!(found.students, truth, "page {page}");
    }
    let last = list_page(&mut conn, last_page, 50).unwrap();
    assert_eq!(
        last.students.last().unwrap().id,
        100000,
        "the moved id is last"
    );
}
