//! What every response says about itself to browsers and caches, and the check that an unsafe
//! request comes from this site's own pages.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};

use crate::error::AppError;
use crate::on_answer::OnAnswer;

/// The name of the session cookie.
pub const SESSION_COOKIE: &str = "cachewithredis_session";
/// Its name and `=`, as a `Cookie` header holds it.
const SESSION_COOKIE_EQUALS: &[u8] = b"cachewithredis_session=";

/// Whether the request may carry the session cookie, read from the raw `Cookie` headers
/// without parsing them (which a visitor's cache hit would pay for on every page). A cookie
/// whose name merely ends with the session's counts too: the answers that depend on this are
/// the more careful ones (the session middleware runs, the page is private).
pub fn may_carry_session_cookie(headers: &header::HeaderMap) -> bool {
    headers.get_all(header::COOKIE).any(|value| {
        value
            .as_bytes()
            .windows(SESSION_COOKIE_EQUALS.len())
            .any(|here| here == SESSION_COOKIE_EQUALS)
    })
}

/// SPEC §7's headers, on every response including errors. The policy allows only this site's
/// own scripts, styles and images; `base-uri`, `form-action` and `frame-ancestors` are not
/// covered by `default-src`, so they are named. HSTS only when the site is served over HTTPS
/// (`COOKIE_SECURE=1`): sent over plain HTTP it would be ignored, and sent by a site that is not
/// on HTTPS yet it would lock its visitors out.
const HEADERS: [(HeaderName, HeaderValue); 6] = [
    (
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; \
             object-src 'none'",
        ),
    ),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    ),
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    ),
    (
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static(
            "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()",
        ),
    ),
];
const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000");

/// The middleware that adds [`HEADERS`] (and HSTS over HTTPS). Not actix-web's
/// `DefaultHeaders`, which looks each name up before inserting it (no handler here sets any of
/// them) and was the costliest single middleware of a cache hit (BENCHMARKS.md).
pub fn headers<B>(https: bool) -> OnAnswer<B> {
    if https {
        OnAnswer(|res| res.map(with_headers).map(with_hsts))
    } else {
        OnAnswer(|res| res.map(with_headers))
    }
}

fn with_headers<B>(mut res: ServiceResponse<B>) -> ServiceResponse<B> {
    let headers = res.headers_mut();
    for (name, value) in HEADERS {
        headers.insert(name, value);
    }
    res
}

fn with_hsts<B>(mut res: ServiceResponse<B>) -> ServiceResponse<B> {
    res.headers_mut()
        .insert(header::STRICT_TRANSPORT_SECURITY, HSTS);
    res
}

/// Whether the site is served over HTTPS (`COOKIE_SECURE=1`), for [`same_origin_writes`].
#[derive(Clone, Copy)]
pub struct Https(pub bool);

/// Refuses an unsafe request (POST and the like) that another site's page sent, as Django's
/// CSRF middleware does on top of the token: a browser names the page's origin in `Origin` on
/// every cross-site POST; over HTTPS a request without `Origin` must carry a `Referer` from this
/// site. The token alone is defeated by anything that leaks it (a page cached for another user,
/// a log); the origin cannot be forged by a page in the victim's browser. Wrapped in
/// [`OnlyWhen::writes`](crate::only_when::OnlyWhen::writes), so the safe methods never come here.
pub async fn same_origin_writes(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let https = req.app_data::<web::Data<Https>>().is_some_and(|h| h.0);
    if let Err(refusal) = check_origin(&req, https) {
        let (req, _) = req.into_parts();
        let response = refusal.error_response().map_into_right_body();
        return Ok(ServiceResponse::new(req, response));
    }
    Ok(next.call(req).await?.map_into_left_body())
}

fn check_origin(req: &ServiceRequest, https: bool) -> Result<(), AppError> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let text = |name| {
        req.headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or("\u{0}"))
    };
    let refused = |what: &str| {
        Err(AppError::Forbidden(format!(
            "This form was sent from another site ({what}), so it was refused (CSRF check \
             failed). Submit it from this site's own page."
        )))
    };
    match (text(header::ORIGIN), text(header::REFERER)) {
        (Some(origin), _) if !same_site(origin, host, https) => refused("Origin"),
        (Some(_), _) => Ok(()),
        (None, Some(referer)) if https && !same_site(referer, host, true) => refused("Referer"),
        (None, None) if https => refused("no Origin or Referer"),
        (None, _) => Ok(()),
    }
}

/// Whether `url` (an `Origin`, or a `Referer`) is this site: the scheme this site is served
/// with and the `Host` the request was sent to.
fn same_site(url: &str, host: &str, https: bool) -> bool {
    let scheme = if https { "https://" } else { "http://" };
    let Some(rest) = url.strip_prefix(scheme) else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    !host.is_empty() && authority.eq_ignore_ascii_case(host)
}

/// A response to a request that carries the session cookie may name the signed-in user and
/// hold their CSRF token: it is marked `private` (a shared cache must not store it) and
/// `Vary: Cookie`, unless the handler said otherwise (the staff area's `no-store`). Through
/// [`OnAnswer`]: the request is read from the answer.
pub fn private_when_signed_in<B>(
    res: Result<ServiceResponse<B>, actix_web::Error>,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    let mut res = res?;
    if !may_carry_session_cookie(res.request().headers()) {
        return Ok(res);
    }
    let headers = res.headers_mut();
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    }
    let varies_by_cookie = headers.get_all(header::VARY).any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|f| f.trim().eq_ignore_ascii_case("cookie"))
        })
    });
    if !varies_by_cookie {
        headers.append(header::VARY, HeaderValue::from_static("Cookie"));
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others_and_only_by_its_name() {
        assert_eq!(
            SESSION_COOKIE_EQUALS,
            format!("{SESSION_COOKIE}=").as_bytes()
        );
        let with = |cookies: &[&str]| {
            let mut headers = header::HeaderMap::new();
            for value in cookies {
                headers.append(header::COOKIE, HeaderValue::from_str(value).unwrap());
            }
            may_carry_session_cookie(&headers)
        };
        assert!(!with(&[]));
        assert!(!with(&[
            "theme=dark; other_session=1",
            "cachewithredis_sessions=2"
        ]));
        assert!(with(&[&format!("theme=dark; {SESSION_COOKIE}=abc")]));
        assert!(with(&["theme=dark", &format!("{SESSION_COOKIE}=abc")]));
    }

    #[test]
    fn only_this_sites_scheme_and_host_are_the_same_site() {
        assert!(same_site("http://127.0.0.1:8000", "127.0.0.1:8000", false));
        assert!(same_site(
            "http://127.0.0.1:8000/admin/students/new",
            "127.0.0.1:8000",
            false
        ));
        assert!(same_site("https://School.example", "school.example", true));
        for other in [
            "https://evil.example",
            "http://127.0.0.1:8001",
            "http://127.0.0.1:8000.evil.example",
            "null",
            "",
        ] {
            assert!(!same_site(other, "127.0.0.1:8000", false), "{other}");
        }
        // Over HTTPS, a plain-HTTP page is another origin.
        assert!(!same_site("http://school.example", "school.example", true));
        assert!(!same_site("https://school.example", "", true));
    }
}
