//! Two instances behind nginx (deploy/nginx.conf), as in production: requests alternate between
//! them and the cache guarantees hold across both.

use futures_util::future::join_all;
use reqwest::redirect::Policy;

use crate::helpers::{
    csrf_token_in, header, spawn_app, spawn_second_instance, Nginx, TestApp, STAFF_PASSWORD,
    STAFF_USER,
};

struct Cluster {
    a: TestApp,
    b: TestApp,
    nginx: Nginx,
    browser: reqwest::Client,
}

async fn cluster() -> Cluster {
    let a = spawn_app().await;
    let b = spawn_second_instance(&a).await;
    let ports: Vec<u16> = [&a, &b]
        .iter()
        .map(|app| app.address.rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    let nginx = Nginx::start(&ports);
    let browser = reqwest::Client::builder()
        .redirect(Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    Cluster {
        a,
        b,
        nginx,
        browser,
    }
}

impl Cluster {
    async fn average(&self) -> (serde_json::Value, String) {
        let response = self
            .browser
            .get(self.nginx.url("/api/students/average-age"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let x_cache = header(&response, "x-cache");
        (response.json().await.unwrap(), x_cache)
    }

    /// How many reads of the JSON average each instance has answered.
    async fn reads_answered(&self) -> [f64; 2] {
        let series = r#"cachewithredis_http_request_duration_seconds_count{method="GET",route="/api/students/average-age",status="200"}"#;
        [self.a.metric(series).await, self.b.metric(series).await]
    }

    async fn form(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        submit(&self.browser, &self.nginx, path, fields, None).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_through_nginx_alternate_between_the_instances() {
    let c = cluster().await;
    for _ in 0..6 {
        c.average().await;
    }
    // The recipe does not tell the public which backend answered; each instance's own
    // metrics do.
    let answered = c.reads_answered().await;
    assert_eq!(answered[0] + answered[1], 6.0);
    assert!(
        answered.iter().all(|n| *n > 0.0),
        "both instances answered: {answered:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn through_nginx_a_session_holds_and_every_write_shows_at_once_on_both_instances() {
    let c = cluster().await;
    c.a.insert_students(&[20]);
    c.a.create_staff(STAFF_USER, STAFF_PASSWORD);
    let signed_in = c
        .form(
            "/admin/login",
            &[
                ("username", STAFF_USER),
                ("password", STAFF_PASSWORD),
                ("next", ""),
            ],
        )
        .await;
    assert_eq!(signed_in.status(), 303);
    for round in 1..=6 {
        // Warm the cache on both instances, then write through whichever nginx picks.
        c.average().await;
        c.average().await;
        let added = c
            .form(
                "/admin/students/new",
                &[("name", "Via nginx"), ("age", "30")],
            )
            .await;
        assert_eq!(
            added.status(),
            303,
            "round {round}: the session works on either instance"
        );
        for _ in 0..2 {
            let (json, x_cache) = c.average().await;
            assert_eq!(json["student_count"], 1 + round, "round {round}: {x_cache}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cold_burst_through_nginx_runs_one_aggregate_in_all() {
    let c = cluster().await;
    let ages: Vec<i32> = (0..2_000).map(|i| 18 + i % 8).collect();
    c.a.insert_students(&ages);
    let answers = join_all((0..64).map(|_| c.average())).await;
    assert!(answers
        .iter()
        .all(|(json, _)| json["student_count"] == 2_000));
    let queries =
        c.a.metric("cachewithredis_db_aggregate_queries_total")
            .await
            + c.b
                .metric("cachewithredis_db_aggregate_queries_total")
                .await;
    assert_eq!(queries, 1.0);
}

/// A browser on its own loopback address, so that nginx sees a different client.
fn browser_at(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .cookie_store(true)
        .local_address(ip.parse::<std::net::IpAddr>().ok())
        .build()
        .unwrap()
}

async fn sign_in_via(
    c: &Cluster,
    browser: &reqwest::Client,
    username: &str,
    password: &str,
    spoof: &str,
) -> u16 {
    let fields = [("username", username), ("password", password)];
    let response = submit(browser, &c.nginx, "/admin/login", &fields, Some(spoof)).await;
    response.status().as_u16()
}

/// Opens the form at `path` through nginx and posts it with its CSRF token (to the list for
/// the add form, else to the same path), optionally with an X-Forwarded-For header.
async fn submit(
    browser: &reqwest::Client,
    nginx: &Nginx,
    path: &str,
    fields: &[(&str, &str)],
    forwarded_for: Option<&str>,
) -> reqwest::Response {
    let page = browser
        .get(nginx.url(path))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = csrf_token_in(&page).expect("a form with a token");
    let mut fields = fields.to_vec();
    fields.push(("csrf_token", &token));
    let action = if path.ends_with("/new") {
        "/admin/students"
    } else {
        path
    };
    let mut request = browser.post(nginx.url(action)).form(&fields);
    if let Some(forwarded_for) = forwarded_for {
        request = request.header("x-forwarded-for", forwarded_for);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_nginx_sign_in_failures_are_counted_per_real_client_address() {
    let c = cluster().await;
    c.a.create_staff(STAFF_USER, STAFF_PASSWORD);
    let (guesser, colleague) = (browser_at("127.0.0.2"), browser_at("127.0.0.3"));
    for i in 0..5 {
        // A forged X-Forwarded-For does not help: nginx appends the real address after it.
        let forged = format!("203.0.113.{i}");
        assert_eq!(
            sign_in_via(&c, &guesser, &format!("guess{i}"), "x", &forged).await,
            200
        );
    }
    assert_eq!(
        sign_in_via(&c, &guesser, STAFF_USER, STAFF_PASSWORD, "198.51.100.1").await,
        429
    );
    assert_eq!(
        sign_in_via(&c, &colleague, STAFF_USER, STAFF_PASSWORD, "").await,
        303
    );
}
