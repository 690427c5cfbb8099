//! The sign-in throttle under bursts, and which address it counts against.

use diesel::prelude::*;

use cachewithredis::schema::login_failures;

use crate::helpers::{
    header, spawn_app, spawn_app_with, spawn_second_instance, AppOptions, TestApp, STAFF_PASSWORD,
    STAFF_USER,
};

/// Signs in with `X-Forwarded-For` set, as the local proxy would send it.
async fn sign_in_from(app: &TestApp, forwarded_for: &str, username: &str, password: &str) -> u16 {
    let token = app.csrf_token("/admin/login").await;
    app.client
        .post(app.url("/admin/login"))
        .header("x-forwarded-for", forwarded_for)
        .form(&[
            ("username", username),
            ("password", password),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn failures_recorded(app: &TestApp) -> i64 {
    login_failures::table
        .count()
        .get_result(&mut *app.conn())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn forty_concurrent_wrong_passwords_try_at_most_five_and_the_rest_wait() {
    let app = spawn_app().await;
    app.create_staff(STAFF_USER, STAFF_PASSWORD);
    let token = app.csrf_token("/admin/login").await;
    let attempts = (0..40).map(|_| {
        let request = app.client.post(app.url("/admin/login")).form(&[
            ("username", STAFF_USER),
            ("password", "wrong"),
            ("csrf_token", &token),
        ]);
        tokio::spawn(async move { request.send().await.unwrap() })
    });
    let mut tried = 0;
    for attempt in attempts.collect::<Vec<_>>() {
        let response = attempt.await.unwrap();
        match response.status().as_u16() {
            200 => tried += 1,
            429 => assert!(!header(&response, "retry-after").is_empty()),
            other => panic!("unexpected status {other}"),
        }
    }
    assert!((1..=5).contains(&tried), "{tried} passwords were tried");
    assert!(failures_recorded(&app) <= 5);
    assert_eq!(
        app.try_sign_in(STAFF_USER, STAFF_PASSWORD, "")
            .await
            .status(),
        429
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_success_gives_its_reserved_attempt_back() {
    let app = spawn_app().await;
    app.create_staff(STAFF_USER, STAFF_PASSWORD);
    for _ in 0..4 {
        assert_eq!(app.try_sign_in(STAFF_USER, "wrong", "").await.status(), 200);
    }
    // The success in another browser, so that this one is still signed out.
    let other = spawn_second_instance(&app).await;
    assert_eq!(
        other
            .try_sign_in(STAFF_USER, STAFF_PASSWORD, "")
            .await
            .status(),
        303
    );
    assert_eq!(failures_recorded(&app), 4);
    // Had the success kept its slot, this would be the sixth and refused.
    assert_eq!(app.try_sign_in(STAFF_USER, "wrong", "").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_addresses_are_counted_apart_and_ipv6_by_its_64() {
    let app = spawn_app().await;
    app.create_staff(STAFF_USER, STAFF_PASSWORD);
    for i in 1..=5 {
        let address = format!("2001:db8:1:2::{i}");
        assert_eq!(
            sign_in_from(&app, &address, &format!("guess{i}"), "x").await,
            200
        );
    }
    // Another address in the same /64 is the same client.
    assert_eq!(
        sign_in_from(&app, "2001:db8:1:2:ffff::1", "other", "x").await,
        429
    );
    // The next /64, and an IPv4 client, are not locked out.
    assert_eq!(
        sign_in_from(&app, "2001:db8:1:3::1", "other", "x").await,
        200
    );
    assert_eq!(sign_in_from(&app, "203.0.113.9", "other", "x").await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forwarded_entry_that_does_not_parse_does_not_let_the_client_pick_its_address() {
    let app = spawn_app().await;
    app.create_staff(STAFF_USER, STAFF_PASSWORD);
    for i in 1..=5 {
        let forged = format!("203.0.113.{i}, not-an-address");
        assert_eq!(
            sign_in_from(&app, &forged, &format!("guess{i}"), "x").await,
            200
        );
    }
    assert_eq!(
        sign_in_from(&app, "198.51.100.1, not-an-address", "other", "x").await,
        429
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_strangers_failures_for_a_username_do_not_lock_its_owner_out() {
    let app = spawn_app().await;
    app.create_staff(STAFF_USER, STAFF_PASSWORD);
    for _ in 0..5 {
        assert_eq!(
            sign_in_from(&app, "203.0.113.1", STAFF_USER, "guess").await,
            200
        );
    }
    // The stranger is locked out, for this username and any other.
    assert_eq!(
        sign_in_from(&app, "203.0.113.1", STAFF_USER, STAFF_PASSWORD).await,
        429
    );
    assert_eq!(
        sign_in_from(&app, "203.0.113.1", "someone", "guess").await,
        429
    );
    // The owner, from their own address, signs in.
    assert_eq!(
        sign_in_from(&app, "198.51.100.7", STAFF_USER, STAFF_PASSWORD).await,
        303
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_trusted_proxies_a_rotating_forwarded_for_gains_nothing() {
    let app = spawn_app_with(AppOptions {
        trusted_proxies: Some(""),
        ..Default::default()
    })
    .await;
    app.create_staff(STAFF_USER, STAFF_PASSWORD);
    for i in 1..=5 {
        let forged = format!("203.0.113.{i}");
        assert_eq!(sign_in_from(&app, &forged, STAFF_USER, "guess").await, 200);
    }
    assert_eq!(
        sign_in_from(&app, "203.0.113.6", STAFF_USER, "guess").await,
        429
    );
    assert_eq!(failures_recorded(&app), 5);
}
