//! What a session holds (on the server, see `session_store`): the signed-in staff user, the
//! CSRF token of the synchronizer-token pattern, and one-shot flash messages.

use actix_session::Session;
use actix_web::dev::ServiceRequest;
use base64::Engine;
use rand::Rng;
use subtle::ConstantTimeEq;

use crate::error::AppError;
use crate::security;

pub(crate) const STAFF_ID: &str = "staff_id";
pub(crate) const STAFF_USERNAME: &str = "staff_username";
const STAFF_SUPERUSER: &str = "staff_superuser";
const CSRF_TOKEN: &str = "csrf_token";
const FLASH: &str = "flash";

/// The signed-in staff user, as recorded at sign-in.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub id: i32,
    pub username: String,
    /// As it was at sign-in: for the navigation only. What a superuser may do is checked
    /// against the database on each request (`views::admin::staff`).
    pub superuser: bool,
}

/// Whether `req` may read or write a session, and so must pass through the session middleware
/// (`only_when`): a request that may change something (signing in makes the session), one that
/// may carry the session cookie, and anything in the staff area, where sessions are the point
/// and no page is hot. What is left is a visitor's `GET` of a public page, which finds no
/// session and starts none: its handler's `Session` is an empty one, and the middleware would
/// only parse the cookies, set up and drop the session's state and box a future. A public page
/// must therefore never write to the session of a visitor who has none.
pub fn may_be_used(req: &ServiceRequest) -> bool {
    !req.method().is_safe()
        || req.path().starts_with("/admin")
        || security::may_carry_session_cookie(req.headers())
}

/// The staff user of this session, if any. A cookie that fails to decode counts as none.
pub fn signed_in(session: &Session) -> Option<SignedIn> {
    let id = session.get::<i32>(STAFF_ID).ok().flatten()?;
    let username = session.get::<String>(STAFF_USERNAME).ok().flatten()?;
    let superuser = session
        .get::<bool>(STAFF_SUPERUSER)
        .ok()
        .flatten()
        .unwrap_or(false);
    Some(SignedIn {
        id,
        username,
        superuser,
    })
}

/// Starts a signed-in session under a new identity, so a session fixed before sign-in is
/// worthless after it.
pub fn sign_in(
    session: &Session,
    id: i32,
    username: &str,
    superuser: bool,
) -> Result<(), AppError> {
    session.renew();
    session.remove(CSRF_TOKEN);
    session.insert(STAFF_ID, id).map_err(AppError::unexpected)?;
    session
        .insert(STAFF_USERNAME, username)
        .map_err(AppError::unexpected)?;
    session
        .insert(STAFF_SUPERUSER, superuser)
        .map_err(AppError::unexpected)?;
    Ok(())
}

/// Ends the session: its row is deleted, so a copy of the cookie is worthless.
pub fn sign_out(session: &Session) {
    session.purge();
}

/// This session's CSRF token, created on first use.
pub fn csrf_token(session: &Session) -> Result<String, AppError> {
    if let Ok(Some(token)) = session.get::<String>(CSRF_TOKEN) {
        return Ok(token);
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    session
        .insert(CSRF_TOKEN, &token)
        .map_err(AppError::unexpected)?;
    Ok(token)
}

/// Accepts a form only if it carries this session's token.
pub fn verify_csrf(session: &Session, submitted: &str) -> Result<(), AppError> {
    token_matches(session.get::<String>(CSRF_TOKEN).ok().flatten(), submitted)
}

/// Accepts `submitted` only if it is the `expected` token, compared in constant time.
pub(crate) fn token_matches(expected: Option<String>, submitted: &str) -> Result<(), AppError> {
    match expected {
        Some(expected)
            if !submitted.is_empty()
                && bool::from(expected.as_bytes().ct_eq(submitted.as_bytes())) =>
        {
            Ok(())
        }
        _ => Err(AppError::Forbidden(
            "The form's security token is missing or out of date (CSRF check failed). \
             Go back, reload the page and submit the form again."
                .into(),
        )),
    }
}

/// Leaves a message for the next page this session sees.
pub fn flash(session: &Session, message: impl Into<String>) {
    let mut messages: Vec<String> = session.get(FLASH).ok().flatten().unwrap_or_default();
    messages.push(message.into());
    // A message that cannot be stored is lost, and only a message: the action succeeded.
    let _ = session.insert(FLASH, messages);
}

/// The messages left for this page, removed from the session.
pub fn take_flashes(session: &Session) -> Vec<String> {
    session
        .remove_as::<Vec<String>>(FLASH)
        .and_then(Result::ok)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use actix_web::http::header;
    use actix_web::test::TestRequest;

    use super::*;
    use crate::security::SESSION_COOKIE;

    #[test]
    fn only_a_visitors_safe_request_for_a_public_page_goes_without_the_session() {
        let uses = |req: TestRequest| may_be_used(&req.to_srv_request());
        assert!(!uses(TestRequest::get().uri("/students/average-age")));
        assert!(!uses(
            TestRequest::default()
                .method(actix_web::http::Method::HEAD)
                .uri("/")
        ));
        assert!(!uses(
            TestRequest::get()
                .uri("/students")
                .insert_header((header::COOKIE, "theme=dark"))
        ));
        assert!(uses(TestRequest::post().uri("/students")));
        assert!(uses(TestRequest::get().uri("/admin/login")));
        assert!(uses(TestRequest::get().uri("/students").insert_header((
            header::COOKIE,
            format!("{SESSION_COOKIE}=abc")
        ))));
    }
}
