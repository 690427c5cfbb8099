//! The public list searched by name and sorted by name or age (`?q=`, `?sort=`): the right rows
//! in the right order, the choice kept in every link, numbered pages, and each such page cached
//! under the same invalidation as the rest (no reader sees a page from before a write).

use crate::helpers::{header, spawn_app, spawn_second_instance};

/// The names in the table, top to bottom.
fn names(body: &str) -> Vec<String> {
    body.split("<tr><td>")
        .skip(1)
        .map(|row| row.split("</td>").next().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn visitors_search_by_name_and_sort_by_name_or_age_either_way() {
    let app = spawn_app().await;
    app.insert_named(&[("Zoe", 30), ("Ada", 19), ("Bob", 25), ("Adam", 40)]);
    let list = |path: &'static str| {
        let app = &app;
        async move {
            let (status, body) = app.get_text(path).await;
            assert_eq!(status, 200, "{path}");
            body
        }
    };
    assert_eq!(
        names(&list("/students").await),
        ["Zoe", "Ada", "Bob", "Adam"]
    );
    assert_eq!(
        names(&list("/students?sort=name").await),
        ["Ada", "Adam", "Bob", "Zoe"]
    );
    assert_eq!(
        names(&list("/students?sort=-name").await),
        ["Zoe", "Bob", "Adam", "Ada"]
    );
    assert_eq!(
        names(&list("/students?sort=age").await),
        ["Ada", "Bob", "Zoe", "Adam"]
    );
    assert_eq!(
        names(&list("/students?sort=-age").await),
        ["Adam", "Zoe", "Bob", "Ada"]
    );

    // Case does not matter; the summary says what was searched.
    let found = list("/students?q=aD").await;
    assert_eq!(names(&found), ["Ada", "Adam"]);
    assert!(
        found.contains("2 students whose name contains “aD”"),
        "{found}"
    );
    assert!(found.contains(r#"value="aD""#), "the search box keeps it");
    let both = list("/students?q=ad&sort=-name").await;
    assert_eq!(names(&both), ["Adam", "Ada"]);
    assert!(both.contains(r#"<input type="hidden" name="sort" value="-name">"#));
    let nothing = list("/students?q=xyz").await;
    assert!(
        nothing.contains("No student’s name contains “xyz”."),
        "{nothing}"
    );

    // The headers say the order and link to the other one, keeping the search.
    let by_name = list("/students?q=ad&sort=name").await;
    assert!(
        by_name.contains(r#"<th scope="col" aria-sort="ascending"><a class="sort-link" href="?q=ad&#38;sort=-name">Name"#),
        "{by_name}"
    );
    assert!(
        by_name.contains(r#"href="?q=ad&#38;sort=age">Age"#),
        "{by_name}"
    );

    for bad in ["/students?sort=height", "/students?sort=-id"] {
        assert_eq!(app.get(bad).await.status(), 400, "{bad}");
    }
    let long = format!("/students?q={}", "a".repeat(101));
    assert_eq!(app.get(&long).await.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_are_numbered_with_the_first_and_the_last_and_keep_the_order() {
    let app = spawn_app().await;
    let many: Vec<(String, i32)> = (0..1_234)
        .map(|i| (format!("S{i:04}"), 18 + i % 8))
        .collect();
    let many: Vec<(&str, i32)> = many.iter().map(|(n, a)| (n.as_str(), *a)).collect();
    app.insert_named(&many);
    let (_, body) = app.get_text("/students?sort=age&page=10").await;
    assert!(body.contains("1,234 students in total"), "{body}");
    for (page, label) in [
        (1, "Page 1"),
        (8, "Page 8"),
        (12, "Page 12"),
        (25, "Page 25"),
    ] {
        assert!(
            body.contains(&format!(
                r#"<a href="?sort=age&#38;page={page}" aria-label="{label}">{page}</a>"#
            )),
            "page {page}: {body}"
        );
    }
    assert!(body.contains(r#"<span aria-current="page" aria-label="Page 10 of 25">10</span>"#));
    assert!(
        !body.contains("page=5\""),
        "pages far from this one are left out"
    );
    assert_eq!(body.matches("<li aria-hidden=\"true\">…</li>").count(), 2);
    let (_, average) = app.get_text("/students/average-age").await;
    assert!(average.contains(r#"<strong id="student-count">1,234</strong>"#));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_searched_or_sorted_page_is_cached_and_a_write_shows_on_it_at_once_on_every_instance() {
    let app = spawn_app().await;
    let other = spawn_second_instance(&app).await;
    app.insert_named(&[("Bea", 20), ("Cy", 21), ("Abe", 22)]);
    app.sign_in().await;
    for path in ["/students?sort=name", "/students?q=b&sort=-age"] {
        for instance in [&app, &other] {
            instance.get(path).await;
            let again = instance.get(path).await;
            assert_eq!(header(&again, "x-cache"), "HIT", "{path}");
        }
    }
    let response = app.add_student("Aaron b", "99").await;
    assert_eq!(response.status(), 303);
    // The write has answered: no instance may show a page from before it.
    for instance in [&app, &other] {
        let (_, by_name) = instance.get_text("/students?sort=name").await;
        assert_eq!(names(&by_name)[0], "Aaron b");
        let (_, searched) = instance.get_text("/students?q=b&sort=-age").await;
        assert_eq!(names(&searched), ["Aaron b", "Abe", "Bea"]);
    }
}
