//! Input no form would send: NUL bytes and values of kilobytes, in every field and query
//! parameter, answer 4xx and store nothing; a database that fails under a request answers 503.

use diesel::prelude::*;

use cachewithredis::db::DbConn;
use cachewithredis::models::Student;
use cachewithredis::schema::login_failures;

use crate::helpers::{header, spawn_app, DatabaseOutage, STAFF_USER};

fn hostile_values() -> Vec<String> {
    vec!["ada\0lovelace".into(), "x".repeat(5 * 1024)]
}

#[tokio::test(flavor = "multi_thread")]
async fn nul_bytes_and_long_values_in_the_sign_in_form_answer_400_and_record_nothing() {
    let app = spawn_app().await;
    for value in hostile_values() {
        for (username, password) in [(value.as_str(), "pw"), (STAFF_USER, value.as_str())] {
            let response = app.try_sign_in(username, password, "").await;
            assert_eq!(response.status(), 400, "{:.20?}", value);
        }
        let response = app.try_sign_in(STAFF_USER, "pw", &value).await;
        assert!(response.status().is_success(), "{:.20?} as next", value);
    }
    let recorded: i64 = login_failures::table
        .count()
        .get_result(&mut *app.conn())
        .unwrap();
    assert_eq!(recorded, 2, "one attempt per hostile next was tried");
}

#[tokio::test(flavor = "multi_thread")]
async fn nul_bytes_and_long_values_in_queries_and_student_forms_answer_4xx_and_store_nothing() {
    let app = spawn_app().await;
    app.sign_in().await;
    for value in hostile_values() {
        let encoded = serde_urlencoded::to_string([("v", &value)]).unwrap();
        let encoded = encoded.trim_start_matches("v=");
        for path in [
            format!("/admin/students?q={encoded}"),
            format!("/admin/students?page={encoded}"),
            format!("/students?page={encoded}"),
        ] {
            let status = app.get(&path).await.status();
            assert_eq!(status, 400, "{:.40}", path);
        }
        for fields in [
            [("name", value.as_str()), ("age", "20")],
            [("name", "Ada"), ("age", value.as_str())],
        ] {
            let token = app.csrf_token("/admin/students/new").await;
            let mut fields = fields.to_vec();
            fields.push(("csrf_token", &token));
            let status = app.post_form("/admin/students", &fields).await.status();
            assert_eq!(status, 422, "{:.20?}", value);
        }
        let status = app
            .post_form(
                "/admin/students",
                &[("name", "Ada"), ("age", "20"), ("csrf_token", &value)],
            )
            .await
            .status();
        assert_eq!(status, 403);
    }
    assert_eq!(app.student_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_that_fails_under_a_write_answers_503_with_retry_after() {
    let app = spawn_app().await;
    app.sign_in().await;
    let token = app.csrf_token("/admin/students/new").await;
    let url = app.database.url_string();
    let outage = DatabaseOutage::start(&app);
    let response = app
        .post_form(
            "/admin/students",
            &[("name", "Ada"), ("age", "20"), ("csrf_token", &token)],
        )
        .await;
    assert_eq!(response.status(), 503);
    assert!(!header(&response, "retry-after").is_empty());
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("database is not answering"));
    outage.end();
    let mut conn = DbConn::establish(&url).unwrap();
    assert_eq!(Student::count(&mut conn).unwrap(), 0);
}
