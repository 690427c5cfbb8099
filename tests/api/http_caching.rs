//! What the public pages tell the HTTP caches in front of them: a validator from the
//! generation, `304` for a copy that is still what the page shows and never for one from
//! before an answered write (on any instance, or while Redis is out), private pages for staff,
//! and gzip or br for text of 1 KiB or more.

use std::io::Read;

use reqwest::header::{CONTENT_ENCODING, IF_NONE_MATCH, VARY};
use reqwest::redirect::Policy;

use crate::helpers::{header, spawn_app, spawn_second_instance, TestApp};

const PAGES: [&str; 4] = [
    "/",
    "/students?page=2",
    "/students/average-age",
    "/api/students/average-age",
];

/// A visitor: no cookies, no redirects followed, nothing decompressed.
fn visitor() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

async fn get(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = visitor().get(app.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("request sent")
}

/// The page's validator once it is served from memory, as the next requests will be: the
/// validator names where the value came from, as the page's badge does.
async fn etag_of(app: &TestApp, path: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let response = get(app, path, &[]).await;
        assert_eq!(response.status(), 200, "{path}");
        let etag = header(&response, "etag");
        assert!(etag.starts_with("W/\""), "{path}: {etag:?}");
        if header(&response, "x-cache-tier") == "memory" {
            return etag;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{path} never from memory"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A validator, and the answer to a request made with it. The validator names the memory tier;
/// on a loaded machine the lease can lapse between two requests, and the second is then a
/// Redis hit with a validator of its own: asked again.
async fn revalidated(app: &TestApp, path: &str) -> (String, reqwest::Response) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let etag = etag_of(app, path).await;
        let response = get(app, path, &[("if-none-match", &etag)]).await;
        let lapsed = response.status() == 200 && header(&response, "x-cache-tier") != "memory";
        if !lapsed || std::time::Instant::now() > deadline {
            return (etag, response);
        }
    }
}

async fn seeded() -> TestApp {
    let app = spawn_app().await;
    let ages: Vec<i32> = (0..60).map(|i| 18 + i % 10).collect();
    app.insert_students(&ages);
    app
}

#[tokio::test(flavor = "multi_thread")]
async fn each_public_page_has_its_own_validator_and_asks_caches_to_revalidate() {
    let app = seeded().await;
    let mut etags = Vec::new();
    for path in PAGES {
        let response = get(&app, path, &[]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "cache-control"), "no-cache", "{path}");
        let vary = header(&response, "vary");
        assert!(vary.contains("Cookie"), "{path}: Vary {vary:?}");
        assert!(vary.contains("Accept-Encoding"), "{path}: Vary {vary:?}");
        etags.push(etag_of(&app, path).await);
    }
    for (i, a) in etags.iter().enumerate() {
        for b in &etags[i + 1..] {
            assert_ne!(a, b, "two pages share a validator");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_matching_if_none_match_is_answered_304_without_a_body_for_get_and_head() {
    let app = seeded().await;
    for path in PAGES {
        let (etag, response) = revalidated(&app, path).await;
        assert_eq!(response.status(), 304, "{path}");
        assert_eq!(header(&response, "etag"), etag);
        assert_eq!(header(&response, "cache-control"), "no-cache");
        assert!(header(&response, "vary").contains("Cookie"));
        assert_eq!(response.bytes().await.expect("body").len(), 0);
        let head = visitor()
            .head(app.url(path))
            .header(IF_NONE_MATCH, &etag)
            .send()
            .await
            .expect("HEAD");
        assert_eq!(head.status(), 304, "HEAD {path}");
        let other = get(&app, path, &[("if-none-match", "W/\"something-else\"")]).await;
        assert_eq!(other.status(), 200, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_validator_from_before_an_answered_write_gets_the_new_page_on_either_instance() {
    let app = seeded().await;
    let other = spawn_second_instance(&app).await;
    let path = "/api/students/average-age";
    let before = (etag_of(&app, path).await, etag_of(&other, path).await);
    assert_eq!(
        before.0, before.1,
        "both instances name the same value alike"
    );
    app.sign_in().await;
    assert_eq!(app.add_student("Ada", "41").await.status(), 303);
    for instance in [&app, &other] {
        let response = get(instance, path, &[("if-none-match", &before.0)]).await;
        assert_eq!(response.status(), 200);
        assert_ne!(header(&response, "etag"), before.0);
        let json: serde_json::Value = response.json().await.expect("json");
        assert_eq!(json["student_count"], 61);
    }
    let (_, response) = revalidated(&other, "/students/average-age").await;
    assert_eq!(response.status(), 304, "the new value's validator holds");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_redis_the_page_has_no_validator_and_no_304() {
    let app = seeded().await;
    let path = "/students/average-age";
    let etag = etag_of(&app, path).await;
    app.proxy.cut();
    // The first read may still come from memory, within its lease; wait for the database.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let response = get(&app, path, &[("if-none-match", &etag)]).await;
        if header(&response, "x-cache") == "BYPASS" {
            assert_eq!(response.status(), 200);
            assert_eq!(header(&response, "etag"), "");
            assert_eq!(header(&response, "cache-control"), "no-cache");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never a BYPASS");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_shown_with_a_session_is_private_and_never_304() {
    let app = seeded().await;
    let path = "/students/average-age";
    let etag = etag_of(&app, path).await;
    app.sign_in().await;
    let response = app
        .client
        .get(app.url(path))
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "cache-control"), "private, no-store");
    assert_eq!(header(&response, "etag"), "");
    let varies: Vec<String> = response
        .headers()
        .get_all(VARY)
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        varies,
        ["Cookie, Accept-Encoding"],
        "Vary once, naming the cookie"
    );
    let body = response.text().await.expect("body");
    assert!(body.contains("Sign out"), "the staff page");
}

fn gunzip(bytes: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .expect("gzip");
    text
}

fn unbrotli(bytes: &[u8]) -> String {
    let mut text = String::new();
    brotli_decompressor::Decompressor::new(bytes, 4096)
        .read_to_string(&mut text)
        .expect("br");
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn text_pages_are_compressed_as_asked_and_short_answers_are_not() {
    let app = seeded().await;
    let path = "/students";
    let plain = get(&app, path, &[]).await;
    assert_eq!(header(&plain, "content-encoding"), "");
    let plain = plain.text().await.expect("body");
    assert!(
        plain.len() > 1024,
        "the list is over 1 KiB ({})",
        plain.len()
    );
    for (coding, decode) in [("gzip", gunzip as fn(&[u8]) -> String), ("br", unbrotli)] {
        let response = get(&app, path, &[("accept-encoding", coding)]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[CONTENT_ENCODING], coding);
        let varies: Vec<&str> = response
            .headers()
            .get_all(VARY)
            .iter()
            .map(|v| v.to_str().unwrap_or_default())
            .collect();
        assert_eq!(varies, ["Cookie, Accept-Encoding"], "{coding}");
        let bytes = response.bytes().await.expect("body");
        assert!(
            bytes.len() < plain.len() / 2,
            "{coding}: {} bytes",
            bytes.len()
        );
        assert_eq!(decode(&bytes), plain, "{coding} decodes to the page");
    }
    // The JSON answer and /healthz are a few dozen bytes: sent as they are.
    for short in ["/api/students/average-age", "/healthz"] {
        let response = get(&app, short, &[("accept-encoding", "gzip, br")]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "content-encoding"), "", "{short}");
    }
}

/// The server side of every accepted connection to `port`, in this process (the app under
/// test runs in it), with whether it sends without delay.
fn server_sockets_no_delay(port: u16) -> Vec<bool> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd") {
        let Some(raw) = entry
            .ok()
            .and_then(|e| e.file_name().to_str()?.parse::<std::os::fd::RawFd>().ok())
        else {
            continue;
        };
        // SAFETY: the descriptor is only queried, not closed or read; one closed meanwhile by
        // another thread makes the query fail (EBADF), which is skipped.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
        let socket = socket2::SockRef::from(&fd);
        let local = socket.local_addr().ok().and_then(|a| a.as_socket());
        let peer = socket.peer_addr().ok().and_then(|a| a.as_socket());
        if let (Some(local), Some(_)) = (local, peer) {
            if local.port() == port {
                found.push(socket.tcp_nodelay().unwrap_or(false));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_sends_each_write_at_once_so_a_compressed_page_is_not_held_back() {
    // A compressed page is written in chunks; with Nagle's algorithm the second chunk waits for
    // the client's delayed acknowledgement, up to 40 ms a page (BENCHMARKS.md).
    let app = seeded().await;
    let port: u16 = app
        .address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let client = visitor();
    let response = client
        .get(app.url("/students"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("request sent");
    assert_eq!(header(&response, "content-encoding"), "gzip");
    response.bytes().await.expect("body");
    // The client keeps the connection open, so its server side is still there.
    let sockets = server_sockets_no_delay(port);
    assert!(!sockets.is_empty(), "no accepted connection found");
    assert!(sockets.iter().all(|on| *on), "TCP_NODELAY: {sockets:?}");
}
