//! What a session holds (on the server, see `session_store`): the signed-in staff user, the
//! CSRF token of the synchronizer-token pattern, and one-shot flash messages.

use actix_session::Session;
use base64::Engine;
use rand::Rng;
use subtle::ConstantTimeEq;

use crate::error::AppError;

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
