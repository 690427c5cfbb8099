//! The average page's bar chart of students per age: computed by the same one query,
//! cached with the average and invalidated with it.

use cachewithredis::config::DatabaseUrl;
use diesel::RunQueryDsl;

use crate::helpers::{header, spawn_app, spawn_second_instance, TestApp};

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

/// The SVG's bars, `(age, count)`, read from each bar's tooltip ("Age 18: 2 students").
fn bars(body: &str) -> Vec<(u32, u32)> {
    body.split(r#"<rect class="bar""#)
        .skip(1)
        .map(|bar| {
            let title = bar.split_once("<title>Age ").expect("a tooltip").1;
            let (age, rest) = title.split_once(": ").unwrap();
            (
                age.parse().unwrap(),
                rest.split_once(" student").unwrap().0.parse().unwrap(),
            )
        })
        .collect()
}

/// The texts of the chart's labels of one class (`age` or `count`), left to right.
fn labels(body: &str, class: &str) -> Vec<u32> {
    body.split(&format!(r#"<text class="{class}""#))
        .skip(1)
        .map(|label| {
            let text = label.split_once('>').expect("a label").1;
            text.split_once("</text>")
                .expect("its end")
                .0
                .parse()
                .unwrap()
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
    assert_eq!(labels(&body, "age"), [18, 19, 20, 21], "{body}");
    assert_eq!(labels(&body, "count"), [2, 1, 0, 1], "{body}");
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
    assert_eq!(
        stored["payload"]["ages"],
        serde_json::json!({"20": 2, "22": 1})
    );

    let from_memory = app.get_from_memory("/students/average-age").await;
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
    let generation = app.redis_get(&app.generation_key()).unwrap_or_default();
    let without_ages = serde_json::json!({
        "generation": generation.parse::<u64>().unwrap_or(0),
        "database": app.database_identity(),
        "payload": {"average_age": 40.0, "student_count": 1},
    });
    let _: () = redis::cmd("SET")
        .arg(app.value_key())
        .arg(without_ages.to_string())
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

#[derive(diesel::QueryableByName, Debug, PartialEq)]
struct AgeCount {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    age: i32,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// `(age, count)` as the maintained counts give them, and as counting `students` gives them.
fn counts_both_ways(app: &TestApp) -> (Vec<AgeCount>, Vec<AgeCount>) {
    let mut conn = app.conn();
    let kept = diesel::sql_query(
        "SELECT age, students AS n FROM student_age_counts WHERE students > 0 ORDER BY age",
    )
    .load(&mut *conn)
    .unwrap();
    let counted =
        diesel::sql_query("SELECT age, COUNT(*) AS n FROM students GROUP BY age ORDER BY age")
            .load(&mut *conn)
            .unwrap();
    (kept, counted)
}

fn execute(app: &TestApp, sql: &str) -> usize {
    diesel::sql_query(sql).execute(&mut *app.conn()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_per_age_counts_stay_exact_whatever_program_writes_the_students() {
    let app = spawn_app().await;
    // The app's bulk insert first (on SQLite it counts its rows itself, without the triggers)...
    app.insert_students(&[40, 40, 41]);
    // ...then plain SQL, as the sqlite3 shell, psql or a script would write it.
    execute(
        &app,
        "INSERT INTO students (name, age) VALUES ('A', 20), ('B', 20), ('C', 21), ('D', 150), ('E', 0)",
    );
    assert_eq!(
        execute(
            &app,
            "UPDATE students SET age = 22 WHERE name IN ('A', 'C')"
        ),
        2
    );
    assert_eq!(
        execute(&app, "UPDATE students SET name = 'Bee' WHERE name = 'B'"),
        1
    );
    assert_eq!(
        execute(&app, "UPDATE students SET age = age WHERE name = 'D'"),
        1
    );
    assert_eq!(execute(&app, "DELETE FROM students WHERE age = 0"), 1);
    // A statement the CHECK refuses leaves the counts as they were.
    assert!(
        diesel::sql_query("UPDATE students SET age = 151 WHERE name = 'D'")
            .execute(&mut *app.conn())
            .is_err()
    );
    let (kept, counted) = counts_both_ways(&app);
    assert_eq!(kept, counted);

    let (_, body) = app.get_text("/students/average-age").await;
    assert_eq!(
        table_rows(&body),
        [(20, 1), (22, 2), (40, 2), (41, 1), (150, 1)],
        "{body}"
    );
    assert!(body.contains(r#"id="average-age">47.86<"#), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn truncating_the_students_on_postgresql_empties_the_counts() {
    let app = spawn_app().await;
    if matches!(app.database.url, DatabaseUrl::Sqlite(_)) {
        return; // SQLite has no TRUNCATE; its DELETE runs the row triggers.
    }
    app.insert_students(&[20, 21]);
    execute(&app, "TRUNCATE students");
    execute(&app, "INSERT INTO students (name, age) VALUES ('A', 30)");
    let (kept, counted) = counts_both_ways(&app);
    assert_eq!(kept, counted);
    assert_eq!(kept, [AgeCount { age: 30, n: 1 }]);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_multi_row_writes_neither_deadlock_nor_lose_a_count() {
    let app = spawn_app().await;
    // Two writers, each inserting the same ages in opposite orders and deleting some, many
    // times over: counters locked in row order would deadlock here on PostgreSQL.
    std::thread::scope(|scope| {
        for writer in 0..2 {
            let app = &app;
            scope.spawn(move || {
                for round in 0..60 {
                    let mut ages: Vec<i32> = (18..=40).collect();
                    if writer == 1 {
                        ages.reverse();
                    }
                    let values: Vec<String> = ages
                        .iter()
                        .map(|age| format!("('w{writer}r{round}', {age})"))
                        .collect();
                    execute(
                        app,
                        &format!(
                            "INSERT INTO students (name, age) VALUES {}",
                            values.join(", ")
                        ),
                    );
                    execute(
                        app,
                        &format!(
                            "DELETE FROM students WHERE name = 'w{writer}r{round}' AND age % 3 = {}",
                            round % 3
                        ),
                    );
                }
            });
        }
    });
    let (kept, counted) = counts_both_ways(&app);
    assert_eq!(kept, counted);
    assert_eq!(
        kept.iter().map(|c| c.n).sum::<i64>(),
        app.student_count(),
        "every row counted once"
    );
}
