//! Staff sessions live on the server: ending one (sign-out, password change, a deleted or
//! deactivated user, its lifetimes) makes every copy of its cookie worthless, on every instance.

use std::time::Duration;

use diesel::prelude::*;
use reqwest::redirect::Policy;

use cachewithredis::models::StaffUser;
use cachewithredis::schema::staff_sessions;

use crate::helpers::{
    header, session_cookie, set_cookie, spawn_app, spawn_app_with, spawn_second_instance,
    AppOptions, TestApp, STAFF_PASSWORD, STAFF_USER,
};

/// Signs in with `app`'s client and returns the session cookie it was given (`name=value`).
async fn sign_in_and_copy_cookie(app: &TestApp) -> String {
    app.create_staff(STAFF_USER, STAFF_PASSWORD);
    let response = app.try_sign_in(STAFF_USER, STAFF_PASSWORD, "").await;
    assert_eq!(response.status(), 303);
    session_cookie(&response)
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// What `GET /admin/students` answers to a request carrying only `cookie`.
async fn replay(app: &TestApp, cookie: &str) -> (u16, String) {
    let response = bare_client()
        .get(app.url("/admin/students"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), header(&response, "location"))
}

fn bare_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// Another browser with its own cookie jar, signed in as the staff user.
async fn second_browser(app: &TestApp) -> reqwest::Client {
    let client = reqwest::Client::builder()
        .redirect(Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    let page = client
        .get(app.url("/admin/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = crate::helpers::csrf_token_in(&page).unwrap();
    let response = client
        .post(app.url("/admin/login"))
        .form(&[
            ("username", STAFF_USER),
            ("password", STAFF_PASSWORD),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    client
}

async fn staff_list_status(app: &TestApp, client: &reqwest::Client) -> u16 {
    client
        .get(app.url("/admin/students"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn sign_out(app: &TestApp) {
    let token = app.csrf_token("/admin/students/new").await;
    let response = app
        .post_form("/admin/logout", &[("csrf_token", &token)])
        .await;
    assert_eq!(response.status(), 303);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_cookie_after_sign_out_is_sent_to_the_sign_in_page_on_every_instance() {
    let app = spawn_app().await;
    let other = spawn_second_instance(&app).await;
    let cookie = sign_in_and_copy_cookie(&app).await;
    assert_eq!(replay(&app, &cookie).await.0, 200);
    assert_eq!(
        replay(&other, &cookie).await.0,
        200,
        "sessions span instances"
    );
    sign_out(&app).await;
    for instance in [&app, &other] {
        let (status, location) = replay(instance, &cookie).await;
        assert_eq!(status, 303);
        assert!(location.starts_with("/admin/login"), "{location}");
    }
    let rows: i64 = staff_sessions::table
        .filter(staff_sessions::staff_id.is_not_null())
        .count()
        .get_result(&mut *app.conn())
        .unwrap();
    assert_eq!(rows, 0, "the session row is gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_cookie_planted_before_sign_in_is_not_signed_in_after_it() {
    let app = spawn_app().await;
    app.create_staff(STAFF_USER, STAFF_PASSWORD);
    // An attacker's cookie in the victim's browser: a session key of their own making.
    let planted = format!(
        "{}=planted-by-an-attacker",
        cachewithredis::security::SESSION_COOKIE
    );
    let page = bare_client()
        .get(app.url("/admin/login"))
        .send()
        .await
        .unwrap();
    let signin = set_cookie(&page, "cachewithredis_signin");
    let signin = signin.split(';').next().unwrap().to_owned();
    let token = crate::helpers::csrf_token_in(&page.text().await.unwrap()).unwrap();
    let response = bare_client()
        .post(app.url("/admin/login"))
        .header("cookie", format!("{signin}; {planted}"))
        .form(&[
            ("username", STAFF_USER),
            ("password", STAFF_PASSWORD),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let issued = session_cookie(&response);
    let issued = issued.split(';').next().unwrap().to_owned();
    assert_ne!(issued, planted);
    assert_eq!(replay(&app, &issued).await.0, 200);
    assert_eq!(replay(&app, &planted).await.0, 303);
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_deactivating_or_re_passwording_a_user_ends_all_their_sessions() {
    type Action = fn(&mut cachewithredis::db::DbConn, i32);
    let actions: [(&str, Action); 3] = [
        ("delete", |conn, id| StaffUser::delete(conn, id).unwrap()),
        ("deactivate", |conn, id| {
            StaffUser::set_active(conn, id, false).unwrap()
        }),
        ("set-password", |conn, id| {
            let hash = cachewithredis::models::staff::hash_password("another password!").unwrap();
            StaffUser::set_password(conn, id, &hash).unwrap()
        }),
    ];
    for (what, action) in actions {
        let app = spawn_app().await;
        app.sign_in().await;
        // Another superuser, so that this one is not the last (which stays).
        app.create_superuser("root", STAFF_PASSWORD);
        let other = second_browser(&app).await;
        assert_eq!(staff_list_status(&app, &app.client).await, 200);
        assert_eq!(staff_list_status(&app, &other).await, 200);
        let id = StaffUser::find_by_username(&mut app.conn(), STAFF_USER)
            .unwrap()
            .unwrap()
            .id;
        let sessions_of = |app: &TestApp| -> i64 {
            staff_sessions::table
                .filter(staff_sessions::staff_id.eq(id))
                .count()
                .get_result(&mut *app.conn())
                .unwrap()
        };
        assert_eq!(sessions_of(&app), 2, "{what}: two browsers signed in");
        action(&mut app.conn(), id);
        // Ended on the server, not only refused by the guard's look at the user.
        assert_eq!(sessions_of(&app), 0, "{what}");
        assert_eq!(staff_list_status(&app, &app.client).await, 303, "{what}");
        assert_eq!(staff_list_status(&app, &other).await, 303, "{what}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deactivated_user_cannot_sign_in() {
    let app = spawn_app().await;
    app.create_staff(STAFF_USER, STAFF_PASSWORD);
    let id = StaffUser::find_by_username(&mut app.conn(), STAFF_USER)
        .unwrap()
        .unwrap()
        .id;
    StaffUser::set_active(&mut app.conn(), id, false).unwrap();
    let response = app.try_sign_in(STAFF_USER, STAFF_PASSWORD, "").await;
    assert_eq!(response.status(), 200, "the generic failure");
    StaffUser::set_active(&mut app.conn(), id, true).unwrap();
    let response = app.try_sign_in(STAFF_USER, STAFF_PASSWORD, "").await;
    assert_eq!(response.status(), 303);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_ends_after_its_idle_time_without_a_request() {
    let app = spawn_app_with(AppOptions {
        session_idle_secs: Some(2),
        ..Default::default()
    })
    .await;
    app.sign_in().await;
    assert_eq!(app.get("/admin/students").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(4000)).await;
    assert_eq!(app.get("/admin/students").await.status(), 303);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_keep_a_session_alive_but_not_past_its_absolute_lifetime() {
    // Expiries are whole seconds: a session made at 0.99 s past a second lives 0.01 s less
    // than its lifetime, and a loaded CI machine adds a second to any request. So the requests
    // are timed from before the sign-in (the absolute limit is at least 9 s after it) and the
    // last check from after it (the session surely began more than 10 s before), with the idle
    // limit (6 s) far from both.
    let app = spawn_app_with(AppOptions {
        session_idle_secs: Some(6),
        session_max_secs: Some(10),
        ..Default::default()
    })
    .await;
    let before = tokio::time::Instant::now();
    app.sign_in().await;
    let signed_in = tokio::time::Instant::now();
    for second in [2, 4, 6, 8] {
        tokio::time::sleep_until(before + Duration::from_secs(second)).await;
        let status = app.get("/admin/students").await.status();
        assert_eq!(status, 200, "{second} s after sign-in");
    }
    tokio::time::sleep_until(signed_in + Duration::from_millis(10_200)).await;
    assert_eq!(
        app.get("/admin/students").await.status(),
        303,
        "past the absolute lifetime, 2 s after the last request"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_sessions_are_purged() {
    let app = spawn_app_with(AppOptions {
        session_idle_secs: Some(1),
        ..Default::default()
    })
    .await;
    app.sign_in().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Another sign-in, from another browser, makes a session and purges the expired one.
    let other = spawn_second_instance(&app).await;
    let response = other.try_sign_in(STAFF_USER, STAFF_PASSWORD, "").await;
    assert_eq!(response.status(), 303);
    let rows: i64 = staff_sessions::table
        .count()
        .get_result(&mut *app.conn())
        .unwrap();
    assert_eq!(rows, 1, "only the new sign-in's session is left");
}

#[tokio::test(flavor = "multi_thread")]
async fn changing_the_password_keeps_this_session_and_ends_the_others() {
    let app = spawn_app().await;
    app.sign_in().await;
    let other = second_browser(&app).await;
    let new_password = "a much longer new password";
    let token = app.csrf_token("/admin/password").await;
    let cases: [(&str, &str, &str, &str); 6] = [
        ("not it", new_password, new_password, "entered incorrectly"),
        (STAFF_PASSWORD, "short", "short", "at least 12 characters"),
        (
            STAFF_PASSWORD,
            "123456789012",
            "123456789012",
            "more than digits",
        ),
        (STAFF_PASSWORD, "password1234", "password1234", "too common"),
        (
            STAFF_PASSWORD,
            "aaaaaaaaaaaa",
            "aaaaaaaaaaaa",
            "different characters",
        ),
        (STAFF_PASSWORD, new_password, "something else", "differ"),
    ];
    for (old, new1, new2, message) in cases {
        let response = app
            .post_form(
                "/admin/password",
                &[
                    ("old_password", old),
                    ("new_password1", new1),
                    ("new_password2", new2),
                    ("csrf_token", &token),
                ],
            )
            .await;
        assert_eq!(response.status(), 422, "{message}");
        let body = response.text().await.unwrap();
        assert!(body.contains(message), "{message}: {body}");
    }
    assert_eq!(
        staff_list_status(&app, &other).await,
        200,
        "nothing changed yet"
    );
    let response = app
        .post_form(
            "/admin/password",
            &[
                ("old_password", STAFF_PASSWORD),
                ("new_password1", new_password),
                ("new_password2", new_password),
                ("csrf_token", &token),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let (status, page) = app.get_text("/admin/students").await;
    assert_eq!(status, 200, "this session survives");
    assert!(page.contains("Your password was changed."));
    assert_eq!(
        staff_list_status(&app, &other).await,
        303,
        "the other ended"
    );
    let fresh = spawn_second_instance(&app).await;
    assert_eq!(
        fresh
            .try_sign_in(STAFF_USER, STAFF_PASSWORD, "")
            .await
            .status(),
        200,
        "the old password no longer works"
    );
    assert_eq!(
        fresh
            .try_sign_in(STAFF_USER, new_password, "")
            .await
            .status(),
        303
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn staff_pages_are_never_cached() {
    let app = spawn_app().await;
    assert_eq!(
        header(&app.get("/admin/login").await, "cache-control"),
        "no-store"
    );
    app.sign_in().await;
    for path in ["/admin/students", "/admin/students/new", "/admin/password"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(header(&response, "cache-control"), "no-store", "{path}");
    }
    let public = app.get("/students").await;
    assert_ne!(header(&public, "cache-control"), "no-store");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_guard_checks_the_user_on_every_request_even_if_their_session_row_remains() {
    use cachewithredis::schema::staff_users;
    let app = spawn_app().await;
    app.sign_in().await;
    assert_eq!(app.get("/admin/students").await.status(), 200);
    // Deactivated by hand in SQL, so nothing deleted the session row.
    diesel::update(staff_users::table)
        .set(staff_users::is_active.eq(false))
        .execute(&mut *app.conn())
        .unwrap();
    let response = app.get("/admin/students").await;
    assert_eq!(response.status(), 303);
    assert!(header(&response, "location").starts_with("/admin/login"));
    let rows: i64 = staff_sessions::table
        .filter(staff_sessions::staff_id.is_not_null())
        .count()
        .get_result(&mut *app.conn())
        .unwrap();
    assert_eq!(rows, 0, "the guard ended the session");
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_anonymous_visits_to_the_sign_in_page_store_nothing() {
    use cachewithredis::schema::staff_sessions;
    use diesel::prelude::*;
    use futures_util::stream::{self, StreamExt};
    let app = spawn_app().await;
    let rows = || -> i64 {
        staff_sessions::table
            .count()
            .get_result(&mut *app.conn())
            .unwrap()
    };
    // Each visit a new visitor, without cookies, as a flood of them would be.
    let client = reqwest::Client::new();
    let statuses: Vec<u16> = stream::iter(0..10_000)
        .map(|_| {
            let request = client.get(app.url("/admin/login"));
            async move { request.send().await.unwrap().status().as_u16() }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200));
    assert_eq!(rows(), 0, "no session row for an anonymous visit");
    // The form still works, and a row is made at sign-in only.
    app.sign_in().await;
    assert_eq!(rows(), 1);
    assert_eq!(app.get("/admin/students").await.status(), 200);
}
