//! The route table, and what the page views share: the navigation context and the pager.

pub mod admin;
pub mod age_chart;
pub mod api;
pub mod assets;
pub mod average;
pub mod health;
pub mod http_cache;
pub mod minute_chart;
pub mod rendered;
pub mod sort_link;
pub mod students;

use std::sync::Arc;

use actix_session::Session;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{from_fn, DefaultHeaders};
use actix_web::web;

use crate::cache::Cache;
use crate::cache::Lookup;
use crate::db::DbPool;
use crate::error::AppError;
use crate::metrics::{self, Call, Metrics, SharedTimings};
use crate::session;
use http_cache::HttpCaching;

/// Students per page, on the public list and in the staff list.
pub const PER_PAGE: i64 = 50;

pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
pub const X_CACHE_TIER: HeaderName = HeaderName::from_static("x-cache-tier");

/// `X-Cache`, and on a hit `X-Cache-Tier`. Built from static names and values: they go on every
/// cache hit, where parsing a header name and copying its value per response shows in profiles.
pub fn cache_headers<V>(lookup: &Lookup<V>) -> impl Iterator<Item = (HeaderName, HeaderValue)> {
    let outcome = (X_CACHE, HeaderValue::from_static(lookup.outcome.header()));
    let tier = lookup
        .tier
        .map(|tier| (X_CACHE_TIER, HeaderValue::from_static(tier.label())));
    std::iter::once(outcome).chain(tier)
}

/// An HTML page showing a cached value: `200`, its content type, `X-Cache` and `X-Cache-Tier`,
/// and what HTTP caches may do with it.
pub fn cached_html<V>(
    lookup: &Lookup<V>,
    caching: &HttpCaching,
    body: impl actix_web::body::MessageBody + 'static,
) -> actix_web::HttpResponse {
    const HTML: HeaderValue = HeaderValue::from_static("text/html; charset=utf-8");
    let mut response = actix_web::HttpResponse::Ok();
    response.insert_header((actix_web::http::header::CONTENT_TYPE, HTML));
    for header in cache_headers(lookup) {
        response.insert_header(header);
    }
    caching.apply(&mut response);
    response.body(body)
}

/// `304` for a client whose copy shows what this answer would (see [`http_cache`]).
pub fn not_modified<V>(lookup: &Lookup<V>, caching: &HttpCaching) -> actix_web::HttpResponse {
    let mut response = caching.not_modified();
    for header in cache_headers(lookup) {
        response.insert_header(header);
    }
    response.finish()
}

/// What every handler can reach.
pub struct AppState {
    pub db: DbPool,
    pub cache: Arc<Cache>,
    pub metrics: Arc<Metrics>,
    /// `DEBUG=1`: HTML pages show the debug panel.
    pub debug: bool,
    /// The last hour of cache activity, for the staff cache page.
    pub history: Arc<crate::cache::history::History>,
    /// The average page's chart, rendered once per distribution.
    pub chart: age_chart::RenderedChart,
    /// The list pages as last rendered for visitors (see [`rendered`]).
    pub rendered: rendered::RenderedPages,
    /// Whose `X-Forwarded-For` to believe (`TRUSTED_PROXIES`).
    pub trusted_proxies: crate::config::TrustedProxies,
    /// `METRICS_BIND_ADDR` is set: `/metrics` is served there, and is a 404 here.
    pub metrics_elsewhere: bool,
    /// Set when a graceful stop begins: `/readyz` answers 503 from then on.
    pub stopping: Arc<std::sync::atomic::AtomicBool>,
}

/// A route for `GET` and `HEAD` alike. actix-web's `web::get()` answers `HEAD` with 404, and
/// HTTP wants every `GET` resource to answer `HEAD` with the same status and headers; the
/// connection's codec, which knows the request was a `HEAD`, sends no body.
fn get() -> actix_web::Route {
    web::route().guard(actix_web::guard::Any(actix_web::guard::Get()).or(actix_web::guard::Head()))
}

