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

#[tokio::test(flavor = "multi_thread")]
async fn a_body_sent_a_byte_a_second_is_cut_off_with_408_and_others_are_served_meanwhile() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let slow = (0..50).map(|_| {
        let addr = addr.clone();
        tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let head = format!(
                "POST /admin/login HTTP/1.1\r\nHost: {addr}\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            let started = std::time::Instant::now();
            let mut answer = Vec::new();
            let mut buf = [0u8; 1024];
            loop {
                // One byte a second, until the server answers or gives up on us.
                if stream.write_all(b"a").await.is_err() {
                    break;
                }
                tokio::select! {
                    read = stream.read(&mut buf) => match read {
                        Ok(0) | Err(_) => break,
                        Ok(n) => { answer.extend_from_slice(&buf[..n]); if answer.windows(4).any(|w| w == b"\r\n\r\n") { break; } }
                    },
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
                assert!(started.elapsed() < std::time::Duration::from_secs(30), "never cut off");
            }
            String::from_utf8_lossy(&answer).into_owned()
        })
    });
    let slow: Vec<_> = slow.collect();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    // Meanwhile, everyone else is served.
    for _ in 0..5 {
        assert_eq!(app.get("/students").await.status(), 200);
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    for connection in slow {
        let answer = connection.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:.80}");
    }
    let failures: i64 = login_failures::table
        .count()
        .get_result(&mut *app.conn())
        .unwrap();
    assert_eq!(failures, 0, "nothing was tried");
}
