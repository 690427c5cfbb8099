//! The CSV import: a spreadsheet's students in one transaction and one invalidation, or none
//! and every bad row by its line; a file that is not a students' CSV refused with a message.

use reqwest::multipart::{Form, Part};

use crate::helpers::{csrf_token_in, header, spawn_app, spawn_second_instance, TestApp};

/// Sends `file` from the import form, with this session's token unless `token` says otherwise.
async fn import(app: &TestApp, file: Vec<u8>, token: Option<&str>) -> reqwest::Response {
    let token = match token {
        Some(token) => token.to_owned(),
        None => app.csrf_token("/admin/students/import").await,
    };
    let form = Form::new().text("csrf_token", token).part(
        "file",
        Part::bytes(file)
            .file_name("students.csv")
            .mime_str("text/csv")
            .unwrap(),
    );
    app.client
        .post(app.url("/admin/students/import"))
        .multipart(form)
        .send()
        .await
        .expect("import request")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spreadsheets_file_is_imported_whole_and_the_average_follows_at_once() {
    let app = spawn_app().await;
    app.sign_in().await;
    app.insert_students(&[20]);
    app.average().await;
    assert_eq!(app.average().await.1, "HIT");

    let (status, form) = app.get_text("/admin/students/import").await;
    assert_eq!(status, 200);
    assert!(
        form.contains("enctype=\"multipart/form-data\"") && form.contains("<label for=\"file\">")
    );
    let file = "\u{feff}name,age\r\n\"Lovelace, Ada\",36\r\n\"Said \"\"Zed\"\"\",22\r\nZoë,22\r\n";
    let response = import(&app, file.as_bytes().to_vec(), None).await;
    assert_eq!(response.status(), 303);
    assert_eq!(header(&response, "location"), "/admin/students");
    assert_eq!(app.current_value(), None, "invalidated before the answer");
    let (json, x_cache) = app.average().await;
    assert_eq!(
        (x_cache.as_str(), json["student_count"].as_i64()),
        ("MISS", Some(4))
    );
    assert_eq!(json["average_age"], 25.0);

    let (_, list) = app.get_text("/admin/students?sort=name").await;
    assert!(list.contains("Imported 3 students."), "{list}");
    for name in ["Lovelace, Ada", "Said &#34;Zed&#34;", "Zoë"] {
        assert!(list.contains(&format!("<td>{name}</td>")), "{name}: {list}");
    }
    // The ids follow the file's order.
    let (_, by_id) = app.get_text("/admin/students?sort=-id").await;
    let at = |name: &str| by_id.find(&format!("<td>{name}</td>")).expect(name);
    assert!(at("Zoë") < at("Said &#34;Zed&#34;") && at("Said &#34;Zed&#34;") < at("Lovelace, Ada"));
    let (_, cache_page) = app.get_text("/admin/cache").await;
    assert!(cache_page.contains("imported 3 students from a CSV file"));
}

#[tokio::test(flavor = "multi_thread")]
async fn any_bad_row_refuses_the_file_and_lists_every_bad_row_by_its_line() {
    let app = spawn_app().await;
    app.sign_in().await;
    let mut file = String::from("name,age\nAda,36\n,20\nBob,151\n");
    for i in 0..150 {
        file.push_str(&format!("Row {i},old\n"));
    }
    let response = import(&app, file.into_bytes(), None).await;
    assert_eq!(response.status(), 422);
    let body = response.text().await.unwrap();
    assert!(
        body.contains("Nothing was imported: 152 rows are not a student."),
        "{body}"
    );
    assert!(body.contains("<li>Line 3: Enter a name.</li>"));
    assert!(body.contains("<li>Line 4: Enter an age from 0 to 150.</li>"));
    assert!(body.contains("<li>Line 5: Enter the age as a whole number, e.g. 21.</li>"));
    assert_eq!(body.matches("<li>Line ").count(), 100, "the first hundred");
    assert!(body.contains("… and 52 more."));
    assert!(
        csrf_token_in(&body).is_some(),
        "the form is there to try again"
    );
    assert_eq!(app.student_count(), 0, "not even Ada");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_that_is_not_a_students_csv_is_refused_with_a_message() {
    let app = spawn_app().await;
    app.sign_in().await;
    let mut many = String::from("name,age\n");
    for _ in 0..100_001 {
        many.push_str("A,1\n");
    }
    let mut huge = String::from("name,age\n");
    while huge.len() <= 10 * 1024 * 1024 {
        huge.push_str(&format!("{},20\n", "x".repeat(99)));
    }
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (
            b"id,name,age\n1,Ada,36\n".to_vec(),
            400,
            "The first line must be the header name,age",
        ),
        (
            b"name,age\nAda\xff,36\n".to_vec(),
            400,
            "The file is not UTF-8 text",
        ),
        (b"name,age\nAda\0,36\n".to_vec(), 400, "NUL bytes"),
        (b"name,age\n".to_vec(), 400, "the header but no students"),
        (Vec::new(), 400, "Choose a CSV file to import."),
        (many.into_bytes(), 400, "more than 100000 rows"),
        (huge.into_bytes(), 413, "The file is over 10 MiB"),
    ];
    for (file, status, message) in cases {
        let response = import(&app, file, None).await;
        assert_eq!(response.status().as_u16(), status, "{message}");
        let body = response.text().await.unwrap();
        assert!(body.contains(message), "{message}: {body}");
    }
    let response = import(&app, b"name,age\nAda,36\n".to_vec(), Some("wrong")).await;
    assert_eq!(response.status(), 403, "a wrong CSRF token");
    assert_eq!(app.student_count(), 0);

    // Signed out: refused before the body is read, nothing written.
    let visitor = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = visitor
        .post(app.url("/admin/students/import"))
        .multipart(Form::new().text("file", "name,age\nAda,36\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(app.student_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn another_instance_never_reads_a_value_from_before_a_bulk_import_or_delete() {
    let app = spawn_app().await;
    let other = spawn_second_instance(&app).await;
    app.sign_in().await;
    app.insert_students(&[20; 10]);
    other.average().await;
    assert_eq!(
        other.average().await.1,
        "HIT",
        "the other instance holds the value"
    );
    let (_, page) = other.get_text("/students").await;
    assert!(page.contains("10 students in total"));

    let mut file = String::from("name,age\n");
    for i in 0..1_000 {
        file.push_str(&format!("Imported {i},30\n"));
    }
    assert_eq!(import(&app, file.into_bytes(), None).await.status(), 303);
    let (json, _) = other.average().await;
    assert_eq!(
        json["student_count"], 1_010,
        "the import shows at once elsewhere"
    );
    let (_, page) = other.get_text("/students").await;
    assert!(page.contains("1,010 students in total"), "{page}");

    let token = app.csrf_token("/admin/students").await;
    let ids: Vec<String> = (0..500)
        .map(|i| (app.first_student_id() + i).to_string())
        .collect();
    let mut fields = vec![("csrf_token", token.as_str()), ("confirm", "yes")];
    fields.extend(ids.iter().map(|id| ("ids", id.as_str())));
    let response = app
        .post_form("/admin/students/delete-selected", &fields)
        .await;
    assert_eq!(response.status(), 303);
    let (json, _) = other.average().await;
    assert_eq!(
        json["student_count"], 510,
        "the bulk delete shows at once elsewhere"
    );
    let (_, page) = other.get_text("/students").await;
    assert!(page.contains("510 students in total"), "{page}");
}