/// The route table, shared by `main` and the tests.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", get().to(students::list))
        .route("/students", get().to(students::list))
        .route("/students/average-age", get().to(average::page))
        .route("/api/students/average-age", get().to(api::average_age))
        .route("/healthz", get().to(health::healthz))
        .route("/readyz", get().to(health::readyz))
        .route("/metrics", get().to(health::metrics))
        .service(
            web::scope("/admin")
                .wrap(DefaultHeaders::new().add(("Cache-Control", "no-store")))
                .route("/login", get().to(admin::auth::login_form))
                .route("/login", web::post().to(admin::auth::login))
                // Every other staff route, behind the guard.
                .service(
                    web::scope("")
                        .wrap(from_fn(admin::auth::require_staff))
                        .route("", get().to(admin::students::home))
                        .route("/", get().to(admin::students::home))
                        .route("/logout", web::post().to(admin::auth::logout))
                        .route("/password", get().to(admin::password::form))
                        .route("/password", web::post().to(admin::password::change))
                        .route("/staff", get().to(admin::staff::list))
                        .route("/staff", web::post().to(admin::staff::create))
                        .route("/staff/new", get().to(admin::staff::new))
                        .route(
                            "/staff/{id}/active",
                            web::post().to(admin::staff::set_active),
                        )
                        .route(
                            "/staff/{id}/password",
                            get().to(admin::staff::password_form),
                        )
                        .route(
                            "/staff/{id}/password",
                            web::post().to(admin::staff::set_password),
                        )
                        .route("/cache", get().to(admin::cache::page))
                        .route("/cache/clear", web::post().to(admin::cache::clear))
                        .route("/cache/recompute", web::post().to(admin::cache::recompute))
                        .route("/students", get().to(admin::students::index))
                        .route("/students", web::post().to(admin::students::create))
                        .route("/students/new", get().to(admin::students::new))
                        .route(
                            "/students/delete-selected",
                            web::post().to(admin::students::delete_selected),
                        )
                        .route("/students/import", get().to(admin::import::form))
                        .route("/students/import", web::post().to(admin::import::import))
                        .route(
                            "/students/export.csv",
                            get().to(admin::export::students_csv),
                        )
                        .route("/students/{id}/edit", get().to(admin::students::edit))
                        .route("/students/{id}/history", get().to(admin::history::page))
                        .route("/students/{id}", web::post().to(admin::students::update))
                        .route(
                            "/students/{id}/delete",
                            get().to(admin::students::confirm_delete),
                        )
                        .route(
                            "/students/{id}/delete",
                            web::post().to(admin::students::delete),
                        ),
                ),
        );
}

/// The stylesheet and other assets from the binary (see [`assets`]).
pub fn embedded_static_files(cfg: &mut web::ServiceConfig) {
    cfg.route("/static/{path:.*}", get().to(assets::embedded_file));
}

/// The stylesheet and other assets, from `STATIC_DIR` when it is set.
pub fn static_files(
    dir: &std::path::Path,
) -> actix_web::Scope<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    web::scope("/static")
        .wrap(DefaultHeaders::new().add(("Cache-Control", "public, max-age=3600")))
        .service(actix_files::Files::new("", dir))
}

/// What the site header, the flash area and the debug panel need.
pub struct Nav {
    pub staff: Option<String>,
    /// Whether to link the staff users' page (see `session::SignedIn::superuser`).
    pub superuser: bool,
    /// The CSRF token for the sign-out form; empty for visitors, who get no session cookie.
    pub csrf_token: String,
    pub flashes: Vec<String>,
    /// This request's timings, kept only when `DEBUG=1`.
    debug: Option<SharedTimings>,
    /// Where the page's cached value came from, for the debug panel.
    pub cache_outcome: Option<&'static str>,
    /// The navigation item of this page ("students", "average", "staff", "cache",
    /// "password"), marked `aria-current="page"`; empty on pages that have none.
    pub current: &'static str,
}

/// What the debug panel shows: the Debug Toolbar's SQL and Cache panels.
pub struct DebugPanel {
    pub queries: Vec<Call>,
    pub cache_calls: Vec<Call>,
    pub db_ms: String,
    pub cache_ms: String,
    pub cache_outcome: &'static str,
}

impl Nav {
    pub fn new(session: &Session) -> Result<Nav, AppError> {
        let debug = metrics::current_request_timings()
            .filter(|t| t.lock().map(|t| t.debug).unwrap_or(false));
        let (staff, superuser, csrf_token, flashes) = match session::signed_in(session) {
            Some(user) => (
                Some(user.username),
                user.superuser,
                session::csrf_token(session)?,
                session::take_flashes(session),
            ),
            None => (None, false, String::new(), Vec::new()),
        };
        Ok(Nav {
            staff,
            superuser,
            csrf_token,
            flashes,
            debug,
            cache_outcome: None,
            current: "",
        })
    }

    /// Marks `item` as the current page in the navigation.
    pub fn at(mut self, item: &'static str) -> Nav {
        self.current = item;
        self
    }

    /// The panel, read when the page renders, so it holds all of the request's work so far.
    pub fn debug_panel(&self) -> Option<DebugPanel> {
        let timings = self.debug.as_ref()?.lock().ok()?;
        let ms = |calls: &[Call]| {
            let total: std::time::Duration = calls.iter().map(|c| c.duration).sum();
            format!("{:.2}", total.as_secs_f64() * 1000.0)
        };
        Some(DebugPanel {
            db_ms: ms(&timings.db),
            cache_ms: ms(&timings.cache),
            queries: timings.db.clone(),
            cache_calls: timings.cache.clone(),
            cache_outcome: self.cache_outcome.unwrap_or("no cache lookup"),
        })
    }
}

