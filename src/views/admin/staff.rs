//! `/admin/staff`: superusers list staff users, add one, deactivate or activate one, set a new
//! password, with the rules and effects of the `staff` commands (a deactivated user's sessions
//! end at once on every instance; the last active superuser stays).

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, CustomizeResponder, Either, Responder};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use crate::db;
use crate::error::AppError;
use crate::forms::check_password_input;
use crate::hashing;
use crate::models::staff::{hash_password, StaffChangeError, StaffUser};
use crate::session;
use crate::views::{AppState, Nav};

/// The signed-in user, when the database says they are a superuser now (the session's flag
/// is only what it was at sign-in); 403 otherwise.
async fn require_superuser(state: &AppState, session: &Session) -> Result<(), AppError> {
    let user = session::signed_in(session)
        .ok_or_else(|| AppError::Forbidden("Sign in as staff to do this.".into()))?;
    let superuser = db::with_conn(&state.db, move |conn| {
        Ok(StaffUser::find(conn, user.id).is_ok_and(|u| u.is_superuser && u.is_active))
    })
    .await?;
    if superuser {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "Only superusers manage staff users. A superuser can make you one with \
             `cachewithredis staff promote`."
                .into(),
        ))
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/staff.html")]
pub struct StaffListPage {
    nav: Nav,
    users: Vec<StaffUser>,
    csrf_token: String,
    /// Why the last change was refused.
    error: Option<String>,
}

async fn list_page(
    state: &AppState,
    session: &Session,
    error: Option<String>,
) -> Result<StaffListPage, AppError> {
    let users = db::with_conn(&state.db, |conn| Ok(StaffUser::all(conn)?)).await?;
    Ok(StaffListPage {
        nav: Nav::new(session)?.at("staff-users"),
        users,
        csrf_token: session::csrf_token(session)?,
        error,
    })
}

pub async fn list(state: web::Data<AppState>, session: Session) -> Result<StaffListPage, AppError> {
    require_superuser(&state, &session).await?;
    list_page(&state, &session, None).await
}

/// The add form, as typed.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NewStaffForm {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password1: String,
    #[serde(default)]
    pub password2: String,
    /// A checkbox: present when ticked.
    pub superuser: Option<String>,
    #[serde(default)]
    pub csrf_token: String,
}

/// A message for each field of a staff form that failed.
#[derive(Debug, Clone, Default)]
pub struct StaffFormErrors {
    pub username: Option<String>,
    pub password1: Option<&'static str>,
    pub password2: Option<&'static str>,
}

impl StaffFormErrors {
    pub fn any(&self) -> bool {
        self.username.is_some() || self.password1.is_some() || self.password2.is_some()
    }
}

