//! What another site can make a staff user's browser do, and what a shared cache may keep: a
//! form posted from another origin is refused even with a valid token; over HTTPS, HSTS; pages
//! a signed-in user sees are private to them.

use crate::helpers::{header, spawn_app, spawn_app_with, AppOptions, TestApp};

/// Adds a student with a valid token, naming `origin` (and `referer`) as a browser would.
async fn add_from(app: &TestApp, origin: Option<&str>, referer: Option<&str>) -> reqwest::Response {
    let token = app.csrf_token("/admin/students/new").await;
    let mut request = app.client.post(app.url("/admin/students")).form(&[
        ("name", "Cross"),
        ("age", "30"),
        ("csrf_token", &token),
    ]);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    if let Some(referer) = referer {
        request = request.header("referer", referer);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_form_posted_from_another_site_is_refused_though_its_token_is_valid() {
    let app = spawn_app().await;
    app.sign_in().await;
    for evil in ["https://evil.example", "null", "http://127.0.0.1:1"] {
        let response = add_from(&app, Some(evil), None).await;
        assert_eq!(response.status(), 403, "{evil}");
        assert!(response.text().await.unwrap().contains("another site"));
    }
    assert_eq!(app.student_count(), 0);
    // From this site's own page, as a browser sends it.
    let own = app.address.clone();
    assert_eq!(add_from(&app, Some(&own), None).await.status(), 303);
    // A client that names no origin (curl, an older browser) still needs the token only.
    assert_eq!(add_from(&app, None, None).await.status(), 303);
    assert_eq!(app.student_count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn over_https_a_post_needs_this_sites_origin_or_referer_and_hsts_is_sent() {
    let app = spawn_app_with(AppOptions {
        cookie_secure: true,
        ..Default::default()
    })
    .await;
    let response = app.get("/students").await;
    assert_eq!(
        header(&response, "strict-transport-security"),
        "max-age=31536000"
    );
    // The test talks plain HTTP to the application, as a TLS-terminating proxy does; the host
    // it names is the one the browser saw.
    let host = app.address.trim_start_matches("http://").to_owned();
    let login = |origin: Option<String>, referer: Option<String>| {
        let app = &app;
        async move {
            let token = app.csrf_token("/admin/login").await;
            let mut request = app.client.post(app.url("/admin/login")).form(&[
                ("username", "nobody"),
                ("password", "wrong"),
                ("csrf_token", &token),
            ]);
            if let Some(origin) = origin {
                request = request.header("origin", origin);
            }
            if let Some(referer) = referer {
                request = request.header("referer", referer);
            }
            request.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(login(None, None).await, 403, "neither header");
    assert_eq!(
        login(Some(format!("http://{host}")), None).await,
        403,
        "a plain-HTTP origin"
    );
    assert_eq!(
        login(None, Some("https://evil.example/page".into())).await,
        403,
        "another site's referer"
    );
    assert_eq!(login(Some(format!("https://{host}")), None).await, 200);
    assert_eq!(
        login(None, Some(format!("https://{host}/admin/login"))).await,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_a_signed_in_user_sees_are_private_and_vary_by_cookie() {
    let app = spawn_app().await;
    let anonymous = app.get("/students").await;
    assert_eq!(header(&anonymous, "vary"), "Cookie, Accept-Encoding");
    assert_eq!(header(&anonymous, "cache-control"), "no-cache");
    app.sign_in().await;
    for path in ["/students", "/students/average-age"] {
        let response = app.get(path).await;
        assert!(
            response
                .headers()
                .get_all("vary")
                .iter()
                .any(|v| v.to_str().unwrap_or_default().contains("Cookie")),
            "{path}"
        );
        assert_eq!(
            header(&response, "cache-control"),
            "private, no-store",
            "{path}"
        );
        assert!(
            response.text().await.unwrap().contains("Signed in as"),
            "{path}"
        );
    }
    // The staff area keeps its stricter no-store.
    let admin = app.get("/admin/students").await;
    assert_eq!(header(&admin, "cache-control"), "no-store");
}
