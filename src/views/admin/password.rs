//! "Change password" for the signed-in staff member, as Django's `PasswordChangeView`: the
//! old password, the new one twice; the user's other sessions end, this one continues.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, CustomizeResponder, Either, Responder};
use askama::Template;
use askama_web::WebTemplate;

use crate::error::AppError;
use crate::forms::{PasswordChangeErrors, PasswordChangeForm};
use crate::models::staff;
use crate::session;
use crate::views::{AppState, Nav};

#[derive(Template, WebTemplate)]
#[template(path = "admin/password.html")]
pub struct PasswordPage {
    nav: Nav,
    errors: PasswordChangeErrors,
    csrf_token: String,
}

impl PasswordPage {
    fn new(session: &Session, errors: PasswordChangeErrors) -> Result<Self, AppError> {
        Ok(PasswordPage {
            nav: Nav::new(session)?.at("password"),
            errors,
            csrf_token: session::csrf_token(session)?,
        })
    }
}

pub async fn form(session: Session) -> Result<PasswordPage, AppError> {
    PasswordPage::new(&session, PasswordChangeErrors::default())
}

pub async fn change(
    state: web::Data<AppState>,
    session: Session,
    form: web::Form<PasswordChangeForm>,
) -> Result<Either<web::Redirect, CustomizeResponder<PasswordPage>>, AppError> {
    session::verify_csrf(&session, &form.csrf_token)?;
    let user = session::signed_in(&session)
        .ok_or(AppError::Forbidden("Sign in as staff to do this.".into()))?;
    let form = form.into_inner();
    let mut errors = form.validate(&user.username);
    if !errors.any() {
        let changed =
            staff::change_password(&state.db, user.id, form.old_password, form.new_password1)
                .await?;
        if !changed {
            errors.old_password = Some("Your current password was entered incorrectly.");
        }
    }
    if errors.any() {
        let page = PasswordPage::new(&session, errors)?
            .customize()
            .with_status(StatusCode::UNPROCESSABLE_ENTITY);
        return Ok(Either::Right(page));
    }
    // The user's sessions are gone, this one's row included: a new key keeps this browser
    // signed in, and a copy of the old cookie is worthless.
    session.renew();
    session::flash(&session, "Your password was changed.");
    Ok(Either::Left(
        web::Redirect::to("/admin/students").see_other(),
    ))
}
