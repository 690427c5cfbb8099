//! The staff list sorted by any column either way and filtered by name and age range
//! (`?sort=`, `?q=`, `?age_min=`, `?age_max=`): the right rows in the right order, the choice
//! kept by the headers, the pager and the export link, and a clear 400 for a bad parameter.

use cachewithredis::models::name_grams::sqlite_tokens_of;
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
    let next = link(&body, "rel=\"next\"").expect("a next page");
    assert!(
        next.starts_with("/admin/students?age_min=25&sort=age&page=2&after="),
        "{next}"
    );
    let body = list(&app, &next).await;
    assert_eq!(names(&body).len(), 10, "60 rows: 50 then 10");
    assert!(body.contains("Page 2 of 2"), "{body}");
    // A page number typed in is read too.
    let body = list(&app, "/admin/students?age_min=25&sort=age&page=2").await;
    assert_eq!(names(&body).len(), 10);
    assert_eq!(
        app.get("/admin/students?age_min=25&page=3").await.status(),
        404
    );
}

/// The ids in the staff table, top to bottom.
fn ids(body: &str) -> Vec<i32> {
    body.split("<input type=\"checkbox\" name=\"ids\" value=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().parse().unwrap())
        .collect()
}

/// The address of the pager's link marked `marker` (`rel="next"`, or its text such as
/// `>Last »`), unescaped.
fn link(body: &str, marker: &str) -> Option<String> {
    let pager = body
        .split("<nav class=\"pager\"")
        .nth(1)?
        .split("</nav>")
        .next()?;
    let anchor = pager.split("<a ").find(|a| a.contains(marker))?;
    let href = anchor.split("href=\"").nth(1)?.split('"').next()?;
    let href = href.replace("&#38;", "&");
    Some(match href.strip_prefix('?') {
        Some(query) => format!("/admin/students?{query}"),
        None => href,
    })
}

/// Every page from `start` on by the pager's `marker` links: each page's ids.
async fn pages(app: &TestApp, start: &str, marker: &str) -> Vec<Vec<i32>> {
    let mut pages = Vec::new();
    let mut at = Some(start.to_owned());
    while let Some(path) = at {
        let body = list(app, &path).await;
        pages.push(ids(&body));
        at = link(&body, marker);
        assert!(pages.len() < 100, "the pager runs in a circle at {path}");
    }
    pages
}

/// A student as the tests compare them: id, name, age, and when added (as text, which sorts).
type Row = (i32, String, i32, String);

/// Whether a filter keeps a row, as the test works it out.
type Keeps<'a> = &'a dyn Fn(&Row) -> bool;

/// All students with the column each order sorts by, straight from the database.
fn every_student(app: &TestApp) -> Vec<Row> {
    use cachewithredis::schema::students::dsl::*;
    use diesel::prelude::*;
    let rows: Vec<(i32, String, i32, chrono::NaiveDateTime)> = students
        .select((id, name, age, created_at))
        .load(&mut *app.conn())
        .unwrap();
    rows.into_iter()
        .map(|(i, n, a, at)| (i, n, a, at.format("%F %T%.f").to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pager_meets_every_match_once_in_order_forwards_and_backwards() {
    let app = spawn_app().await;
    app.sign_in().await;
    // 300 students: five names (first letters apart, so every collation agrees), ages 18–25,
    // three days of adding; ties in every column but the id.
    let names = ["Ann Lee", "Bo Ann", "Cy Dee", "Dee Ann", "Eve Bo"];
    let rows: Vec<(&str, i32)> = (0..300)
        .map(|i| (names[(i * 7 + i / 5) % 5], 18 + (i % 8) as i32))
        .collect();
    app.insert_named(&rows);
    for (remainder, day) in [(0, 3), (1, 1), (2, 2)] {
        diesel::sql_query(format!(
            "UPDATE students SET created_at = '2026-01-0{day} 08:30:00' WHERE id % 3 = {remainder}"
        ))
        .execute(&mut *app.conn())
        .unwrap();
    }
    let all = every_student(&app);
    // Both plans are met: the walk where matches are many (all; ages 20–23, 150; "ann", 180),
    // the collection where few ("dee ann", 60; "ann" at 20–23, 90; "bo", 120, two letters).
    let filters: [(&str, Keeps); 6] = [
        ("", &|_| true),
        ("age_min=20&age_max=23&", &|s| (20..=23).contains(&s.2)),
        ("q=ann&", &|s| s.1.to_lowercase().contains("ann")),
        ("q=dee+ann&", &|s| s.1.to_lowercase().contains("dee ann")),
        ("q=ann&age_min=20&age_max=23&", &|s| {
            s.1.to_lowercase().contains("ann") && (20..=23).contains(&s.2)
        }),
        ("q=bo&", &|s| s.1.to_lowercase().contains("bo")),
    ];
    for sort in [
        "id",
        "-id",
        "name",
        "-name",
        "age",
        "-age",
        "created_at",
        "-created_at",
    ] {
        for (query, keeps) in &filters {
            let mut expected: Vec<_> = all.iter().filter(|s| keeps(s)).cloned().collect();
            expected.sort_by(|a, b| {
                let column = match sort.trim_start_matches('-') {
                    "id" => std::cmp::Ordering::Equal,
                    "name" => a.1.cmp(&b.1),
                    "age" => a.2.cmp(&b.2),
                    _ => a.3.cmp(&b.3),
                };
                column.then(a.0.cmp(&b.0))
            });
            if sort.starts_with('-') {
                expected.reverse();
            }
            let expected: Vec<i32> = expected.iter().map(|s| s.0).collect();
            let start = format!("/admin/students?{query}sort={sort}");
            let forwards = pages(&app, &start, "rel=\"next\"").await;
            assert_eq!(forwards.concat(), expected, "{start}, by Next");
            let body = list(&app, &start).await;
            let count = expected.len();
            let noun = if count == 1 { "student" } else { "students" };
            assert!(
                body.contains(&format!("{count} matching {noun}.")),
                "{start}"
            );
            let page_count = forwards.len();
            if page_count > 1 {
                assert!(body.contains(&format!("Page 1 of {page_count}")), "{start}");
                let last = link(&body, ">Last »").expect("a last page");
                let backwards = pages(&app, &last, "rel=\"prev\"").await;
                let mut backwards_in_order = backwards.clone();
                backwards_in_order.reverse();
                // The same pages from either end: the last page holds the rows page numbers
                // from the front would put there.
                assert_eq!(
                    backwards_in_order, forwards,
                    "{start}, by Previous from Last"
                );
                let body = list(&app, &last).await;
                assert!(body.contains(&format!("Page {page_count} of {page_count}")));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_filter_that_matches_only_far_along_the_order_still_fills_each_page() {
    let app = spawn_app().await;
    app.sign_in().await;
    // 1,500 students of 30, then 1,500 of 20: half match either age, so the list walks the
    // order's index, and on PostgreSQL walks it in chunks; walking from either end meets the
    // whole other half first, more than a chunk.
    let rows: Vec<(String, i32)> = (0..3_000)
        .map(|i| (format!("Student {i:04}"), if i < 1_500 { 30 } else { 20 }))
        .collect();
    let rows: Vec<(&str, i32)> = rows.iter().map(|(n, a)| (n.as_str(), *a)).collect();
    app.insert_named(&rows);
    let all = every_student(&app);
    let of_age =
        |age: i32| -> Vec<i32> { all.iter().filter(|s| s.2 == age).map(|s| s.0).collect() };
    let (twenty, thirty) = (of_age(20), of_age(30));

    let body = list(&app, "/admin/students?age_max=20").await;
    assert!(body.contains("1,500 matching students."), "{body}");
    assert_eq!(ids(&body), twenty[..50]);
    let body = list(&app, "/admin/students?age_min=30&sort=-id").await;
    let mut from_the_end: Vec<i32> = thirty.iter().rev().copied().collect();
    from_the_end.truncate(50);
    assert_eq!(ids(&body), from_the_end);
    // Ids in name order, the same names in order: the walk's other index.
    let body = list(&app, "/admin/students?age_min=20&age_max=20&sort=name").await;
    assert_eq!(ids(&body), twenty[..50]);
    let next = link(&body, "rel=\"next\"").unwrap();
    assert_eq!(ids(&list(&app, &next).await), twenty[50..100]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_search_whose_matches_all_lie_far_along_the_name_order_still_fills_each_page() {
    let app = spawn_app().await;
    app.sign_in().await;
    // A quarter of the names match, so the list walks the name index (on PostgreSQL reading
    // the index alone); but every match sorts after every other name, three thousand rows
    // along, more than a chunk of the other orders' walks.
    let rows: Vec<(String, i32)> = (0..4_000)
        .map(|i| match i % 4 {
            0 => (format!("Zed {i:04}"), 20),
            _ => (format!("Aaron {i:04}"), 20),
        })
        .collect();
    let rows: Vec<(&str, i32)> = rows.iter().map(|(n, a)| (n.as_str(), *a)).collect();
    app.insert_named(&rows);
    let mut zed: Vec<(String, i32)> = every_student(&app)
        .into_iter()
        .filter(|s| s.1.starts_with("Zed"))
        .map(|s| (s.1, s.0))
        .collect();
    zed.sort();
    let zed: Vec<i32> = zed.into_iter().map(|(_, id)| id).collect();

    let body = list(&app, "/admin/students?q=zed&sort=name").await;
    assert!(body.contains("1,000 matching students."), "{body}");
    assert_eq!(ids(&body), zed[..50]);
    let next = list(&app, &link(&body, "rel=\"next\"").unwrap()).await;
    assert_eq!(ids(&next), zed[50..100]);
    let body = list(&app, "/admin/students?q=zed&sort=-name").await;
    let from_the_end: Vec<i32> = zed.iter().rev().take(50).copied().collect();
    assert_eq!(ids(&body), from_the_end);
    let last = list(&app, &link(&body, ">Last »").unwrap()).await;
    assert_eq!(
        ids(&last),
        zed[..50].iter().rev().copied().collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_search_matching_more_than_ten_thousand_says_so_and_still_pages_to_the_end() {
    let app = spawn_app().await;
    app.sign_in().await;
    let rows: Vec<(String, i32)> = (0..10_060).map(|i| (format!("Anna {i:05}"), 20)).collect();
    let rows: Vec<(&str, i32)> = rows.iter().map(|(n, a)| (n.as_str(), *a)).collect();
    app.insert_named(&rows);
    app.insert_named(&[("Bob", 30)]);
    let mut anna: Vec<i32> = every_student(&app)
        .into_iter()
        .filter(|s| s.1.starts_with("Anna"))
        .map(|s| s.0)
        .collect();
    anna.sort();

    let body = list(&app, "/admin/students?q=anna").await;
    assert!(
        body.contains("More than 10,000 matching students."),
        "{body}"
    );
    assert!(
        body.contains("Page 1</span>"),
        "no page count when not counted: {body}"
    );
    assert_eq!(ids(&body), anna[..50]);
    let body = list(&app, &link(&body, "rel=\"next\"").unwrap()).await;
    assert!(body.contains("Page 2</span>"));
    assert_eq!(ids(&body), anna[50..100]);
    let last = list(&app, &link(&body, ">Last »").unwrap()).await;
    assert!(last.contains("Last page</span>"), "{last}");
    assert_eq!(ids(&last), anna[anna.len() - 50..]);
    assert!(link(&last, "rel=\"next\"").is_none());
    let before = list(&app, &link(&last, "rel=\"prev\"").unwrap()).await;
    assert_eq!(ids(&before), anna[anna.len() - 100..anna.len() - 50]);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_writer_keeps_the_name_search_right() {
    let app = spawn_app().await;
    app.sign_in().await;
    // Few matches among many rows: the search reads the names' index (on SQLite an FTS5
    // trigram table that triggers keep, and that a bulk insert fills itself; on PostgreSQL a
    // GIN index of a column of the names' pairs, which a bulk insert fills and a trigger keeps
    // for every other writer).
    let mut rows: Vec<(&str, i32)> = vec![("Filler Person", 20); 400];
    rows.extend([("Xavi Moss", 21), ("Xavi Moss", 22), ("Xavi Moss", 23)]);
    rows.push(("Zoë Adams", 24));
    app.insert_named(&rows);
    let all = every_student(&app);
    let xavi: Vec<i32> = all
        .iter()
        .filter(|s| s.1 == "Xavi Moss")
        .map(|s| s.0)
        .collect();
    let filler = all[0].0;
    let edit = |id: i32, name: &'static str| {
        let app = &app;
        async move {
            assert_eq!(app.edit_student(id, name, "20").await.status(), 303);
        }
    };
    edit(filler, "Xavier Mossley").await;
    edit(xavi[0], "Someone Else").await;
    let token = app
        .csrf_token(&format!("/admin/students/{}/delete", xavi[1]))
        .await;
    let response = app
        .post_form(
            &format!("/admin/students/{}/delete", xavi[1]),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(response.status(), 303);
    // Added through the form after the bulk insert: the batch's deferral of the index is over.
    assert_eq!(app.add_student("Xavi Newcomer", "24").await.status(), 303);
    // Writers outside the application: a new name, and a new row.
    diesel::sql_query(format!(
        "UPDATE students SET name = 'Mrs Xavi' WHERE id = {}",
        all[1].0
    ))
    .execute(&mut *app.conn())
    .unwrap();
    diesel::sql_query("INSERT INTO students (name, age) VALUES ('Xavi Outsider', 25)")
        .execute(&mut *app.conn())
        .unwrap();
    app.await_mark_followed();
    let outsider = every_student(&app)
        .into_iter()
        .find(|s| s.1 == "Xavi Outsider")
        .expect("inserted")
        .0;

    let body = list(&app, "/admin/students?q=xavi").await;
    let newcomer = every_student(&app)
        .into_iter()
        .find(|s| s.1 == "Xavi Newcomer")
        .expect("added")
        .0;
    let mut expected = vec![filler, all[1].0, xavi[2], newcomer, outsider];
    expected.sort();
    assert_eq!(ids(&body), expected, "{body}");
    assert!(body.contains("5 matching students."));
    let body = list(&app, "/admin/students?q=someone").await;
    assert_eq!(ids(&body), vec![xavi[0]]);
    // One or two characters have no trigram: on SQLite another index serves them (an FTS5
    // table of each name's characters and pairs, in hex, keeping case), kept by the same
    // writers, in whatever case the search is typed.
    for q in ["x", "xa", "XA", "Xa"] {
        let body = list(&app, &format!("/admin/students?q={q}")).await;
        assert_eq!(ids(&body), expected, "q={q}: {body}");
    }
    let zoe = every_student(&app)
        .into_iter()
        .find(|s| s.1 == "Zoë Adams")
        .expect("inserted")
        .0;
    for q in ["ë", "oë", "ë%20"] {
        let body = list(&app, &format!("/admin/students?q={q}")).await;
        assert_eq!(ids(&body), vec![zoe], "q={q}: {body}");
    }
    let body = list(&app, "/admin/students?q=zz").await;
    assert!(body.contains("0 matching students."), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_search_finds_what_the_like_alone_finds_whoever_wrote_the_names() {
    let app = spawn_app().await;
    app.sign_in().await;
    // Names whose lowering is not ASCII's (which PostgreSQL's lower() does by the database's
    // locale, and the index's keys must follow), outside the Basic Multilingual Plane, with
    // punctuation and spaces; written by the bulk insert (whose keys the application makes on
    // PostgreSQL) and by SQL from outside (whose keys a trigger makes).
    let tricky = [
        "Zoë ADAMS",
        "ÅSA ÖBERG",
        "İlkay Şahin",
        "\u{212A}elvin Sign",
        "Ρhoebe ΣΟΦΙΑ",
        "ǅemal Ǆ",
        "Emoji 😀 Oe",
        "O'Neil-Smith Jr.",
        "a",
    ];
    let mut rows: Vec<(&str, i32)> = vec![("Filler Person", 20); 300];
    rows.extend(tricky.iter().map(|&name| (name, 30)));
    app.insert_as_the_import(&rows);
    for name in tricky {
        diesel::sql_query(
            "INSERT INTO students (name, age) VALUES ($1, 31)"
                .replace("$1", &format!("'{}'", name.replace('\'', "''"))),
        )
        .execute(&mut *app.conn())
        .unwrap();
    }
    app.await_mark_followed();
    if let cachewithredis::config::DatabaseUrl::Postgres(_) = &app.database.url {
        let differing: Vec<(i32, String, i32)> = diesel::sql_query(
            "SELECT id, name, age FROM students \
             WHERE name_grams IS DISTINCT FROM students_name_grams(lower(name))",
        )
        .load::<RawRow>(&mut *app.conn())
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.name, r.age))
        .collect();
        assert!(
            differing.is_empty(),
            "keys unlike the trigger's: {differing:?}"
        );
        // Keys written by hand are made again from the name.
        diesel::sql_query("UPDATE students SET name_grams = '{}' WHERE age = 31")
            .execute(&mut *app.conn())
            .unwrap();
        let emptied: Vec<RawRow> =
            diesel::sql_query("SELECT id, name, age FROM students WHERE name_grams = '{}'")
                .load(&mut *app.conn())
                .unwrap();
        assert_eq!(emptied.len(), 0);
    }
    if let cachewithredis::config::DatabaseUrl::Sqlite(_) = &app.database.url {
        // The bulk insert makes the grams' tokens itself: the very tokens the view (which the
        // triggers read, and a delete spells) makes, or a contentless FTS5 table keeps some.
        let rows: Vec<GramsRow> = diesel::sql_query(
            "SELECT s.name AS name, coalesce(v.grams, '') AS grams \
             FROM students AS s JOIN students_name_grams_source AS v ON v.id = s.id",
        )
        .load(&mut *app.conn())
        .unwrap();
        assert_eq!(rows.len(), 300 + 2 * tricky.len());
        for row in rows {
            assert_eq!(
                sqlite_tokens_of(&row.name),
                row.grams,
                "tokens of {:?}",
                row.name
            );
        }
    }
    let needles = [
        "zoë",
        "ZOË",
        "ë",
        "åsa",
        "ö",
        "i̇lkay",
        "ilkay",
        "şa",
        "kelvin",
        "k",
        "σοφια",
        "ς",
        "phoebe",
        "ǆ",
        "ǅe",
        "😀",
        "😀 o",
        "oe",
        "'n",
        "-s",
        "jr.",
        "a",
        "e a",
        "filler",
    ];
    for needle in needles {
        let pattern = format!("%{}%", needle.to_lowercase());
        let expected: Vec<i32> = diesel::sql_query(format!(
            "SELECT id, name, age FROM students WHERE lower(name) LIKE '{}' ORDER BY id",
            pattern.replace('\'', "''")
        ))
        .load::<RawRow>(&mut *app.conn())
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
        let query = serde_urlencoded::to_string([("q", needle)]).unwrap();
        let body = list(&app, &format!("/admin/students?{query}")).await;
        let mut found = ids(&body);
        if expected.len() <= 50 {
            assert_eq!(found, expected, "staff list, q={needle:?}");
        } else {
            found.truncate(50);
            assert_eq!(found, expected[..50], "staff list, q={needle:?}");
            // A page number typed in reads by OFFSET, through the same indexes.
            let typed = list(&app, &format!("/admin/students?{query}&page=2")).await;
            let second = &expected[50..expected.len().min(100)];
            assert_eq!(ids(&typed), second, "staff list page 2, q={needle:?}");
        }
        let (_, public) = app.get_text(&format!("/students?{query}")).await;
        let total = format!(">{} student", expected.len());
        assert!(
            public.contains(&total),
            "public list, q={needle:?}: {total} in {public}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bulk_insert_larger_than_one_statement_binds_is_stored_whole_and_searchable() {
    let app = spawn_app().await;
    app.sign_in().await;
    // The bulk insert writes 10,000 rows a statement: 25,000 take three, in one transaction.
    let rows: Vec<(String, i32)> = (0..25_000)
        .map(|i| (format!("Bulk {i:05}"), 20 + i % 3))
        .collect();
    let rows: Vec<(&str, i32)> = rows.iter().map(|(n, a)| (n.as_str(), *a)).collect();
    app.insert_as_the_import(&rows);
    let body = list(&app, "/admin/students?q=bulk%202499").await;
    assert!(body.contains("10 matching students."), "{body}");
    let body = list(&app, "/admin/students?q=k%2024999").await;
    assert!(body.contains("1 matching student."), "{body}");
    let (_, average) = app.get_text("/students/average-age").await;
    assert!(average.contains("25,000"), "{average}");
}

#[derive(diesel::QueryableByName)]
struct GramsRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    grams: String,
}

#[derive(diesel::QueryableByName)]
struct RawRow {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    id: i32,
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    age: i32,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_place_in_the_list_that_the_pager_did_not_give_answers_400() {
    let app = spawn_app().await;
    app.sign_in().await;
    for query in [
        "after=abc",
        "sort=name&after=12",
        "sort=age&after=12:old",
        "sort=created_at&before=3:yesterday",
        "after=1&before=2",
        "page=last&after=1",
        "page=first",
    ] {
        let response = app.get(&format!("/admin/students?{query}")).await;
        assert_eq!(response.status(), 400, "{query}");
    }
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

#[tokio::test(flavor = "multi_thread")]
async fn a_search_is_counted_once_for_its_pages_and_orders_until_a_write() {
    let app = spawn_app().await;
    app.sign_in().await;
    let mut rows = vec![("Filler Person", 30); 200];
    rows.extend(vec![("Anna Maria", 20); 120]);
    app.insert_named(&rows);
    let count_key = app.key(&format!(
        "students:staff_count:50:20::{}",
        cachewithredis::models::cached::hex("anna")
    ));
    let stored = |app: &TestApp| -> Option<i64> {
        let value: serde_json::Value = serde_json::from_str(&app.redis_get(&count_key)?).ok()?;
        value["payload"]["matches"]["count"].as_i64()
    };
    assert_eq!(stored(&app), None);
    let body = list(&app, "/admin/students?q=anna&age_min=20").await;
    assert!(body.contains("120 matching students."), "{body}");
    // The count is a cached value of its own, which the search's other pages and orders read.
    assert_eq!(stored(&app), Some(120));
    for path in [
        "/admin/students?q=anna&age_min=20&sort=-name",
        "/admin/students?q=anna&age_min=20&sort=age&page=last",
    ] {
        let body = list(&app, path).await;
        assert!(body.contains("120 matching students."), "{path}: {body}");
    }
    // A write through the staff form, and one from outside the application: each is counted
    // at once, as no stale value is served after a write has answered.
    assert_eq!(app.add_student("Annabel New", "21").await.status(), 303);
    let body = list(&app, "/admin/students?q=anna&age_min=20&sort=name").await;
    assert!(body.contains("121 matching students."), "{body}");
    assert_eq!(names(&body)[0], "Anna Maria");
    diesel::sql_query("INSERT INTO students (name, age) VALUES ('Hanna Outsider', 25)")
        .execute(&mut *app.conn())
        .unwrap();
    app.await_mark_followed();
    let body = list(&app, "/admin/students?q=anna&age_min=20&sort=-name").await;
    assert!(body.contains("122 matching students."), "{body}");
    assert_eq!(names(&body)[0], "Hanna Outsider");
    assert_eq!(stored(&app), Some(122));
}
