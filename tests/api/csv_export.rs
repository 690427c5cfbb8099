//! `/admin/students/export.csv`: every student the list shows, with its filters and in its
//! order, as RFC 4180 CSV that a spreadsheet opens without running anything.

use diesel::RunQueryDsl;

use crate::helpers::{header, spawn_app};

/// The export's records, header first, as the csv crate reads them back.
fn records(body: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(body.as_bytes())
        .records()
        .map(|r| r.expect("valid CSV").iter().map(str::to_owned).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_export_is_quoted_csv_with_formulas_written_as_text() {
    let app = spawn_app().await;
    app.sign_in().await;
    app.insert_named(&[
        ("Ada, \"the first\"", 36),
        ("=HYPERLINK(\"http://evil.example\")", 20),
        ("-2+3", 21),
        ("Zoë\nNewline", 22),
    ]);
    diesel::sql_query("UPDATE students SET created_at = '2026-03-04 05:06:07'")
        .execute(&mut *app.conn())
        .unwrap();
    let first = app.first_student_id();

    let response = app.get("/admin/students/export.csv").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "text/csv; charset=utf-8");
    assert_eq!(
        header(&response, "content-disposition"),
        "attachment; filename=\"students.csv\""
    );
    assert_eq!(header(&response, "cache-control"), "no-store");
    let body = response.text().await.unwrap();
    assert!(
        body.starts_with(&format!(
            "id,name,age,created_at\r\n{first},\"Ada, \"\"the first\"\"\",36,2026-03-04T05:06:07Z\r\n"
        )),
        "{body}"
    );
    let rows = records(&body);
    let names: Vec<&str> = rows.iter().skip(1).map(|r| r[1].as_str()).collect();
    assert_eq!(
        names,
        [
            "Ada, \"the first\"",
            "'=HYPERLINK(\"http://evil.example\")",
            "'-2+3",
            "Zoë\nNewline"
        ]
    );

    // Signed out, there is nothing to download.
    let visitor = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = visitor
        .get(app.url("/admin/students/export.csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_filtered_export_reads_every_batch_in_the_lists_order() {
    let app = spawn_app().await;
    app.sign_in().await;
    // 4,500 students: more than two of the export's batches.
    let ages: Vec<i32> = (0..4_500).map(|i| 18 + (i * 7) % 8).collect();
    app.insert_students(&ages);

    let (_, body) = app.get_text("/admin/students/export.csv").await;
    let rows = records(&body);
    assert_eq!(rows[0], ["id", "name", "age", "created_at"]);
    assert_eq!(rows.len(), 4_501, "every student once");
    let ids: Vec<i64> = rows[1..].iter().map(|r| r[0].parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in id order");

    let (_, body) = app
        .get_text("/admin/students/export.csv?age_min=20&age_max=23&sort=-age")
        .await;
    let rows = records(&body);
    let expected = ages.iter().filter(|&&a| (20..=23).contains(&a)).count();
    assert_eq!(rows.len() - 1, expected);
    let keys: Vec<(i64, i64)> = rows[1..]
        .iter()
        .map(|r| (r[2].parse().unwrap(), r[0].parse().unwrap()))
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] > w[1]),
        "by age then id, both descending, with no row twice"
    );
    assert!(keys.iter().all(|&(age, _)| (20..=23).contains(&age)));

    let (_, body) = app
        .get_text("/admin/students/export.csv?q=student%2012&sort=name")
        .await;
    let rows = records(&body);
    let names: Vec<&str> = rows[1..].iter().map(|r| r[1].as_str()).collect();
    let mut expected: Vec<String> = (0..4_500)
        .map(|i| format!("Student {i}"))
        .filter(|n| n.contains("Student 12"))
        .collect();
    expected.sort();
    assert_eq!(names, expected);
}