/// The `?page=` parameter: absent means 1; anything but a whole number ≥ 1 is a 400.
pub fn parse_page(raw: Option<&str>) -> Result<i64, AppError> {
    match raw {
        None => Ok(1),
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(page) if page >= 1 => Ok(page),
            _ => Err(AppError::BadRequest(format!(
                "The page number must be a whole number from 1 up, not {raw:?}."
            ))),
        },
    }
}

/// Where a page sits among the others, for the pager links.
pub struct Pager {
    pub page: i64,
    pub last_page: i64,
    pub total: i64,
    /// Other query parameters to keep in the links (the staff search), already encoded.
    pub extra_query: String,
}

impl Pager {
    /// Checks `page` against `total`: past the last page is a 404, except page 1 of nothing.
    pub fn new(page: i64, total: i64, extra_query: String) -> Result<Pager, AppError> {
        let last_page = ((total + PER_PAGE - 1) / PER_PAGE).max(1);
        if page > last_page {
            return Err(AppError::NotFound);
        }
        Ok(Pager {
            page,
            last_page,
            total,
            extra_query,
        })
    }

    pub fn previous(&self) -> Option<i64> {
        (self.page > 1).then(|| self.page - 1)
    }

    pub fn next(&self) -> Option<i64> {
        (self.page < self.last_page).then(|| self.page + 1)
    }

    pub fn query_for(&self, page: &i64) -> String {
        format!("{}page={page}", self.extra_query)
    }

    /// The page numbers the pager links: the first, the last, and two each side of this one;
    /// `None` where numbers are left out.
    pub fn numbers(&self) -> Vec<Option<i64>> {
        let near = (self.page - 2).max(1)..=(self.page + 2).min(self.last_page);
        let mut shown: Vec<i64> = std::iter::once(1)
            .chain(near)
            .chain(std::iter::once(self.last_page))
            .collect();
        shown.dedup();
        let mut numbers = Vec::with_capacity(shown.len() + 2);
        for (i, &n) in shown.iter().enumerate() {
            if i > 0 && n > shown[i - 1] + 1 {
                numbers.push(None);
            }
            numbers.push(Some(n));
        }
        numbers
    }

    pub fn total_text(&self) -> String {
        thousands(self.total)
    }

    pub fn page_text(&self, page: &i64) -> String {
        thousands(*page)
    }
}

/// `q=…&`, the start of a link's query that keeps the search `q`; empty without one.
pub fn search_query(q: &str) -> String {
    if q.is_empty() {
        return String::new();
    }
    format!(
        "{}&",
        serde_urlencoded::to_string([("q", q)]).unwrap_or_default()
    )
}

/// `1234567` as "1,234,567".
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(-1000), "-1,000");
    }

    #[test]
    fn the_pager_numbers_the_first_the_last_and_the_pages_near_this_one() {
        let pager = |page, last_page| Pager {
            page,
            last_page,
            total: last_page * PER_PAGE,
            extra_query: String::new(),
        };
        assert_eq!(pager(1, 3).numbers(), [Some(1), Some(2), Some(3)]);
        assert_eq!(
            pager(1, 20_000).numbers(),
            [Some(1), Some(2), Some(3), None, Some(20_000)]
        );
        assert_eq!(
            pager(10, 20).numbers(),
            [
                Some(1),
                None,
                Some(8),
                Some(9),
                Some(10),
                Some(11),
                Some(12),
                None,
                Some(20)
            ]
        );
        assert_eq!(
            pager(20, 20).numbers(),
            [Some(1), None, Some(18), Some(19), Some(20)]
        );
        assert_eq!(pager(4, 6).numbers(), (1..=6).map(Some).collect::<Vec<_>>());
    }

    #[test]
    fn page_numbers_must_be_positive_whole_numbers() {
        assert_eq!(parse_page(None).unwrap(), 1);
        assert_eq!(parse_page(Some("3")).unwrap(), 3);
        for raw in ["0", "-1", "abc", "1.5", ""] {
            assert!(parse_page(Some(raw)).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn past_the_last_page_is_not_found_except_page_one_of_nothing() {
        assert!(Pager::new(1, 0, String::new()).is_ok());
        assert!(Pager::new(2, 0, String::new()).is_err());
        assert!(Pager::new(2, 51, String::new()).is_ok());
        assert!(Pager::new(3, 100, String::new()).is_err());
    }
}
