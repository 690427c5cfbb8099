use crate::helpers::{csrf_token_in, header, spawn_app};

#[tokio::test(flavor = "multi_thread")]
async fn adding_a_student_invalidates_the_cache_and_the_next_read_is_a_miss_with_the_new_average() {
    let app = spawn_app().await;
    app.sign_in().await;
    app.insert_students(&[20]);
    app.average().await;
    assert_eq!(app.average().await.1, "HIT");

    let response = app.add_student("Ada Lovelace", "30").await;
    assert_eq!(response.status(), 303);
    assert_eq!(header(&response, "location"), "/admin/students");
    assert_eq!(
        app.current_value(),
        None,
        "the value is older than the generation before the answer"
    );

    let (json, x_cache) = app.average().await;
    assert_eq!(x_cache, "MISS");
    assert_eq!(json["average_age"], 25.0);
    assert_eq!(json["student_count"], 2);

    let (_, body) = app.get_text("/admin/students").await;
    assert!(
        body.contains("The student “Ada Lovelace” was added."),
        "{body}"
    );
    let (_, body) = app.get_text("/admin/students").await;
    assert!(!body.contains("was added"), "a flash shows once");
}

#[tokio::test(flavor = "multi_thread")]
async fn names_and_ages_are_stored_trimmed() {
    let app = spawn_app().await;
    app.sign_in().await;
    assert_eq!(
        app.add_student("  Grace Hopper \t", " 12 ").await.status(),
        303
    );
    let (_, body) = app.get_text("/students").await;
    assert!(
        body.contains("<td>Grace Hopper</td><td class=\"num\">12</td>"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_invalid_input_answers_422_keeps_what_was_typed_and_stores_nothing() {
    let app = spawn_app().await;
    app.sign_in().await;
    let too_long = "x".repeat(101);
    let cases: &[(&str, &str, &str)] = &[
        ("", "20", "Enter a name."),
        ("   ", "20", "Enter a name."),
        (&too_long, "20", "Use at most 100 characters."),
        ("Ada", "", "Enter an age."),
        ("Ada", "-1", "Enter an age from 0 to 150."),
        ("Ada", "151", "Enter an age from 0 to 150."),
        ("Ada", "twenty", "Enter the age as a whole number"),
        ("Ada", "20.5", "Enter the age as a whole number"),
    ];
    for (name, age, message) in cases {
        let response = app.add_student(name, age).await;
        assert_eq!(response.status(), 422, "{name:?} {age:?}");
        let body = response.text().await.unwrap();
        assert!(body.contains(message), "{name:?} {age:?}: {body}");
        assert!(
            body.contains(&format!("value=\"{}\"", age)),
            "typed age kept"
        );
        assert!(
            body.contains("aria-describedby="),
            "message tied to its field"
        );
    }
    assert_eq!(app.student_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_form_fields_are_field_errors_not_a_bare_400() {
    let app = spawn_app().await;
    app.sign_in().await;
    let token = app.csrf_token("/admin/students/new").await;
    let response = app
        .post_form("/admin/students", &[("csrf_token", &token)])
        .await;
    assert_eq!(response.status(), 422);
    let body = response.text().await.unwrap();
    assert!(body.contains("Enter a name.") && body.contains("Enter an age."));
    assert_eq!(app.student_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn editing_a_student_changes_the_average_at_once() {
    let app = spawn_app().await;
    app.sign_in().await;
    app.insert_students(&[20, 30]);
    app.average().await;
    let token = app.csrf_token("/admin/students/1/edit").await;
    let (_, form) = app.get_text("/admin/students/1/edit").await;
    assert!(form.contains("value=\"Student 0\"") && form.contains("value=\"20\""));
    let response = app
        .post_form(
            "/admin/students/1",
            &[("name", "Renamed"), ("age", "40"), ("csrf_token", &token)],
        )
        .await;
    assert_eq!(response.status(), 303);
    let (json, x_cache) = app.average().await;
    assert_eq!(
        (x_cache.as_str(), json["average_age"].as_f64()),
        ("MISS", Some(35.0))
    );
    let (_, body) = app.get_text("/admin/students").await;
    assert!(body.contains("The student “Renamed” was changed."));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_edit_answers_422_and_changes_nothing() {
    let app = spawn_app().await;
    app.sign_in().await;
    app.insert_students(&[20]);
    let token = app.csrf_token("/admin/students/1/edit").await;
    let response = app
        .post_form(
            "/admin/students/1",
            &[("name", ""), ("age", "200"), ("csrf_token", &token)],
        )
        .await;
    assert_eq!(response.status(), 422);
    let (_, body) = app.get_text("/students").await;
    assert!(body.contains("<td>Student 0</td><td class=\"num\">20</td>"));
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_student_asks_first_then_changes_the_average_at_once() {
    let app = spawn_app().await;
    app.sign_in().await;
    app.insert_students(&[20, 30]);
    app.average().await;
    let (status, confirm) = app.get_text("/admin/students/2/delete").await;
    assert_eq!(status, 200);
    assert!(confirm.contains("Student 1"));
    let token = csrf_token_in(&confirm).unwrap();
    let response = app
        .post_form("/admin/students/2/delete", &[("csrf_token", &token)])
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(app.student_count(), 1);
    let (json, x_cache) = app.average().await;
    assert_eq!(
        (x_cache.as_str(), json["average_age"].as_f64()),
        ("MISS", Some(20.0))
    );
    let (_, body) = app.get_text("/admin/students").await;
    assert!(body.contains("The student “Student 1” was deleted."));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_ids_answer_404() {
    let app = spawn_app().await;
    app.sign_in().await;
    let token = app.csrf_token("/admin/students/new").await;
    assert_eq!(app.get("/admin/students/999/edit").await.status(), 404);
    assert_eq!(app.get("/admin/students/999/delete").await.status(), 404);
    assert_eq!(app.get("/admin/students/abc/edit").await.status(), 404);
    let update = app
        .post_form(
            "/admin/students/999",
            &[("name", "X"), ("age", "1"), ("csrf_token", &token)],
        )
        .await;
    assert_eq!(update.status(), 404);
    let delete = app
        .post_form("/admin/students/999/delete", &[("csrf_token", &token)])
        .await;
    assert_eq!(delete.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_script_in_a_name_is_escaped_on_every_page_that_shows_names() {
    let app = spawn_app().await;
    app.sign_in().await;
    let evil = "<script>alert(1)</script>";
    assert_eq!(app.add_student(evil, "20").await.status(), 303);
    for path in [
        "/students",
        "/admin/students",
        "/admin/students/1/edit",
        "/admin/students/1/delete",
    ] {
        let (status, body) = app.get_text(path).await;
        assert_eq!(status, 200, "{path}");
        assert!(!body.contains(evil), "{path} shows the raw script");
        assert!(
            body.contains("&#60;script&#62;") || body.contains("&lt;script&gt;"),
            "{path}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unicode_names_round_trip() {
    let app = spawn_app().await;
    app.sign_in().await;
    for name in ["Zoë Ångström", "李小龍", "Ольга", "🦀 Ferris"] {
        assert_eq!(app.add_student(name, "30").await.status(), 303, "{name}");
        let (_, body) = app.get_text("/students").await;
        assert!(body.contains(&format!("<td>{name}</td>")), "{name}");
    }
    let (_, body) = app.get_text("/admin/students?q=%E6%9D%8E").await;
    assert!(
        body.contains("李小龍") && !body.contains("Ольга"),
        "search by a Unicode substring"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_staff_list_searches_by_name() {
    let app = spawn_app().await;
    app.sign_in().await;
    app.add_student("Ada Lovelace", "36").await;
    app.add_student("Grace Hopper", "85").await;
    app.add_student("100% real_name", "20").await;
    let (_, body) = app.get_text("/admin/students?q=ada").await;
    assert!(body.contains("Ada Lovelace") && !body.contains("Grace Hopper"));
    assert!(body.contains("1 matching student."));
    let (_, body) = app.get_text("/admin/students?q=%25").await;
    assert!(
        body.contains("100% real_name") && !body.contains("Ada Lovelace"),
        "% is literal"
    );
    assert!(body.contains("/admin/students/1/edit") || body.contains("/admin/students/3/edit"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_over_16_kib_answers_413_and_stores_nothing() {
    let app = spawn_app().await;
    app.sign_in().await;
    let token = app.csrf_token("/admin/students/new").await;
    let big = "a".repeat(17 * 1024);
    let response = app
        .post_form(
            "/admin/students",
            &[("name", &big), ("age", "20"), ("csrf_token", &token)],
        )
        .await;
    assert_eq!(response.status(), 413);
    assert_eq!(app.student_count(), 0);
}
