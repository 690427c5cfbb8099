//! `/admin/students/{id}/history`: every change made through the application (the staff
//! forms, "Delete selected", the import, the command line), who made it, each changed field
//! before and after, newest first; a deleted student's history stays.

use std::process::Command;

use crate::helpers::{spawn_app, spawn_second_instance, TestApp, STAFF_USER};

/// The history's rows, newest first: (who, action, changes), the changes as the page lists them.
async fn history(app: &TestApp, id: i32) -> Vec<(String, String, String)> {
    let (status, body) = app.get_text(&format!("/admin/students/{id}/history")).await;
    assert_eq!(status, 200, "{body}");
    body.split("<tr>\n      <td><time")
        .skip(1)
        .map(|row| {
            let cells: Vec<&str> = row
                .split("<td>")
                .skip(1)
                .map(|cell| cell.split("</td>").next().unwrap_or_default())
                .collect();
            let changes = cells[2]
                .split("<li>")
                .skip(1)
                .map(|li| li.split("</li>").next().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("; ");
            (cells[0].to_owned(), cells[1].to_owned(), changes)
        })
        .collect()
}

fn row(who: &str, action: &str, changes: &str) -> (String, String, String) {
    (who.to_owned(), action.to_owned(), changes.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn each_staff_change_is_in_the_history_with_the_fields_before_and_after() {
    let app = spawn_app().await;
    app.sign_in().await;
    assert_eq!(app.add_student("Ada", "30").await.status(), 303);
    let id = app.first_student_id();
    let edit = |name: &'static str, age: &'static str| {
        let app = &app;
        async move {
            assert_eq!(app.edit_student(id, name, age).await.status(), 303);
        }
    };
    edit("Ada Lovelace", "31").await;
    edit("Ada Lovelace", "36").await;
    assert_eq!(
        history(&app, id).await,
        [
            row(STAFF_USER, "changed", "age: 31 → 36"),
            row(
                STAFF_USER,
                "changed",
                "name: Ada → Ada Lovelace; age: 30 → 31"
            ),
            row(STAFF_USER, "added", "name: — → Ada; age: — → 30"),
        ]
    );
    let (_, list) = app.get_text("/admin/students").await;
    assert!(list.contains(&format!(
        "href=\"/admin/students/{id}/history\">History</a>"
    )));

    let token = app
        .csrf_token(&format!("/admin/students/{id}/delete"))
        .await;
    let response = app
        .post_form(
            &format!("/admin/students/{id}/delete"),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(response.status(), 303);
    let (_, page) = app.get_text(&format!("/admin/students/{id}/history")).await;
    assert!(page.contains("History of Ada Lovelace") && page.contains("This student was deleted"));
    assert_eq!(
        history(&app, id).await[0],
        row(STAFF_USER, "deleted", "name: Ada Lovelace → —; age: 36 → —")
    );
    assert_eq!(app.get("/admin/students/99999/history").await.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_import_bulk_deletes_and_the_command_line_are_in_the_history_too() {
    let app = spawn_app().await;
    app.sign_in().await;
    let out = Command::new(env!("CARGO_BIN_EXE_cachewithredis"))
        .args(["seed", "--count", "3", "--seed", "7"])
        .env("DATABASE_URL", app.database.url_string())
        .env("REDIS_URL", app.redis_url())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seeded = app.first_student_id();
    let rows = history(&app, seeded).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1.as_str()),
        ("command line", "added")
    );

    let token = app.csrf_token("/admin/students/import").await;
    let form = reqwest::multipart::Form::new()
        .text("csrf_token", token)
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"name,age\nImported,44\n".to_vec()).file_name("s.csv"),
        );
    let response = app
        .client
        .post(app.url("/admin/students/import"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let imported = seeded + 3;
    assert_eq!(
        history(&app, imported).await,
        [row(STAFF_USER, "added", "name: — → Imported; age: — → 44")]
    );

    let token = app.csrf_token("/admin/students").await;
    let ids = [seeded.to_string(), imported.to_string()];
    let response = app
        .post_form(
            "/admin/students/delete-selected",
            &[
                ("csrf_token", &token),
                ("ids", &ids[0]),
                ("ids", &ids[1]),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        history(&app, imported).await[0],
        row(STAFF_USER, "deleted", "name: Imported → —; age: 44 → —")
    );
    assert_eq!(history(&app, seeded).await.len(), 2);
}

/// Each change reads the row it changes in the statement that records it, under the write
/// lock: concurrent edits from two instances all succeed (a read first would make SQLite refuse
/// some with SQLITE_BUSY), and the history is one unbroken chain, each change starting where
/// the one before it ended.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_edits_from_two_instances_all_succeed_and_chain_in_the_history() {
    let app = spawn_app().await;
    let other = spawn_second_instance(&app).await;
    app.sign_in().await;
    let signed_in = other
        .try_sign_in(STAFF_USER, crate::helpers::STAFF_PASSWORD, "")
        .await;
    assert_eq!(signed_in.status(), 303);
    app.insert_students(&[20]);
    let id = app.first_student_id();
    let edit_path = format!("/admin/students/{id}/edit");
    let tokens = [
        app.csrf_token(&edit_path).await,
        other.csrf_token(&edit_path).await,
    ];
    let post_path = format!("/admin/students/{id}");
    let mut edits = Vec::new();
    for age in 30..50 {
        let (instance, token) = if age % 2 == 0 {
            (&app, &tokens[0])
        } else {
            (&other, &tokens[1])
        };
        let age = age.to_string();
        let post_path = post_path.clone();
        edits.push(async move {
            instance
                .post_form(
                    &post_path,
                    &[("name", "Edited"), ("age", &age), ("csrf_token", token)],
                )
                .await
                .status()
        });
    }
    let statuses = futures_util::future::join_all(edits).await;
    assert!(statuses.iter().all(|s| s.as_u16() == 303), "{statuses:?}");

    let rows = history(&app, id).await;
    assert_eq!(rows.len(), 20, "every edit recorded");
    let ages: Vec<(String, String)> = rows
        .iter()
        .map(|(_, _, changes)| {
            let age = changes.split("age: ").nth(1).unwrap_or_default();
            let (before, after) = age.split_once(" → ").unwrap_or_default();
            (before.to_owned(), after.to_owned())
        })
        .collect();
    // Newest first: each change's "before" is the next older change's "after".
    for pair in ages.windows(2) {
        assert_eq!(pair[0].0, pair[1].1, "{ages:?}");
    }
    assert_eq!(ages.last().map(|a| a.0.as_str()), Some("20"));
}
