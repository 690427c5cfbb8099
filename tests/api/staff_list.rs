//! The staff list sorted by any column either way and filtered by name and age range
//! (`?sort=`, `?q=`, `?age_min=`, `?age_max=`): the right rows in the right order, the choice
//! kept by the headers, the pager and the export link, and a clear 400 for a bad parameter.

use diesel::RunQueryDsl;

use crate::helpers::{spawn_app, TestApp};

/// The names in the staff table, top to bottom (the third cell of each row).
fn names(body: &str) -> Vec<String> {
    body.split("<tr>\n      <td><input type=\"checkbox\"")
        .skip(1)
        .map(|row| {
            row.split("<td>")
                .nth(1)
                .and_then(|cell| cell.split("</td>").next())
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

async fn list(app: &TestApp, path: &str) -> String {
    let (status, body) = app.get_text(path).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn staff_sort_by_each_column_either_way_and_the_headers_say_so() {
    let app = spawn_app().await;
    app.sign_in().await;
    // Ids 1, 2, 3 in this order; added on days 3, 1, 2 (as an import of old records would).
    app.insert_named(&[("Cleo", 30), ("Ada", 20), ("Bea", 25)]);
    for (name, day) in [("Cleo", 3), ("Ada", 1), ("Bea", 2)] {
        diesel::sql_query(format!(
            "UPDATE students SET created_at = '2026-01-0{day} 08:30:00' WHERE name = '{name}'"
        ))
        .execute(&mut *app.conn())
        .unwrap();
    }
    for (sort, expected) in [
        ("", ["Cleo", "Ada", "Bea"]),
        ("?sort=id", ["Cleo", "Ada", "Bea"]),
        ("?sort=-id", ["Bea", "Ada", "Cleo"]),
        ("?sort=name", ["Ada", "Bea", "Cleo"]),
        ("?sort=-name", ["Cleo", "Bea", "Ada"]),
        ("?sort=age", ["Ada", "Bea", "Cleo"]),
        ("?sort=-age", ["Cleo", "Bea", "Ada"]),
        ("?sort=created_at", ["Ada", "Bea", "Cleo"]),
        ("?sort=-created_at", ["Cleo", "Bea", "Ada"]),
    ] {
        let body = list(&app, &format!("/admin/students{sort}")).await;
        assert_eq!(names(&body), expected, "{sort}");
    }
    let body = list(&app, "/admin/students?sort=created_at").await;
    assert!(
        body.contains(
            "aria-sort=\"ascending\"><a class=\"sort-link\" href=\"?sort=-created_at\">Added"
        ),
        "the sorted column says so and reverses: {body}"
    );
    assert!(
        body.contains("<a class=\"sort-link\" href=\"?sort=name\">Name"),
        "another column sorts ascending first"
    );
    assert!(body.contains("<time datetime=\"2026-01-01T08:30:00Z\">2026-01-01 08:30</time>"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_search_and_the_age_range_combine_and_every_link_keeps_them() {
    let app = spawn_app().await;
    app.sign_in().await;
    // 60 of each age 20 and 30, half of them named "Ann …".
    let many: Vec<(String, i32)> = (0..120)
        .map(|i| {
            let name = if i % 4 < 2 { "Ann" } else { "Bo" };
            (format!("{name} {i:03}"), if i % 2 == 0 { 20 } else { 30 })
        })
        .collect();
    let many: Vec<(&str, i32)> = many.iter().map(|(n, a)| (n.as_str(), *a)).collect();
    app.insert_named(&many);

    let body = list(&app, "/admin/students?age_min=25").await;
    assert!(body.contains("60 matching students."), "{body}");
    let body = list(&app, "/admin/students?age_max=20&age_min=20").await;
    assert!(body.contains("60 matching students."), "{body}");
    let body = list(&app, "/admin/students?age_min=21&age_max=29").await;
    assert!(body.contains("0 matching students."), "{body}");

    let body = list(&app, "/admin/students?q=ann&age_min=25&sort=-name").await;
    assert!(body.contains("30 matching students."), "{body}");
    let shown = names(&body);
    assert_eq!(shown.len(), 30);
    assert_eq!(shown.first().map(String::as_str), Some("Ann 117"));
    assert!(shown.iter().all(|n| n.starts_with("Ann ")));
    // The form shows the filter as it was set, and keeps the order.
    assert!(body.contains("name=\"q\" type=\"search\" value=\"ann\""));
    assert!(body.contains(
        "name=\"age_min\" type=\"number\" min=\"0\" max=\"150\" inputmode=\"numeric\" value=\"25\""
    ));
    assert!(body.contains("<input type=\"hidden\" name=\"sort\" value=\"-name\">"));
    // The headers keep the filter; the export link keeps the filter and the order.
    assert!(
        body.contains("href=\"?q=ann&#38;age_min=25&#38;sort=age\">Age"),
        "{body}"
    );
    assert!(
        body.contains("href=\"/admin/students/export.csv?q=ann&#38;age_min=25&#38;sort=-name\"")
    );

    // Past one page, the pager keeps everything.
    let body = list(&app, "/admin/students?age_min=25&sort=age").await;
    assert!(
        body.contains("href=\"?age_min=25&#38;sort=age&#38;page=2\""),
        "{body}"
    );
    let body = list(&app, "/admin/students?age_min=25&sort=age&page=2").await;
    assert_eq!(names(&body).len(), 10, "60 rows: 50 then 10");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_list_parameter_answers_400_saying_which() {
    let app = spawn_app().await;
    app.sign_in().await;
    for (query, message) in [
        ("sort=size", "Sort by id, name, age or created_at"),
        ("sort=--age", "Sort by id, name, age or created_at"),
        (
            "age_min=abc",
            "age_min must be a whole number from 0 to 150",
        ),
        ("age_min=-1", "age_min must be a whole number from 0 to 150"),
        (
            "age_max=151",
            "age_max must be a whole number from 0 to 150",
        ),
        (
            "age_min=30&age_max=20",
            "The lowest age (30) is above the highest (20).",
        ),
        ("page=0", "The page number must be a whole number"),
    ] {
        // The export takes the list's filter and order, not its page.
        let paths: &[&str] = if query.starts_with("page") {
            &["/admin/students"]
        } else {
            &["/admin/students", "/admin/students/export.csv"]
        };
        for &path in paths {
            let response = app.get(&format!("{path}?{query}")).await;
            assert_eq!(response.status(), 400, "{path}?{query}");
            if path == "/admin/students" {
                let body = response.text().await.unwrap();
                assert!(body.contains(message), "{query}: {body}");
            }
        }
    }
    // The public list offers only the orders of the columns it shows.
    let response = app.get("/students?sort=created_at").await;
    assert_eq!(response.status(), 400);
}
