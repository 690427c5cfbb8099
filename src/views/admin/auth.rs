//! Signing in and out, and the guard in front of every other staff route.

use actix_session::{Session, SessionExt};
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, Either, HttpRequest, HttpResponse, ResponseError};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use crate::db;
use crate::error::AppError;
use crate::forms::{CsrfOnlyForm, LoginForm};
use crate::models::staff::{self, StaffUser};
use crate::session;
use crate::views::{AppState, Nav};

/// Where staff land after signing in when no (safe) `next` was given.
const DEFAULT_NEXT: &str = "/admin/students";

/// Django's wording: one message whichever field was wrong.
const LOGIN_FAILED: &str =
    "Please enter a correct username and password. Note that both fields may be case-sensitive.";

/// Lets only signed-in staff past, except to the login page. A GET is sent to sign in first
/// (303, coming back afterwards); anything else is refused with 403.
pub async fn require_staff(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let signed_in = session::signed_in(&req.get_session()).is_some();
    if signed_in || req.path() == "/admin/login" {
        return Ok(next.call(req).await?.map_into_left_body());
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

pub async fn login_form(
    session: Session,
    query: web::Query<LoginQuery>,
) -> Result<Either<web::Redirect, LoginPage>, AppError> {
    if session::signed_in(&session).is_some() {
        let to = safe_next(&query.next).to_owned();
        return Ok(Either::Left(web::Redirect::to(to).see_other()));
    }
    Ok(Either::Right(LoginPage {
        nav: Nav::new(&session)?,
        error: None,
        username: String::new(),
        next: query.next.clone(),
        csrf_token: session::csrf_token(&session)?,
    }))
}

pub async fn login(
    state: web::Data<AppState>,
    session: Session,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> Result<Either<web::Redirect, LoginPage>, AppError> {
    session::verify_csrf(&session, &form.csrf_token)?;
    let form = form.into_inner();
    let username = form.username.trim().to_owned();
    let client = client_addr(&req);
    let pool = state.db.clone();
    let (name, password) = (username.clone(), form.password);
    let user = db::blocking(move || {
        let now = unix_now();
        let mut conn = pool.get()?;
        if let Some(retry_after_secs) = staff::login_retry_after(&mut conn, &name, &client, now)? {
            return Err(AppError::TooManyRequests { retry_after_secs });
        }
        let user = StaffUser::find_by_username(&mut conn, &name)?;
        drop(conn);
        // Hashing takes the same time whether or not the user exists.
        if staff::verify_password(user.as_ref(), &password) {
            return Ok(user);
        }
        staff::record_login_failure(&mut *pool.get()?, &name, &client, now)?;
        Ok(None)
    })
    .await?;
    match user {
        Some(user) => {
            session::sign_in(&session, user.id, &user.username)?;
            let to = safe_next(&form.next).to_owned();
            Ok(Either::Left(web::Redirect::to(to).see_other()))
        }
        None => Ok(Either::Right(LoginPage {
            nav: Nav::new(&session)?,
            error: Some(LOGIN_FAILED),
            username,
            next: form.next,
            csrf_token: session::csrf_token(&session)?,
        })),
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

/// The address failed sign-ins are counted against. `X-Forwarded-For` is trusted only from a
/// loopback peer, i.e. a proxy on this machine (deploy/nginx.conf), and only its last entry,
/// the one that proxy appended; from anyone else it is ignored, as any client can write it.
pub fn client_addr(req: &HttpRequest) -> String {
    let Some(peer) = req.peer_addr().map(|a| a.ip()) else {
        return String::new();
    };
    if peer.is_loopback() {
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
            .last();
        if let Some(client) = forwarded {
            return client.to_string();
        }
    }
    peer.to_string()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

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
