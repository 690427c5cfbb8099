//! What every page shares, as a keyboard or screen-reader user meets it: a skip link first,
//! the navigation with the current page marked, navigation on error pages too, and a fresh
//! form's first field focused (an invalid form's first invalid field instead).

use crate::helpers::spawn_app;

/// The `<a …>` start tags of the main navigation that carry `aria-current`.
fn current_items(body: &str) -> Vec<String> {
    let nav = &body[body
        .find(r#"<nav aria-label="Main">"#)
        .expect("the navigation")..];
    let nav = &nav[..nav.find("</nav>").expect("its end")];
    nav.split("<a ")
        .skip(1)
        .filter(|a| a.contains(r#"aria-current="page""#))
        .map(|a| {
            a.split('>')
                .nth(1)
                .unwrap_or_default()
                .split('<')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// The `id` of every input with `autofocus`.
fn autofocused(body: &str) -> Vec<String> {
    body.split("<input ")
        .skip(1)
        .map(|tag| tag.split('>').next().unwrap_or_default())
        .filter(|tag| tag.contains(" autofocus"))
        .filter_map(|tag| Some(tag.split(r#"id=""#).nth(1)?.split('"').next()?.to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_navigation_marks_the_current_page_and_error_pages_have_it_too() {
    let app = spawn_app().await;
    app.insert_students(&[20]);
    for (path, current) in [
        ("/students", vec!["Students"]),
        ("/students/average-age", vec!["Average age"]),
        ("/admin/login", vec!["Staff area"]),
        ("/nowhere", vec![]),
        ("/students?page=x", vec![]),
    ] {
        let (_, body) = app.get_text(path).await;
        assert!(
            body.contains(r##"<a class="skip-link" href="#content">Skip to content</a>"##),
            "{path}: {body}"
        );
        assert!(body.contains(r#"<main id="content""#), "{path}");
        assert_eq!(current_items(&body), current, "{path}");
        for link in ["/students", "/students/average-age", "/admin/students"] {
            assert!(
                body.contains(&format!(r#"<a href="{link}""#)),
                "{path} links {link}"
            );
        }
    }
    app.sign_in().await;
    for (path, current) in [
        ("/admin/students", "Staff area"),
        ("/admin/cache", "Cache"),
        ("/admin/password", "Change password"),
    ] {
        let (_, body) = app.get_text(path).await;
        assert_eq!(current_items(&body), [current], "{path}");
    }
    let (_, cache) = app.get_text("/admin/cache").await;
    assert!(cache.contains("<dt>Value age</dt>"), "not a student's age");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_form_focuses_its_first_field_and_an_invalid_one_its_first_invalid_field() {
    let app = spawn_app().await;
    let (_, login) = app.get_text("/admin/login").await;
    assert_eq!(autofocused(&login), ["username"]);
    app.sign_in().await;
    let (_, fresh) = app.get_text("/admin/students/new").await;
    assert_eq!(autofocused(&fresh), ["name"]);
    let response = app.add_student("Ada", "old").await;
    assert_eq!(response.status(), 422);
    assert_eq!(autofocused(&response.text().await.unwrap()), ["age"]);
    let response = app.add_student("", "old").await;
    assert_eq!(autofocused(&response.text().await.unwrap()), ["name"]);
    let (_, password) = app.get_text("/admin/password").await;
    assert_eq!(autofocused(&password), ["old_password"]);
}
