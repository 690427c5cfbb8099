//! The sign-in form's CSRF token, held by the visitor in a signed cookie instead of in a
//! session on the server.
//!
//! Every other form belongs to a signed-in user, whose session row holds its token. The
//! sign-in form is shown to anyone: with its token in a session, every anonymous GET of
//! `/admin/login` stored a row for an hour (70,927 rows and 136 MB of SQLite in 10 s of load).
//! Here the token is a random value in a cookie signed with `SECRET_KEY` (HMAC, actix's signed
//! jar) and repeated in the form: a page on another site can neither read the cookie nor set
//! one that verifies, so it cannot submit the form with a matching token. Nothing is stored
//! until a sign-in succeeds.

use actix_web::cookie::{Cookie, CookieJar, Key, SameSite};
use actix_web::HttpRequest;
use base64::Engine;
use rand::Rng;

use crate::error::AppError;

pub const COOKIE: &str = "cachewithredis_signin";
const PATH: &str = "/admin/login";

/// Issues and checks sign-in tokens.
#[derive(Clone)]
pub struct SigninTokens {
    key: Key,
    secure: bool,
}

impl SigninTokens {
    pub fn new(key: Key, secure: bool) -> Self {
        SigninTokens { key, secure }
    }

    /// The token the request's cookie holds, if it verifies.
    fn presented(&self, req: &HttpRequest) -> Option<String> {
        let mut jar = CookieJar::new();
        jar.add_original(req.cookie(COOKIE)?.into_owned());
        let verified = jar.signed(&self.key).get(COOKIE)?;
        Some(verified.value().to_owned())
    }

    /// The token for the form: the one the visitor holds, or a new one with the cookie that
    /// gives it to them.
    pub fn for_form(&self, req: &HttpRequest) -> (String, Option<Cookie<'static>>) {
        if let Some(token) = self.presented(req) {
            return (token, None);
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.key).add(
            Cookie::build(COOKIE, token.clone())
                .path(PATH)
                .http_only(true)
                .same_site(SameSite::Strict)
                .secure(self.secure)
                .finish(),
        );
        (token, jar.get(COOKIE).cloned())
    }

    /// Accepts the sign-in form only if it repeats the token of the visitor's cookie.
    pub fn verify(&self, req: &HttpRequest, submitted: &str) -> Result<(), AppError> {
        crate::session::token_matches(self.presented(req), submitted)
    }

    /// Deletes the cookie: once signed in, the session holds the forms' token.
    pub fn removal(&self) -> Cookie<'static> {
        let mut cookie = Cookie::build(COOKIE, "")
            .path(PATH)
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(self.secure)
            .finish();
        cookie.make_removal();
        cookie
    }
}
