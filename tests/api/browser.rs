//! End to end in headless Chromium (Debian's chromium and chromium-driver), driven over
//! WebDriver: what a visitor and a staff member see and do.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use tempfile::TempDir;

use crate::helpers::{spawn_app, TestApp, STAFF_PASSWORD, STAFF_USER};

/// chromedriver and a Chromium session with a fresh profile; both end when dropped.
struct Browser {
    client: Client,
    driver: Child,
    _profile: TempDir,
}

impl Browser {
    async fn start(width: u32, height: u32) -> Browser {
        Browser::start_with(width, height, false).await
    }

    /// With `dark`, the browser's colour scheme is dark (`prefers-color-scheme: dark`).
    async fn start_with(width: u32, height: u32, dark: bool) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (scripts/install-deps --test installs it)");
        let profile = TempDir::new().unwrap();
        let mut capabilities = serde_json::Map::new();
        let mut options = serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-quic",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={width},{height}"),
                ],
        });
        if dark {
            options["args"]
                .as_array_mut()
                .unwrap()
                .push("--force-dark-mode".into());
        }
        // Headless Chromium's windows are at least 500 px wide: a phone is emulated, which also
        // makes the browser honour the viewport tag and shrink a page that does not fit (so a
        // test sees innerWidth grow past the phone's width), as a real phone does.
        if width < 500 {
            options["mobileEmulation"] = serde_json::json!({
                "deviceMetrics": {"width": width, "height": height, "pixelRatio": 2, "touch": true},
            });
        }
        capabilities.insert("goog:chromeOptions".into(), options);
        let webdriver = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&webdriver)
                .await
            {
                Ok(client) => break client,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no WebDriver session: {e}"),
            }
        };
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// The element, once the page shows it: a click that submits a form can return before the
    /// next page has loaded.
    async fn element(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
    }

    /// The element's text. The staff cache page swaps its figures in place every 5 s, so an
    /// element found just before a swap is stale when read: find it again.
    async fn text(&self, css: &str) -> String {
        for _ in 0..20 {
            if let Ok(text) = self.element(css).await.text().await {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.element(css).await.text().await.unwrap()
    }

    /// Reloads the page until its cache badge says `expected`, for at most 3 s: the memory tier
    /// serves a value only while this instance holds its lease, which a loaded machine can
    /// leave lapsed for a renewal (see `TestApp::get_from_memory`).
    async fn refresh_until_badge(&self, expected: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        loop {
            self.client.refresh().await.unwrap();
            let badge = self.text("#cache-badge").await;
            if badge == expected || std::time::Instant::now() >= deadline {
                assert_eq!(badge, expected);
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the browser is at `expected` (path and query).
    async fn wait_for_path(&self, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let path = self.path().await;
            if path == expected {
                return;
            }
            assert!(Instant::now() < deadline, "at {path}, expected {expected}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn page_text(&self) -> String {
        self.text("body").await
    }

    async fn type_into(&self, css: &str, text: &str) {
        let field = self.element(css).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.element(css).await.click().await.unwrap();
    }

    /// Fills the sign-in form on the current page as the staff user with `password`, and sends it.
    async fn submit_sign_in(&self, password: &str) {
        self.type_into("#username", STAFF_USER).await;
        self.type_into("#password", password).await;
        self.click("form.form button[type=submit]").await;
    }

    async fn click_link(&self, text: &str) {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::LinkText(text))
            .await
            .unwrap_or_else(|e| panic!("link {text}: {e}"))
            .click()
            .await
            .unwrap();
    }

    async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Saves a PNG under SCREENSHOT_DIR (default target/screenshots; `docs` refreshes the
    /// README's pictures).
    async fn screenshot(&self, name: &str) {
        let dir = std::env::var("SCREENSHOT_DIR")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target/screenshots").into());
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(format!("{dir}/{name}.png"), png).unwrap();
    }

    async fn script(&self, js: &str) -> serde_json::Value {
        self.client.execute(js, vec![]).await.unwrap()
    }

    /// axe-core's violations on the current page (every rule, every impact): `[]` when none.
    /// axe-core comes from npm (tests/axe, installed by scripts/test with `npm ci`).
    async fn axe_violations(&self) -> serde_json::Value {
        let axe = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/axe/node_modules/axe-core/axe.min.js"
        ))
        .expect("axe-core is installed (scripts/test runs npm ci in tests/axe)");
        self.client.execute(&axe, vec![]).await.unwrap();
        self.client
            .execute_async(
                r#"const done = arguments[arguments.length - 1];
                axe.run(document, {resultTypes: ['violations']})
                  .then(r => done(r.violations.map(v => ({
                      id: v.id, impact: v.impact, help: v.help,
                      nodes: v.nodes.slice(0, 3).map(n => n.target.join(' ') + ': ' + n.failureSummary)}))))
                  .catch(e => done('axe failed: ' + e));"#,
                vec![],
            )
            .await
            .unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

async fn app_with_students() -> TestApp {
    let app = spawn_app().await;
    let ages: Vec<i32> = (0..120).map(|i| 18 + i % 8).collect();
    app.insert_students(&ages);
    app.create_superuser(STAFF_USER, STAFF_PASSWORD);
    app
}

#[tokio::test(flavor = "multi_thread")]
async fn a_visitor_sees_a_miss_then_a_hit_and_staff_add_a_student_that_changes_the_average() {
    let app = app_with_students().await;
    let browser = Browser::start(1200, 900).await;
    let b = &browser;

    b.client.goto(&app.url("/students")).await.unwrap();
    assert!(b.page_text().await.contains("120 students in total"));
    b.screenshot("students").await;

    b.click_link("What is their average age?").await;
    b.wait_for_path("/students/average-age").await;
    assert_eq!(b.text("#cache-badge").await, "↻ Cache miss");
    b.refresh_until_badge("✔ Cache hit · memory").await;
    assert_eq!(b.text("#average-age").await, "21.50");
    b.screenshot("average-hit").await;

    // The staff area sends to the sign-in page and back.
    b.click_link("Staff area").await;
    b.wait_for_path("/admin/login?next=%2Fadmin%2Fstudents")
        .await;
    b.submit_sign_in(STAFF_PASSWORD).await;
    b.wait_for_path("/admin/students").await;

    // An invalid form: messages next to their fields, focus on the first bad one.
    b.click_link("Add student").await;
    b.type_into("#name", "   ").await;
    b.type_into("#age", "two hundred").await;
    b.click("form.form button[type=submit]").await;
    assert_eq!(b.text("#name-error").await, "Enter a name.");
    assert_eq!(
        b.text("#age-error").await,
        "Enter the age as a whole number, e.g. 21."
    );
    assert_eq!(b.script("return document.activeElement.id").await, "name");
    assert_eq!(
        b.script("return document.getElementById('age').getAttribute('aria-describedby')")
            .await,
        "age-error"
    );
    b.screenshot("staff-form").await;

    b.type_into("#name", "Ada Lovelace").await;
    b.type_into("#age", "82").await;
    b.click("form.form button[type=submit]").await;
    b.wait_for_path("/admin/students").await;
    assert_eq!(
        b.text(".flash").await,
        "The student “Ada Lovelace” was added."
    );

    b.click_link("Average age").await;
    assert_eq!(b.text("#cache-badge").await, "↻ Cache miss");
    assert_eq!(b.text("#average-age").await, "22.00");
    assert_eq!(b.text("#student-count").await, "121");

    b.click("button.link").await;
    b.wait_for_path("/admin/login").await;
    b.client.goto(&app.url("/admin/students")).await.unwrap();
    assert!(b.path().await.starts_with("/admin/login"), "signed out");
    browser.client.clone().close().await.unwrap();
}

/// How many answers to `GET /students/average-age` were `304`s, from the app's own metrics.
async fn not_modified_answers(app: &TestApp) -> f64 {
    app.metric(
        r#"cachewithredis_http_request_duration_seconds_count{method="GET",route="/students/average-age",status="304"}"#,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_is_answered_304_until_a_staff_write_elsewhere_changes_the_page() {
    let app = app_with_students().await;
    let browser = Browser::start(1200, 900).await;
    let b = &browser;
    b.client
        .goto(&app.url("/students/average-age"))
        .await
        .unwrap();
    assert_eq!(b.text("#cache-badge").await, "↻ Cache miss");
    // The badge is part of what the validator names: after the miss, the hit's page.
    b.refresh_until_badge("✔ Cache hit · memory").await;
    let before = not_modified_answers(&app).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while not_modified_answers(&app).await <= before {
        assert!(
            Instant::now() < deadline,
            "the reload was never answered 304"
        );
        b.client.refresh().await.unwrap();
    }
    assert_eq!(b.text("#student-count").await, "120", "the browser's copy");
    assert_eq!(b.text("#cache-badge").await, "✔ Cache hit · memory");

    // Another person, in another browser, adds a student.
    let signed_in = app.try_sign_in(STAFF_USER, STAFF_PASSWORD, "").await;
    assert_eq!(signed_in.status(), 303);
    assert_eq!(app.add_student("Grace Hopper", "85").await.status(), 303);
    b.client.refresh().await.unwrap();
    assert_eq!(b.text("#student-count").await, "121");
    assert_eq!(b.text("#cache-badge").await, "↻ Cache miss");
    browser.client.clone().close().await.unwrap();
}

/// Every public page state the layout and accessibility tests visit.
const PUBLIC_PAGES: [&str; 7] = [
    "/",
    "/students",
    "/students?page=2",
    "/students?q=Student+1&sort=-age",
    "/students/average-age",
    "/admin/login",
    "/nowhere",
];

/// Every staff page, with the student `id` to edit and delete, and the average page as staff
/// see it.
fn staff_pages(id: i32) -> [String; 14] {
    [
        "/admin/students".to_owned(),
        "/admin/students?q=Student".to_owned(),
        "/admin/students?age_min=20&age_max=24&sort=-created_at".to_owned(),
        "/admin/students/new".to_owned(),
        "/admin/students/import".to_owned(),
        format!("/admin/students/{id}/edit"),
        format!("/admin/students/{id}/delete"),
        format!("/admin/students/{id}/history"),
        "/admin/password".to_owned(),
        "/admin/cache".to_owned(),
        "/admin/staff".to_owned(),
        "/admin/staff/new".to_owned(),
        "/admin/staff/1/password".to_owned(),
        "/students/average-age".to_owned(),
    ]
}

/// At phone width: how far the page scrolls sideways, and the tap targets (navigation, row
/// actions, pager, buttons, fields) smaller than 24 px, or a destructive one within 8 px of
/// another.
const PHONE_FIT: &str = r#"
const overflow = document.documentElement.scrollWidth - window.innerWidth;
const targets = [...document.querySelectorAll(
  'header a, header button, .actions a, .pager a, main button, main .button, main input:not([type=hidden])')];
const small = targets.map(t => [t.textContent.trim() || t.name || t.id, t.getBoundingClientRect()])
  .filter(([, r]) => r.width > 0 && r.height < 24)
  .map(([name, r]) => name + ' is ' + r.height.toFixed(1) + ' px tall');
const crowded = [...document.querySelectorAll('.actions')].flatMap(cell => {
  const [edit, del] = [...cell.querySelectorAll('a')].map(a => a.getBoundingClientRect());
  return del && del.left - edit.right < 8 ? ['Delete is ' + (del.left - edit.right).toFixed(1) + ' px from Edit'] : [];
});
return {overflow, width: window.innerWidth, problems: small.concat(crowded)};
"#;

#[tokio::test(flavor = "multi_thread")]
async fn every_page_fits_a_phone_screen_with_targets_big_enough_to_tap() {
    let app = app_with_students().await;
    let id = app.first_student_id();
    let browser = Browser::start(390, 844).await;
    let b = &browser;
    let app = &app;
    let check = |path: String| async move {
        b.client.goto(&app.url(&path)).await.unwrap();
        let fit = b.script(PHONE_FIT).await;
        assert_eq!(fit["width"], 390, "a phone's viewport: {fit}");
        // scrollWidth <= innerWidth (less, by the scroll bar, on a long page).
        assert!(
            fit["overflow"].as_f64().unwrap() <= 0.0,
            "{path} scrolls sideways at 390 px: {fit}"
        );
        assert_eq!(fit["problems"], serde_json::json!([]), "{path}: {fit}");
    };
    for path in PUBLIC_PAGES {
        check(path.to_owned()).await;
    }
    b.client.goto(&app.url("/admin/login")).await.unwrap();
    b.submit_sign_in(STAFF_PASSWORD).await;
    b.wait_for_path("/admin/students").await;
    for path in staff_pages(id) {
        check(path).await;
    }
    b.client.goto(&app.url("/admin/cache")).await.unwrap();
    b.screenshot("admin-cache-phone").await;
    browser.client.clone().close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_average_page_draws_the_age_chart_and_staff_watch_the_cache_page() {
    let app = app_with_students().await;
    let other = crate::helpers::spawn_second_instance(&app).await;
    let browser = Browser::start(1200, 900).await;
    let b = &browser;

    b.client
        .goto(&app.url("/students/average-age"))
        .await
        .unwrap();
    b.refresh_until_badge("✔ Cache hit · memory").await;
    // Eight ages, fifteen students each: a bar and a count label per age.
    let bars = b
        .script("return document.querySelectorAll('#age-chart rect.bar').length")
        .await;
    assert_eq!(bars, 8);
    let height = b
        .script("return document.querySelector('#age-chart svg').getBoundingClientRect().height")
        .await;
    assert!(
        height.as_f64().unwrap() > 100.0,
        "the chart is drawn: {height}"
    );

    // Some traffic on both instances, then the staff page.
    for _ in 0..5 {
        other.average().await;
    }
    b.client.goto(&app.url("/admin/cache")).await.unwrap();
    b.submit_sign_in(STAFF_PASSWORD).await;
    b.wait_for_path("/admin/cache").await;
    b.click("#recompute").await;
    b.wait_for_path("/admin/cache").await;
    assert!(b
        .text(".flash")
        .await
        .starts_with("Recomputed: 21.50 years"));
    let instances = b.text("#instances").await;
    assert!(
        instances.contains(other.address.trim_start_matches("http://")),
        "both instances: {instances}"
    );
    // The script swaps in fresh figures every 5 s without reloading the page.
    b.script("window.notReloaded = true; return null").await;
    let before = b.text("#all-hits").await;
    for _ in 0..3 {
        other.average().await;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while b.text("#all-hits").await == before {
        assert!(Instant::now() < deadline, "the figures never refreshed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(b.script("return window.notReloaded === true").await, true);
    b.client.set_window_size(1200, 1900).await.unwrap();
    b.screenshot("admin-cache").await;
    browser.client.clone().close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn staff_sign_in_with_a_wrong_password_then_change_it_on_the_password_page() {
    let app = app_with_students().await;
    let browser = Browser::start(1200, 900).await;
    let b = &browser;

    b.client.goto(&app.url("/admin/login")).await.unwrap();
    b.submit_sign_in("not the password").await;
    assert!(b
        .text("#login-error")
        .await
        .starts_with("Please enter a correct username and password."));
    assert_eq!(
        b.script("return document.getElementById('username').value")
            .await,
        STAFF_USER,
        "the username is kept"
    );
    b.type_into("#password", STAFF_PASSWORD).await;
    b.click("form.form button[type=submit]").await;
    b.wait_for_path("/admin/students").await;

    let new_password = "a longer password for the browser";
    b.click_link("Change password").await;
    b.wait_for_path("/admin/password").await;
    b.type_into("#old_password", STAFF_PASSWORD).await;
    b.type_into("#new_password1", new_password).await;
    b.type_into("#new_password2", "a different second copy")
        .await;
    b.click("form.form button[type=submit]").await;
    assert_eq!(
        b.text("#new_password2-error").await,
        "The two new passwords differ."
    );
    assert_eq!(
        b.script(
            "return document.getElementById('new_password2').getAttribute('aria-describedby')"
        )
        .await,
        "new_password2-error"
    );
    b.screenshot("password-form").await;

    b.type_into("#old_password", STAFF_PASSWORD).await;
    b.type_into("#new_password1", new_password).await;
    b.type_into("#new_password2", new_password).await;
    b.click("form.form button[type=submit]").await;
    b.wait_for_path("/admin/students").await;
    assert_eq!(b.text(".flash").await, "Your password was changed.");

    b.click("button.link").await;
    b.wait_for_path("/admin/login").await;
    b.submit_sign_in(new_password).await;
    b.wait_for_path("/admin/students").await;

    // The signed-in header, with its extra link, still fits a phone.
    b.client.set_window_size(375, 812).await.unwrap();
    b.client.goto(&app.url("/admin/password")).await.unwrap();
    let overflow = b
        .script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
        )
        .await;
    assert_eq!(
        overflow, 0,
        "/admin/password scrolls sideways at phone width"
    );
    browser.client.clone().close().await.unwrap();
}

/// What a chart drawn in the browser measures: labels whose boxes overlap (or leave the
/// drawing), the narrowest bar, and how many bars.
const CHART_GEOMETRY: &str = r#"
const svg = document.querySelector('#age-chart svg');
const frame = svg.getBoundingClientRect();
const texts = [...svg.querySelectorAll('text')].map(t => [t.textContent, t.getBoundingClientRect()]);
const problems = [];
texts.forEach(([name, r], i) => {
  if (r.left < frame.left - 0.5 || r.right > frame.right + 0.5) problems.push(name + ' leaves the chart');
  texts.slice(i + 1).forEach(([other, o]) => {
    if (r.left < o.right && o.left < r.right && r.top < o.bottom && o.top < r.bottom)
      problems.push(name + ' overlaps ' + other);
  });
});
const widths = [...svg.querySelectorAll('rect.bar')].map(b => b.getBoundingClientRect().width);
return {problems, narrowest: Math.min(...widths), bars: widths.length,
        outliers: svg.querySelectorAll('g.outlier').length, labels: texts.length,
        rows: document.querySelectorAll('#age-table tbody tr').length};
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_age_chart_reads_well_for_any_ages_on_a_desktop_and_on_a_phone() {
    let bulk: Vec<i32> = (0..120).map(|i| 18 + i % 8).collect();
    let with = |extra: &[i32]| [bulk.as_slice(), extra].concat();
    let spread: Vec<i32> = (0..=150).flat_map(|age| [age, age]).collect();
    // (what, ages, outlier bars, rows in the table)
    let cases = [
        ("18-25", bulk.clone(), 0, 8),
        ("18-25 and one 37", with(&[37]), 1, 9),
        ("18-25 and one 150", with(&[150]), 1, 9),
        ("0-150 evenly", spread, 0, 151),
    ];
    let desktop = Browser::start(1280, 900).await;
    let phone = Browser::start(390, 844).await;
    for (what, ages, outliers, rows) in cases {
        let app = spawn_app().await;
        app.insert_students(&ages);
        for (browser, width) in [(&desktop, "desktop"), (&phone, "phone")] {
            browser
                .client
                .goto(&app.url("/students/average-age"))
                .await
                .unwrap();
            let geometry = browser.script(CHART_GEOMETRY).await;
            assert_eq!(
                geometry["problems"],
                serde_json::json!([]),
                "{what} on a {width}: {geometry}"
            );
            assert!(
                geometry["narrowest"].as_f64().unwrap() >= 2.0,
                "{what} on a {width}: {geometry}"
            );
            assert_eq!(geometry["outliers"], outliers, "{what}: {geometry}");
            assert_eq!(geometry["rows"], rows, "{what}: every age in the table");
            assert!(
                geometry["labels"].as_u64().unwrap() >= 3,
                "{what}: {geometry}"
            );
            if what == "18-25 and one 150" && width == "phone" {
                browser.screenshot("average-phone").await;
            }
        }
    }
    desktop.client.clone().close().await.unwrap();
    phone.client.clone().close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn axe_finds_no_violation_on_any_page_in_light_or_dark() {
    let app = app_with_students().await;
    let id = app.first_student_id();
    for dark in [false, true] {
        let scheme = if dark { "dark" } else { "light" };
        let browser = Browser::start_with(1280, 900, dark).await;
        let b = &browser;
        let app = &app;
        let prefers_dark = b
            .script("return matchMedia('(prefers-color-scheme: dark)').matches")
            .await;
        assert_eq!(prefers_dark, dark, "the browser's colour scheme");
        let check = |what: String| async move {
            let violations = b.axe_violations().await;
            assert_eq!(
                violations,
                serde_json::json!([]),
                "{what} ({scheme}): {violations:#}"
            );
        };
        for path in PUBLIC_PAGES {
            b.client.goto(&app.url(path)).await.unwrap();
            check(path.to_owned()).await;
        }
        // A failed sign-in, then a real one.
        b.client.goto(&app.url("/admin/login")).await.unwrap();
        b.submit_sign_in("not the password").await;
        check("a failed sign-in".to_owned()).await;
        b.submit_sign_in(STAFF_PASSWORD).await;
        b.wait_for_path("/admin/students").await;
        for path in staff_pages(id) {
            b.client.goto(&app.url(&path)).await.unwrap();
            if !dark && path.contains("age_min") {
                b.screenshot("admin-students").await;
            }
            check(path).await;
        }
        if dark {
            b.screenshot("average-dark").await;
        }
        // A form sent back with its errors.
        b.client
            .goto(&app.url("/admin/students/new"))
            .await
            .unwrap();
        b.type_into("#age", "old").await;
        b.click("form.form button[type=submit]").await;
        check("the student form with errors".to_owned()).await;
        // Two rows ticked, then "Delete selected…": the page that asks first.
        b.client.goto(&app.url("/admin/students")).await.unwrap();
        b.click("tbody tr:nth-child(1) input[name=ids]").await;
        b.click("tbody tr:nth-child(2) input[name=ids]").await;
        b.click("form.selection > button[type=submit]").await;
        b.wait_for_path("/admin/students/delete-selected").await;
        let asked = b.client.find(Locator::Css("main h1")).await.unwrap();
        assert_eq!(asked.text().await.unwrap(), "Delete selected students");
        check("the delete-selected confirmation".to_owned()).await;
        // A CSV file with a bad row, chosen in the file field: the page that lists it.
        let bad_file = tempfile::NamedTempFile::with_suffix(".csv").unwrap();
        std::fs::write(bad_file.path(), "name,age\nAda,36\n,20\n").unwrap();
        b.client
            .goto(&app.url("/admin/students/import"))
            .await
            .unwrap();
        let field = b.client.find(Locator::Css("#file")).await.unwrap();
        field
            .send_keys(&bad_file.path().display().to_string())
            .await
            .unwrap();
        b.click("form.form button[type=submit]").await;
        let listed = b
            .client
            .wait()
            .for_element(Locator::Css(".bad-rows li"))
            .await
            .unwrap();
        assert_eq!(listed.text().await.unwrap(), "Line 3: Enter a name.");
        check("the import with a bad row".to_owned()).await;
        browser.client.clone().close().await.unwrap();
    }
}