/// The password rules of every other form, and the two copies equal.
fn check_passwords(username: &str, password1: &str, password2: &str, errors: &mut StaffFormErrors) {
    if let Err(why) = crate::password_rules::check(username, password1) {
        errors.password1 = Some(why);
    } else if check_password_input(password1).is_err() {
        errors.password1 = Some("Use at most 4096 bytes and no NUL characters.");
    }
    if password2 != password1 {
        errors.password2 = Some("The two passwords differ.");
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/staff_new.html")]
pub struct NewStaffPage {
    nav: Nav,
    username: String,
    superuser: bool,
    errors: StaffFormErrors,
    csrf_token: String,
}

impl NewStaffPage {
    fn new(
        session: &Session,
        form: &NewStaffForm,
        errors: StaffFormErrors,
    ) -> Result<Self, AppError> {
        Ok(NewStaffPage {
            nav: Nav::new(session)?.at("staff-users"),
            username: form.username.clone(),
            superuser: form.superuser.is_some(),
            errors,
            csrf_token: session::csrf_token(session)?,
        })
    }
}

pub async fn new(state: web::Data<AppState>, session: Session) -> Result<NewStaffPage, AppError> {
    require_superuser(&state, &session).await?;
    NewStaffPage::new(
        &session,
        &NewStaffForm::default(),
        StaffFormErrors::default(),
    )
}

pub async fn create(
    state: web::Data<AppState>,
    session: Session,
    form: web::Form<NewStaffForm>,
) -> Result<Either<web::Redirect, CustomizeResponder<NewStaffPage>>, AppError> {
    session::verify_csrf(&session, &form.csrf_token)?;
    require_superuser(&state, &session).await?;
    let form = form.into_inner();
    let username = crate::usernames::normalize(form.username.trim());
    let mut errors = StaffFormErrors::default();
    if !crate::usernames::valid(&username) {
        errors.username = Some("Use 1 to 150 letters, digits and @ . + - _".into());
    } else {
        let name = username.clone();
        let existing = db::with_conn(&state.db, move |conn| {
            Ok(StaffUser::look_alike(conn, &name)?)
        })
        .await?;
        errors.username = existing.map(|existing| {
            if existing == username {
                format!("A staff user named “{username}” already exists.")
            } else {
                format!("“{username}” looks like the existing staff user “{existing}”: choose a name nobody could take for another.")
            }
        });
    }
    check_passwords(&username, &form.password1, &form.password2, &mut errors);
    if errors.any() {
        let page = NewStaffPage::new(&session, &form, errors)?;
        return Ok(Either::Right(
            page.customize()
                .with_status(StatusCode::UNPROCESSABLE_ENTITY),
        ));
    }
    let password = form.password1.clone();
    let hash = hashing::run(move || hash_password(&password))
        .await?
        .map_err(AppError::Unexpected)?;
    let superuser = form.superuser.is_some();
    let name = username.clone();
    db::with_conn(&state.db, move |conn| {
        Ok(StaffUser::insert(conn, &name, &hash, superuser)?)
    })
    .await?;
    session::flash(
        &session,
        format!(
            "{} “{username}” was added.",
            if superuser {
                "The superuser"
            } else {
                "The staff user"
            }
        ),
    );
    Ok(Either::Left(web::Redirect::to("/admin/staff").see_other()))
}

#[derive(Deserialize)]
pub struct ActiveForm {
    #[serde(default)]
    active: String,
    #[serde(default)]
    csrf_token: String,
}

/// Deactivates (`active=no`) or activates (`active=yes`) a user; 409 with the list and a
/// message for the last active superuser.
pub async fn set_active(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<i32>,
    form: web::Form<ActiveForm>,
) -> Result<Either<web::Redirect, CustomizeResponder<StaffListPage>>, AppError> {
    session::verify_csrf(&session, &form.csrf_token)?;
    require_superuser(&state, &session).await?;
    let active = match form.active.as_str() {
        "yes" => true,
        "no" => false,
        other => {
            return Err(AppError::BadRequest(format!(
                "active must be yes or no, not {other:?}."
            )))
        }
    };
    let id = id.into_inner();
    let changed = db::with_conn(&state.db, move |conn| {
        let user = StaffUser::find(conn, id)?;
        Ok(StaffUser::set_active(conn, id, active).map(|()| user.username))
    })
    .await?;
    match changed {
        Ok(username) => {
            session::flash(
                &session,
                if active {
                    format!("“{username}” may sign in again.")
                } else {
                    format!("“{username}” was deactivated; their sessions have ended.")
                },
            );
            Ok(Either::Left(web::Redirect::to("/admin/staff").see_other()))
        }
        Err(StaffChangeError::LastSuperuser(username)) => {
            let message = format!(
                "“{username}” is the last active superuser, so they stay active: make another \
                 superuser first, so that someone can still manage staff users."
            );
            let page = list_page(&state, &session, Some(message)).await?;
            Ok(Either::Right(
                page.customize().with_status(StatusCode::CONFLICT),
            ))
        }
        Err(StaffChangeError::Database(e)) => Err(e.into()),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/staff_password.html")]
pub struct SetPasswordPage {
    nav: Nav,
    user: StaffUser,
    errors: StaffFormErrors,
    csrf_token: String,
}

#[derive(Deserialize)]
pub struct SetPasswordForm {
    #[serde(default)]
    password1: String,
    #[serde(default)]
    password2: String,
    #[serde(default)]
    csrf_token: String,
}

pub async fn password_form(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<i32>,
) -> Result<SetPasswordPage, AppError> {
    require_superuser(&state, &session).await?;
    let id = id.into_inner();
    let user = db::with_conn(&state.db, move |conn| Ok(StaffUser::find(conn, id)?)).await?;
    Ok(SetPasswordPage {
        nav: Nav::new(&session)?.at("staff-users"),
        user,
        errors: StaffFormErrors::default(),
        csrf_token: session::csrf_token(&session)?,
    })
}

/// Sets a user's password, as `staff set-password` does: their sessions end.
pub async fn set_password(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<i32>,
    form: web::Form<SetPasswordForm>,
) -> Result<Either<web::Redirect, CustomizeResponder<SetPasswordPage>>, AppError> {
    session::verify_csrf(&session, &form.csrf_token)?;
    require_superuser(&state, &session).await?;
    let id = id.into_inner();
    let user = db::with_conn(&state.db, move |conn| Ok(StaffUser::find(conn, id)?)).await?;
    let mut errors = StaffFormErrors::default();
    check_passwords(
        &user.username,
        &form.password1,
        &form.password2,
        &mut errors,
    );
    if errors.any() {
        let page = SetPasswordPage {
            nav: Nav::new(&session)?.at("staff-users"),
            user,
            errors,
            csrf_token: session::csrf_token(&session)?,
        };
        return Ok(Either::Right(
            page.customize()
                .with_status(StatusCode::UNPROCESSABLE_ENTITY),
        ));
    }
    let password = form.password1.clone();
    let hash = hashing::run(move || hash_password(&password))
        .await?
        .map_err(AppError::Unexpected)?;
    db::with_conn(&state.db, move |conn| {
        Ok(StaffUser::set_password(conn, id, &hash)?)
    })
    .await?;
    let own = session::signed_in(&session).is_some_and(|me| me.id == id);
    if own {
        // This session's row went with the others: a new key keeps this browser signed in.
        session.renew();
    }
    session::flash(
        &session,
        format!(
            "The password of “{}” was set; their sessions have ended.",
            user.username
        ),
    );
    Ok(Either::Left(web::Redirect::to("/admin/staff").see_other()))
}
