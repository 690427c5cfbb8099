use crate::helpers::{
    header, session_cookie, set_cookie, spawn_app, spawn_app_with, AppOptions, STAFF_PASSWORD,
    STAFF_USER,
};

/// Every staff route but the login page, with a method.
const GUARDED_GETS: &[&str] = &[
    "/admin/students",
    "/admin/students/new",
    "/admin/students/1/edit",
    "/admin/students/1/delete",
];
const GUARDED_POSTS: &[&str] = &[
    "/admin/students",
    "/admin/students/1",
    "/admin/students/1/delete",
    "/admin/logout",
];

#[tokio::test(flavor = "multi_thread")]
async fn a_get_without_a_session_is_sent_to_sign_in_and_comes_back_after() {
    let app = spawn_app().await;
    app.insert_students(&[20]);
    for path in GUARDED_GETS {
        let response = app.get(path).await;
        assert_eq!(response.status(), 303, "{path}");
        let location = header(&response, "location");
        let expected = format!("/admin/login?next={}", path.replace('/', "%2F"));
        assert_eq!(location, expected, "{path}");
    }
    app.create_staff(STAFF_USER, STAFF_PASSWORD);
    let response = app
        .try_sign_in(STAFF_USER, STAFF_PASSWORD, "/admin/students/1/edit")
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(header(&response, "location"), "/admin/students/1/edit");
    assert_eq!(app.get("/admin/students/1/edit").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_without_a_session_is_forbidden_and_changes_nothing() {
    let app = spawn_app().await;
    app.insert_students(&[20]);
    for path in GUARDED_POSTS {
        let response = app.post_form(path, &[("name", "X"), ("age", "1")]).await;
        assert_eq!(response.status(), 403, "{path}");
    }
    let (_, body) = app.get_text("/students").await;
    assert!(body.contains("<td>Student 0</td><td class=\"num\">20</td>"));
    assert_eq!(app.student_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_or_unknown_user_gets_one_generic_message() {
    let app = spawn_app().await;
    app.create_staff(STAFF_USER, STAFF_PASSWORD);
    let wrong_password = app.try_sign_in(STAFF_USER, "nope", "").await;
    assert_eq!(wrong_password.status(), 200);
    let wrong_password = wrong_password.text().await.unwrap();
    let unknown_user = app
        .try_sign_in("nobody", STAFF_PASSWORD, "")
        .await
        .text()
        .await
        .unwrap();
    let message = "Please enter a correct username and password.";
    assert!(wrong_password.contains(message) && unknown_user.contains(message));
    assert!(
        wrong_password.contains(&format!("value=\"{STAFF_USER}\"")),
        "username kept"
    );
    assert_eq!(
        app.get("/admin/students").await.status(),
        303,
        "still signed out"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn five_failures_from_one_address_lock_it_for_a_while_with_429() {
    let app = spawn_app().await;
    app.create_staff(STAFF_USER, STAFF_PASSWORD);
    for _ in 0..5 {
        assert_eq!(app.try_sign_in(STAFF_USER, "wrong", "").await.status(), 200);
    }
    let response = app.try_sign_in(STAFF_USER, STAFF_PASSWORD, "").await;
    assert_eq!(response.status(), 429, "even the right password waits");
    let retry_after: u64 = header(&response, "retry-after").parse().unwrap();
    assert!((1..=900).contains(&retry_after));
    assert!(response.text().await.unwrap().contains("Try again in"));
}

#[tokio::test(flavor = "multi_thread")]
async fn five_failures_from_one_address_lock_out_other_usernames_too() {
    let app = spawn_app().await;
    app.create_staff(STAFF_USER, STAFF_PASSWORD);
    for i in 0..5 {
        app.try_sign_in(&format!("guess{i}"), "wrong", "").await;
    }
    assert_eq!(
        app.try_sign_in(STAFF_USER, STAFF_PASSWORD, "")
            .await
            .status(),
        429
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn next_never_leads_off_the_site() {
    let app = spawn_app().await;
    app.create_staff(STAFF_USER, STAFF_PASSWORD);
    for evil in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
    ] {
        let response = app.try_sign_in(STAFF_USER, STAFF_PASSWORD, evil).await;
        assert_eq!(response.status(), 303, "{evil}");
        assert_eq!(header(&response, "location"), "/admin/students", "{evil}");
        let token = app.csrf_token("/admin/students/new").await;
        app.post_form("/admin/logout", &[("csrf_token", &token)])
            .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_out_ends_the_session() {
    let app = spawn_app().await;
    app.sign_in().await;
    let (_, page) = app.get_text("/admin/students").await;
    assert!(page.contains("Signed in as <strong>staff</strong>"));
    let token = app.csrf_token("/admin/students/new").await;
    let response = app
        .post_form("/admin/logout", &[("csrf_token", &token)])
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(header(&response, "location"), "/admin/login");
    assert_eq!(app.get("/admin/students").await.status(), 303);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_wrong_csrf_token_is_refused_on_every_form() {
    let app = spawn_app().await;
    app.sign_in().await;
    app.insert_students(&[20]);
    let forms: &[(&str, &[(&str, &str)])] = &[
        ("/admin/students", &[("name", "X"), ("age", "1")]),
        ("/admin/students/1", &[("name", "X"), ("age", "1")]),
        ("/admin/students/1/delete", &[]),
        ("/admin/logout", &[]),
    ];
    for (path, fields) in forms {
        for token in [None, Some("wrong"), Some("")] {
            let mut fields = fields.to_vec();
            if let Some(token) = token {
                fields.push(("csrf_token", token));
            }
            let response = app.post_form(path, &fields).await;
            assert_eq!(response.status(), 403, "{path} with {token:?}");
            assert!(response.text().await.unwrap().contains("CSRF"), "{path}");
        }
    }
    assert_eq!(app.student_count(), 1);
    let (_, body) = app.get_text("/students").await;
    assert!(body.contains("Student 0"), "nothing changed");
    assert_eq!(
        app.get("/admin/students").await.status(),
        200,
        "still signed in"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_login_form_is_csrf_protected_too() {
    let app = spawn_app().await;
    app.create_staff(STAFF_USER, STAFF_PASSWORD);
    let response = app
        .post_form(
            "/admin/login",
            &[("username", STAFF_USER), ("password", STAFF_PASSWORD)],
        )
        .await;
    assert_eq!(response.status(), 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_session_cookie_is_http_only_and_same_site_lax_and_made_at_sign_in() {
    let app = spawn_app().await;
    app.create_staff(STAFF_USER, STAFF_PASSWORD);
    let login_page = app.get("/admin/login").await;
    assert_eq!(session_cookie(&login_page), "", "no session for a visitor");
    let signin = set_cookie(&login_page, "cachewithredis_signin");
    assert!(
        signin.contains("HttpOnly") && signin.contains("SameSite=Strict"),
        "{signin}"
    );
    let token = crate::helpers::csrf_token_in(&login_page.text().await.unwrap()).unwrap();
    let response = app
        .post_form(
            "/admin/login",
            &[
                ("username", STAFF_USER),
                ("password", STAFF_PASSWORD),
                ("csrf_token", &token),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let session = session_cookie(&response);
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    assert!(
        !session.contains("Secure"),
        "Secure only with COOKIE_SECURE=1"
    );
    // The sign-in form's cookie has done its work.
    assert!(
        set_cookie(&response, "cachewithredis_signin").contains("Max-Age=0"),
        "removed at sign-in"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn visitors_get_no_session_cookie_on_public_pages() {
    let app = spawn_app().await;
    for path in ["/students", "/students/average-age"] {
        let response = app.get(path).await;
        assert!(response.headers().get("set-cookie").is_none(), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_cookie_secure_set_the_session_cookie_is_secure() {
    let app = spawn_app_with(AppOptions {
        cookie_secure: true,
        ..Default::default()
    })
    .await;
    let signin = set_cookie(&app.get("/admin/login").await, "cachewithredis_signin");
    assert!(signin.contains("; Secure"), "{signin}");
    app.create_staff(STAFF_USER, STAFF_PASSWORD);
    let token = app.csrf_token("/admin/login").await;
    // Over HTTPS a browser names the page's origin (see `security::same_origin_writes`).
    let origin = app.address.replacen("http://", "https://", 1);
    let response = app
        .client
        .post(app.url("/admin/login"))
        .header("origin", origin)
        .form(&[
            ("username", STAFF_USER),
            ("password", STAFF_PASSWORD),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let cookie = session_cookie(&response);
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
}
