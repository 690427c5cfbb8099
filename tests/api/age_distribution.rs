//! The average page's bar chart of students per age: computed by the same one aggregate,
//! cached with the average and invalidated with it.

use crate::helpers::{header, spawn_app, spawn_second_instance};

/// The rows of the chart's table, `(age, count)`.
fn table_rows(body: &str) -> Vec<(u32, u32)> {
    let table = &body[body.find(r#"id="age-table""#).expect("the table")..];
    let table = &table[..table.find("</table>").expect("table end")];
    table
        .split(r#"<tr><th scope="row">"#)
        .skip(1)
        .map(|row| {
            let (age, rest) = row.split_once("</th><td>").expect("a row");
            let count = rest.split_once("</td>").expect("a cell").0;
            (age.parse().unwrap(), count.parse().unwrap())
        })
        .collect()
}

/// The SVG's bars, `(age, count)`, read from each bar's tooltip.
fn bars(body: &str) -> Vec<(u32, u32)> {
    body.split(r#"<rect class="bar""#)
        .skip(1)
        .map(|bar| {
            let title = bar.split_once("<title>Age ").expect("a tooltip").1;
            let (age, rest) = title.split_once(": ").unwrap();
            (
                age.parse().unwrap(),
                rest.split_once('<').unwrap().0.parse().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_average_page_shows_a_bar_per_age_and_a_table_with_the_counts() {
    let app = spawn_app().await;
    app.insert_students(&[18, 18, 19, 21]);
    let (_, body) = app.get_text("/students/average-age").await;
    assert!(body.contains(r#"id="average-age">19.00<"#), "{body}");
    assert_eq!(table_rows(&body), [(18, 2), (19, 1), (21, 1)]);
    assert_eq!(
        bars(&body),
        [(18, 2), (19, 1), (20, 0), (21, 1)],
        "every age in the range, an empty one included"
    );
    // Each bar is labelled with its age and its count, so the chart reads without colour.
    assert!(body.contains(r#"text-anchor="middle">20</text>"#), "{body}");
    assert!(
        body.contains("the most common age is 18 (2 students)"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_distribution_is_stored_with_the_average_as_readable_json_and_served_on_hits() {
    let app = spawn_app().await;
    let other = spawn_second_instance(&app).await;
    app.insert_students(&[20, 20, 22]);
    let miss = app.get("/students/average-age").await;
    assert_eq!(header(&miss, "x-cache"), "MISS");
    let stored: serde_json::Value =
        serde_json::from_str(&app.redis_get(&app.value_key()).expect("stored")).unwrap();
    assert_eq!(stored["ages"], serde_json::json!({"20": 2, "22": 1}));

    let from_memory = app.get("/students/average-age").await;
    assert_eq!(header(&from_memory, "x-cache-tier"), "memory");
    assert_eq!(
        table_rows(&from_memory.text().await.unwrap()),
        [(20, 2), (22, 1)]
    );
    let from_redis = other.get("/students/average-age").await;
    assert_eq!(header(&from_redis, "x-cache-tier"), "redis");
    assert_eq!(
        table_rows(&from_redis.text().await.unwrap()),
        [(20, 2), (22, 1)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_through_the_staff_form_changes_the_chart_at_once() {
    let app = spawn_app().await;
    app.insert_students(&[30]);
    app.sign_in().await;
    let (_, before) = app.get_text("/students/average-age").await;
    assert_eq!(table_rows(&before), [(30, 1)]);
    assert_eq!(app.add_student("Ada", "31").await.status(), 303);
    let after = app.get("/students/average-age").await;
    assert_eq!(header(&after, "x-cache"), "MISS");
    assert_eq!(table_rows(&after.text().await.unwrap()), [(30, 1), (31, 1)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cached_value_without_the_distribution_is_recomputed_not_shown_without_its_chart() {
    let app = spawn_app().await;
    app.insert_students(&[40]);
    let _: () = redis::cmd("SET")
        .arg(app.value_key())
        .arg(r#"{"average_age": 40.0, "student_count": 1, "generation": 0}"#)
        .query(&mut app.redis_direct())
        .unwrap();
    let response = app.get("/students/average-age").await;
    assert_eq!(header(&response, "x-cache"), "MISS");
    assert_eq!(table_rows(&response.text().await.unwrap()), [(40, 1)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_table_shows_no_chart() {
    let app = spawn_app().await;
    let (_, body) = app.get_text("/students/average-age").await;
    assert!(body.contains("No students yet"));
    assert!(!body.contains("age-chart"), "{body}");
}

#[derive(diesel::QueryableByName)]
struct IndexedColumns {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
}

#[tokio::test(flavor = "multi_thread")]
async fn an_index_on_students_age_covers_the_aggregate_on_both_backends() {
    use cachewithredis::db::DbConn;
    use diesel::RunQueryDsl;
    let app = spawn_app().await;
    let mut conn = app.conn();
    let indexes: Vec<IndexedColumns> = match &mut *conn {
        DbConn::Sqlite(c) => diesel::sql_query(
            "SELECT group_concat(ii.name) AS name FROM sqlite_master m, pragma_index_info(m.name) ii \
             WHERE m.type = 'index' AND m.tbl_name = 'students' GROUP BY m.name",
        )
        .load(c),
        DbConn::Pg(c) => diesel::sql_query(
            "SELECT indexdef AS name FROM pg_indexes WHERE tablename = 'students'",
        )
        .load(c),
    }
    .unwrap();
    assert!(
        indexes
            .iter()
            .any(|i| i.name == "age" || i.name.ends_with("USING btree (age)")),
        "{:?}",
        indexes.iter().map(|i| &i.name).collect::<Vec<_>>()
    );
}
