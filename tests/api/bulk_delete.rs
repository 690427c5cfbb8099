//! "Delete selected" on the staff list: a page to confirm that lists what will go, then one
//! transaction, the cache invalidated before the answer, and a bad selection refused whole.

use crate::helpers::{csrf_token_in, header, spawn_app};

#[tokio::test(flavor = "multi_thread")]
async fn selected_students_are_listed_to_confirm_then_deleted_together() {
    let app = spawn_app().await;
    app.sign_in().await;
    app.insert_students(&[20, 21, 22, 23, 24]);
    let first = app.first_student_id();
    let (one, three) = (first.to_string(), (first + 2).to_string());
    app.average().await;
    assert_eq!(app.average().await.1, "HIT");

    let (_, list) = app.get_text("/admin/students").await;
    assert!(list.contains(&format!(
        "name=\"ids\" value=\"{one}\" aria-label=\"Select Student 0\""
    )));
    let token = csrf_token_in(&list).expect("the list's form has a token");
    let response = app
        .post_form(
            "/admin/students/delete-selected",
            &[
                ("csrf_token", &token),
                ("ids", &one),
                ("ids", &three),
                ("ids", "99999"),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    assert!(page.contains("these 2 students"), "{page}");
    assert!(
        page.contains("<li>Student 0 (age 20)</li>")
            && page.contains("<li>Student 2 (age 22)</li>")
    );
    assert!(!page.contains("99999"), "an unknown id is left out");
    assert_eq!(
        app.student_count(),
        5,
        "nothing goes before the confirmation"
    );

    let token = csrf_token_in(&page).expect("the confirmation has a token");
    let response = app
        .post_form(
            "/admin/students/delete-selected",
            &[
                ("csrf_token", &token),
                ("ids", &one),
                ("ids", &three),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(header(&response, "location"), "/admin/students");
    assert_eq!(app.student_count(), 3);
    assert_eq!(app.current_value(), None, "invalidated before the answer");
    let (json, x_cache) = app.average().await;
    assert_eq!(
        (x_cache.as_str(), json["student_count"].as_i64()),
        ("MISS", Some(3))
    );
    assert_eq!(json["average_age"], 22.67, "ages 21, 23 and 24 are left");

    let (_, list) = app.get_text("/admin/students").await;
    assert!(list.contains("Deleted 2 students."), "{list}");
    let (_, cache_page) = app.get_text("/admin/cache").await;
    assert!(
        cache_page.contains("deleted 2 students: “Student 0”, “Student 2”"),
        "{cache_page}"
    );

    // Confirming students someone else deleted meanwhile deletes nothing, and says so.
    let response = app
        .post_form(
            "/admin/students/delete-selected",
            &[("csrf_token", &token), ("ids", &one)],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("None of the selected students exist any more"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_selection_is_refused_and_deletes_nothing() {
    let app = spawn_app().await;
    app.sign_in().await;
    app.insert_students(&[20; 5]);
    let first = app.first_student_id().to_string();
    let token = app.csrf_token("/admin/students").await;

    let response = app
        .post_form(
            "/admin/students/delete-selected",
            &[("ids", &first), ("confirm", "yes")],
        )
        .await;
    assert_eq!(response.status(), 403, "no CSRF token");

    let too_many: Vec<String> = (1..=1001).map(|id| id.to_string()).collect();
    let mut over: Vec<(&str, &str)> = vec![("csrf_token", &token), ("confirm", "yes")];
    over.extend(too_many.iter().map(|id| ("ids", id.as_str())));
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("csrf_token", &token), ("confirm", "yes")],
            "Select at least one student to delete.",
        ),
        (
            vec![
                ("csrf_token", &token),
                ("ids", &first),
                ("ids", "two"),
                ("confirm", "yes"),
            ],
            "Each selected id must be a whole number from 1 up",
        ),
        (over, "Select at most 1000 students at a time, not 1001."),
    ];
    for (fields, message) in cases {
        let response = app
            .post_form("/admin/students/delete-selected", &fields)
            .await;
        assert_eq!(response.status(), 400, "{message}");
        let body = response.text().await.unwrap();
        assert!(body.contains(message), "{message}: {body}");
    }
    assert_eq!(app.student_count(), 5);
}
