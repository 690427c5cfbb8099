//! `/admin/staff`: superusers (and nobody else) list, add, deactivate, activate staff users and
//! set their passwords, with the effects of the `staff` commands; the last active superuser
//! stays, on the web and on the command line.

use std::process::Command;

use crate::helpers::{
    csrf_token_in, header, spawn_app, spawn_second_instance, TestApp, STAFF_USER,
};

const GRACE_PASSWORD: &str = "grace's password 1906";

/// The id of staff user `username`.
fn staff_id(app: &TestApp, username: &str) -> i32 {
    cachewithredis::models::StaffUser::find_by_username(&mut app.conn(), username)
        .unwrap()
        .expect("the user exists")
        .id
}

fn command(app: &TestApp, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cachewithredis"))
        .args(args)
        .env("DATABASE_URL", app.database.url_string())
        .env("REDIS_URL", app.redis_url())
        .env("RUST_LOG", "warn")
        .env("STAFF_PASSWORD", "a command-line password 1")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn only_a_superuser_sees_and_uses_the_staff_users_page() {
    let app = spawn_app().await;
    let grace = spawn_second_instance(&app).await;
    app.sign_in().await;
    app.create_staff("grace", GRACE_PASSWORD);
    assert_eq!(
        grace
            .try_sign_in("grace", GRACE_PASSWORD, "")
            .await
            .status(),
        303
    );

    let (status, page) = app.get_text("/admin/staff").await;
    assert_eq!(status, 200);
    assert!(page.contains("<a href=\"/admin/staff\" aria-current=\"page\">Staff users</a>"));
    assert!(
        page.contains("<td>grace</td>\n      <td>Staff</td>\n      <td>Active</td>"),
        "{page}"
    );
    assert!(page.contains(&format!("<td>{STAFF_USER}</td>\n      <td>Superuser</td>")));

    let (_, list) = grace.get_text("/admin/students").await;
    assert!(
        !list.contains("Staff users</a>"),
        "no link for staff who are not superusers"
    );
    let token = csrf_token_in(&list).unwrap();
    for path in [
        "/admin/staff",
        "/admin/staff/new",
        &format!("/admin/staff/{}/password", staff_id(&app, "grace")),
    ] {
        let response = grace.get(path).await;
        assert_eq!(response.status(), 403, "{path}");
        assert!(response
            .text()
            .await
            .unwrap()
            .contains("Only superusers manage staff users."));
    }
    let response = grace
        .post_form(
            "/admin/staff",
            &[
                ("username", "mallory"),
                ("password1", "a long password 42"),
                ("password2", "a long password 42"),
                ("superuser", "yes"),
                ("csrf_token", &token),
            ],
        )
        .await;
    assert_eq!(response.status(), 403);
    let response = grace
        .post_form(
            &format!("/admin/staff/{}/active", staff_id(&app, STAFF_USER)),
            &[("active", "no"), ("csrf_token", &token)],
        )
        .await;
    assert_eq!(response.status(), 403);
    assert!(
        cachewithredis::models::StaffUser::find_by_username(&mut app.conn(), "mallory")
            .unwrap()
            .is_none()
    );
    assert!(
        cachewithredis::models::StaffUser::find_by_username(&mut app.conn(), STAFF_USER)
            .unwrap()
            .unwrap()
            .is_active
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_superuser_adds_a_staff_user_with_the_rules_of_the_commands() {
    let app = spawn_app().await;
    let other = spawn_second_instance(&app).await;
    app.sign_in().await;
    let token = app.csrf_token("/admin/staff/new").await;
    app.create_staff("grace", GRACE_PASSWORD);
    for (fields, message) in [
        (
            vec![
                ("username", "no spaces"),
                ("password1", "a long password 42"),
                ("password2", "a long password 42"),
            ],
            "Use 1 to 150 letters, digits and @ . + - _",
        ),
        (
            vec![
                ("username", "GRACE"),
                ("password1", "a long password 42"),
                ("password2", "a long password 42"),
            ],
            "looks like the existing staff user “grace”",
        ),
        (
            vec![
                ("username", "ada"),
                ("password1", "short"),
                ("password2", "short"),
            ],
            "at least 12 characters",
        ),
        (
            vec![
                ("username", "ada"),
                ("password1", "a long password 42"),
                ("password2", "another password 42"),
            ],
            "The two passwords differ.",
        ),
    ] {
        let mut fields = fields.clone();
        fields.push(("csrf_token", &token));
        let response = app.post_form("/admin/staff", &fields).await;
        assert_eq!(response.status(), 422, "{message}");
        let body = response.text().await.unwrap();
        assert!(body.contains(message), "{message}: {body}");
        assert!(
            body.contains(&format!(
                "name=\"username\" type=\"text\" value=\"{}\"",
                fields[0].1
            )),
            "what was typed is kept"
        );
        assert!(!body.contains(fields[1].1), "a password is never sent back");
    }
    let response = app
        .post_form(
            "/admin/staff",
            &[
                ("username", "ada"),
                ("password1", "a long password 42"),
                ("password2", "a long password 42"),
                ("superuser", "yes"),
                ("csrf_token", &token),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(header(&response, "location"), "/admin/staff");
    let (_, page) = app.get_text("/admin/staff").await;
    assert!(page.contains("The superuser “ada” was added."));
    assert!(page.contains("<td>ada</td>\n      <td>Superuser</td>"));
    assert_eq!(
        other
            .try_sign_in("ada", "a long password 42", "")
            .await
            .status(),
        303
    );
    assert_eq!(
        other.get("/admin/staff").await.status(),
        200,
        "ada is a superuser too"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deactivating_or_setting_a_password_ends_the_users_sessions_on_every_instance() {
    let app = spawn_app().await;
    let grace = spawn_second_instance(&app).await;
    app.sign_in().await;
    app.create_staff("grace", GRACE_PASSWORD);
    let id = staff_id(&app, "grace");
    assert_eq!(
        grace
            .try_sign_in("grace", GRACE_PASSWORD, "")
            .await
            .status(),
        303
    );
    assert_eq!(grace.get("/admin/students").await.status(), 200);

    let token = app.csrf_token("/admin/staff").await;
    let response = app
        .post_form(
            &format!("/admin/staff/{id}/active"),
            &[("active", "no"), ("csrf_token", &token)],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        grace.get("/admin/students").await.status(),
        303,
        "signed out at once"
    );
    assert_eq!(
        grace
            .try_sign_in("grace", GRACE_PASSWORD, "")
            .await
            .status(),
        200,
        "refused"
    );
    let (_, page) = app.get_text("/admin/staff").await;
    assert!(page.contains("“grace” was deactivated; their sessions have ended."));
    assert!(page.contains("<td>grace</td>\n      <td>Staff</td>\n      <td>Deactivated</td>"));

    let response = app
        .post_form(
            &format!("/admin/staff/{id}/active"),
            &[("active", "yes"), ("csrf_token", &token)],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        grace
            .try_sign_in("grace", GRACE_PASSWORD, "")
            .await
            .status(),
        303
    );
    assert_eq!(grace.get("/admin/students").await.status(), 200);

    let path = format!("/admin/staff/{id}/password");
    let (_, form) = app.get_text(&path).await;
    assert!(form.contains("Set the password of grace"));
    let response = app
        .post_form(
            &path,
            &[
                ("password1", "short"),
                ("password2", "short"),
                ("csrf_token", &token),
            ],
        )
        .await;
    assert_eq!(response.status(), 422);
    assert_eq!(
        grace.get("/admin/students").await.status(),
        200,
        "nothing changed"
    );
    let response = app
        .post_form(
            &path,
            &[
                ("password1", "a brand new password"),
                ("password2", "a brand new password"),
                ("csrf_token", &token),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        grace.get("/admin/students").await.status(),
        303,
        "signed out at once"
    );
    assert_eq!(
        grace
            .try_sign_in("grace", GRACE_PASSWORD, "")
            .await
            .status(),
        200
    );
    assert_eq!(
        grace
            .try_sign_in("grace", "a brand new password", "")
            .await
            .status(),
        303
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_active_superuser_stays_on_the_web_and_on_the_command_line() {
    let app = spawn_app().await;
    app.sign_in().await;
    let me = staff_id(&app, STAFF_USER);
    let token = app.csrf_token("/admin/staff").await;
    let response = app
        .post_form(
            &format!("/admin/staff/{me}/active"),
            &[("active", "no"), ("csrf_token", &token)],
        )
        .await;
    assert_eq!(response.status(), 409);
    let body = response.text().await.unwrap();
    assert!(
        body.contains("is the last active superuser, so they stay active"),
        "{body}"
    );
    assert_eq!(
        app.get("/admin/staff").await.status(),
        200,
        "still signed in"
    );

    for args in [
        ["staff", "deactivate", STAFF_USER],
        ["staff", "delete", STAFF_USER],
    ] {
        let out = command(&app, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("is the last active superuser"));
    }

    let out = command(&app, &["create-staff", "root", "--superuser"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = command(&app, &["staff", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("root\tactive\tsuperuser"));
    let response = app
        .post_form(
            &format!("/admin/staff/{me}/active"),
            &[("active", "no"), ("csrf_token", &token)],
        )
        .await;
    assert_eq!(response.status(), 303, "another superuser remains");
    assert_eq!(
        app.get("/admin/staff").await.status(),
        303,
        "and this session has ended"
    );
    let out = command(&app, &["staff", "delete", "root"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "root is now the last active superuser"
    );
}

/// Two superusers deactivating each other at the same moment: one of them stays, every time.
/// Each change takes a lock on the staff users before it counts the superusers (without it,
/// on PostgreSQL both counted the other as active and both were deactivated).
#[tokio::test(flavor = "multi_thread")]
async fn two_superusers_deactivating_each_other_at_once_leave_one_active() {
    use cachewithredis::models::staff::StaffChangeError;
    use cachewithredis::models::StaffUser;
    use std::sync::{Arc, Barrier};
    let app = spawn_app().await;
    for round in 0..20 {
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        app.create_superuser(&a, GRACE_PASSWORD);
        app.create_superuser(&b, GRACE_PASSWORD);
        let ids = [staff_id(&app, &a), staff_id(&app, &b)];
        // Only these two are superusers while they race.
        let barrier = Arc::new(Barrier::new(2));
        let results: Vec<Result<(), StaffChangeError>> = std::thread::scope(|s| {
            let racers: Vec<_> = ids
                .iter()
                .map(|&id| {
                    let barrier = Arc::clone(&barrier);
                    let mut conn = app.conn();
                    s.spawn(move || {
                        barrier.wait();
                        StaffUser::set_active(&mut conn, id, false)
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let active = ids
            .iter()
            .filter(|&&id| StaffUser::is_active(&mut app.conn(), id).unwrap())
            .count();
        assert_eq!(active, 1, "round {round}: {results:?}");
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(StaffChangeError::LastSuperuser(_)))),
            "round {round}: the second was refused as the last superuser: {results:?}"
        );
        // The survivor steps aside for the next round's pair.
        for id in ids {
            use cachewithredis::schema::staff_users;
            use diesel::prelude::*;
            diesel::delete(staff_users::table.find(id))
                .execute(&mut *app.conn())
                .unwrap();
        }
    }
}
