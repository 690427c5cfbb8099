//! Signing in and out, and the guard in front of every other staff route.

use std::net::{IpAddr, Ipv6Addr};

use actix_session::{Session, SessionExt};
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{
    web, CustomizeResponder, Either, HttpRequest, HttpResponse, Responder, ResponseError,
};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use crate::config::TrustedProxies;
use crate::db;
use crate::error::AppError;
use crate::forms::{CsrfOnlyForm, LoginForm};
use crate::models::staff::{self, StaffUser};
use crate::session;
use crate::signin_token::SigninTokens;
use crate::views::{AppState, Nav};

/// Where staff land after signing in when no (safe) `next` was given.
const DEFAULT_NEXT: &str = "/admin/students";

/// Django's wording: one message whichever field was wrong.
const LOGIN_FAILED: &str =
    "Please enter a correct username and password. Note that both fields may be case-sensitive.";

/// Lets only a signed-in staff user who still exists and is active past (the login page is
/// outside the scope this guards). A GET is sent to sign in first (303, coming back
/// afterwards); anything else is refused with 403. The user is looked up on every request, so
/// deleting or deactivating them takes effect at once even on a session that is still stored.
pub async fn require_staff(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let session = req.get_session();
    let active = match (
        session::signed_in(&session),
        req.app_data::<web::Data<AppState>>(),
    ) {
        (Some(user), Some(state)) => {
            db::with_conn(&state.db, move |conn| {
                Ok(StaffUser::is_active(conn, user.id)?)
            })
            .await?
        }
        _ => false,
    };
    if active {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    if session::signed_in(&session).is_some() {
        session::sign_out(&session);
    }
    let response = if req.method() == Method::GET || req.method() == Method::HEAD {
        let wanted = match req.query_string() {
            "" => req.path().to_owned(),
            query => format!("{}?{query}", req.path()),
        };
        let query = serde_urlencoded::to_string([("next", wanted)]).unwrap_or_default();
        HttpResponse::SeeOther()
            .insert_header(("Location", format!("/admin/login?{query}")))
            .finish()
    } else {
        AppError::Forbidden("Sign in as staff to do this.".into()).error_response()
    };
    Ok(req.into_response(response).map_into_right_body())
}

/// Accepts only a path on this site: `//host`, `/\host`, schemes and control characters fall
/// back to the default, so `next` cannot send anyone elsewhere.
pub fn safe_next(next: &str) -> &str {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control() || c.is_whitespace());
    if ok {
        next
    } else {
        DEFAULT_NEXT
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/login.html")]
pub struct LoginPage {
    nav: Nav,
    error: Option<&'static str>,
    username: String,
    next: String,
    csrf_token: String,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    next: String,
}

/// The sign-in page, with its token given to the visitor in a cookie (see
/// [`crate::signin_token`]): nothing is stored for an anonymous visit.
fn login_page(
    tokens: &SigninTokens,
    req: &HttpRequest,
    session: &Session,
    error: Option<&'static str>,
    username: String,
    next: String,
) -> Result<CustomizeResponder<LoginPage>, AppError> {
    let (csrf_token, cookie) = tokens.for_form(req);
    let page = LoginPage {
        nav: Nav::new(session)?.at("staff"),
        error,
        username,
        next,
        csrf_token,
    }
    .customize();
    Ok(match cookie {
        Some(cookie) => page.insert_header((header::SET_COOKIE, cookie.to_string())),
        None => page,
    })
}

pub async fn login_form(
    session: Session,
    req: HttpRequest,
    tokens: web::Data<SigninTokens>,
    query: web::Query<LoginQuery>,
) -> Result<Either<web::Redirect, CustomizeResponder<LoginPage>>, AppError> {
    if session::signed_in(&session).is_some() {
        let to = safe_next(&query.next).to_owned();
        return Ok(Either::Left(web::Redirect::to(to).see_other()));
    }
    let next = query.into_inner().next;
    login_page(&tokens, &req, &session, None, String::new(), next).map(Either::Right)
}

pub async fn login(
    state: web::Data<AppState>,
    tokens: web::Data<SigninTokens>,
    session: Session,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> Result<Either<HttpResponse, CustomizeResponder<LoginPage>>, AppError> {
    tokens.verify(&req, &form.csrf_token)?;
    let credentials = form.credentials()?;
    let username = credentials.username.clone();
    let client = client_addr(&req, &state.trusted_proxies);
    match staff::authenticate(&state.db, credentials, client).await? {
        Some(user) => {
            session::sign_in(&session, user.id, &user.username, user.is_superuser)?;
            let to = safe_next(&form.next).to_owned();
            Ok(Either::Left(
                HttpResponse::SeeOther()
                    .insert_header((header::LOCATION, to))
                    .cookie(tokens.removal())
                    .finish(),
            ))
        }
        None => {
            let next = form.into_inner().next;
            login_page(&tokens, &req, &session, Some(LOGIN_FAILED), username, next)
                .map(Either::Right)
        }
    }
}

pub async fn logout(
    session: Session,
    form: web::Form<CsrfOnlyForm>,
) -> Result<web::Redirect, AppError> {
    session::verify_csrf(&session, &form.csrf_token)?;
    session::sign_out(&session);
    Ok(web::Redirect::to("/admin/login").see_other())
}

/// The client that failed sign-ins are counted against (see [`client_bucket`]).
pub(crate) fn client_addr(req: &HttpRequest, trusted: &TrustedProxies) -> String {
    let forwarded: Vec<Option<&str>> = req
        .headers()
        .get_all("x-forwarded-for")
        .map(|v| v.to_str().ok())
        .collect();
    client_bucket(req.peer_addr().map(|a| a.ip()), &forwarded, trusted)
}

/// The throttle's key for a client: the peer, or, when the peer is a trusted proxy
/// (`TRUSTED_PROXIES`), the first `X-Forwarded-For` entry from the right that is not one.
/// Each proxy appends the address it received from, so entries are believed right to left only
/// while they name trusted proxies; everything further left is whatever the client wrote. An
/// entry that does not parse is not skipped in favour of one further left (which the client
/// controls): the last address believed is used instead (fail closed). IPv6 clients are keyed
/// by their /64, the smallest block one subscriber usually gets, so rotating through its
/// addresses gains nothing.
pub(crate) fn client_bucket(
    peer: Option<IpAddr>,
    forwarded: &[Option<&str>],
    trusted: &TrustedProxies,
) -> String {
    let Some(peer) = peer.map(|ip| ip.to_canonical()) else {
        return String::new();
    };
    let mut client = peer;
    if trusted.contains(peer) {
        // Header lines in order, entries in each from the right.
        'entries: for header in forwarded.iter().rev() {
            let Some(header) = header else { break };
            for entry in header.rsplit(',').map(str::trim) {
                match entry.parse::<IpAddr>() {
                    Ok(ip) if trusted.contains(ip) => client = ip.to_canonical(),
                    Ok(ip) => {
                        client = ip.to_canonical();
                        break 'entries;
                    }
                    Err(_) => break 'entries,
                }
            }
        }
    }
    match client {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{}/64", Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket_behind(trusted: &str, peer: &str, forwarded: &[&str]) -> String {
        let forwarded: Vec<Option<&str>> = forwarded.iter().map(|v| Some(*v)).collect();
        let trusted = TrustedProxies::parse(trusted).unwrap();
        client_bucket(Some(peer.parse().unwrap()), &forwarded, &trusted)
    }

    /// Behind a proxy on the same host, as deploy/nginx.conf.
    fn bucket(peer: &str, forwarded: &[&str]) -> String {
        bucket_behind("127.0.0.1, ::1", peer, forwarded)
    }

    #[test]
    fn with_no_trusted_proxy_forwarded_for_is_ignored() {
        assert_eq!(
            bucket_behind("", "127.0.0.1", &["203.0.113.9"]),
            "127.0.0.1"
        );
        assert_eq!(
            bucket_behind("", "198.51.100.7", &["203.0.113.9"]),
            "198.51.100.7"
        );
    }

    #[test]
    fn behind_two_proxies_the_first_untrusted_entry_from_the_right_counts() {
        let trusted = "10.0.0.0/8, 127.0.0.1";
        // client -> load balancer (10.0.0.5) -> nginx (127.0.0.1) -> the application.
        assert_eq!(
            bucket_behind(trusted, "127.0.0.1", &["6.6.6.6, 203.0.113.9, 10.0.0.5"]),
            "203.0.113.9"
        );
        // A client that is itself a trusted address is believed about who is to its left.
        assert_eq!(
            bucket_behind(trusted, "127.0.0.1", &["203.0.113.9, 10.0.0.7, 10.0.0.5"]),
            "203.0.113.9"
        );
        // A peer outside the list names nobody.
        assert_eq!(
            bucket_behind(trusted, "198.51.100.7", &["203.0.113.9"]),
            "198.51.100.7"
        );
    }

    #[test]
    fn forwarded_for_is_read_from_the_right_and_only_from_a_trusted_peer() {
        assert_eq!(
            bucket("127.0.0.1", &["1.1.1.1, 203.0.113.9"]),
            "203.0.113.9"
        );
        assert_eq!(
            bucket("127.0.0.1", &["1.1.1.1", "203.0.113.9"]),
            "203.0.113.9"
        );
        assert_eq!(bucket("::ffff:127.0.0.1", &["203.0.113.9"]), "203.0.113.9");
        assert_eq!(bucket("::1", &["203.0.113.9"]), "203.0.113.9");
        assert_eq!(bucket("198.51.100.7", &["203.0.113.9"]), "198.51.100.7");
        assert_eq!(bucket("127.0.0.1", &[]), "127.0.0.1");
    }

    #[test]
    fn an_entry_that_does_not_parse_falls_back_to_the_last_believed_not_further_left() {
        assert_eq!(bucket("127.0.0.1", &["203.0.113.9, nonsense"]), "127.0.0.1");
        assert_eq!(bucket("127.0.0.1", &["203.0.113.9", ""]), "127.0.0.1");
    }

    #[test]
    fn ipv6_clients_are_bucketed_by_their_64() {
        assert_eq!(
            bucket("127.0.0.1", &["2001:db8:1:2:aaaa::1"]),
            bucket("127.0.0.1", &["2001:db8:1:2:bbbb::9"])
        );
        assert_eq!(bucket("2001:db8:1:2::5", &[]), "2001:db8:1:2::/64");
        assert_ne!(
            bucket("127.0.0.1", &["2001:db8:1:2::1"]),
            bucket("127.0.0.1", &["2001:db8:1:3::1"])
        );
        assert_eq!(bucket("127.0.0.1", &["::ffff:203.0.113.9"]), "203.0.113.9");
    }

    #[test]
    fn next_accepts_only_paths_on_this_site() {
        assert_eq!(
            safe_next("/admin/students?page=2"),
            "/admin/students?page=2"
        );
        for evil in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "\\\\evil",
            "",
            "javascript:alert(1)",
            "/\tevil",
        ] {
            assert_eq!(safe_next(evil), DEFAULT_NEXT, "{evil:?}");
        }
    }
}
