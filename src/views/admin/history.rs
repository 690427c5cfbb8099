//! `/admin/students/{id}/history`: every change made to a student through the application,
//! newest first, a deleted student's included.

use actix_session::Session;
use actix_web::web;
use askama::Template;
use askama_web::WebTemplate;

use crate::db;
use crate::error::AppError;
use crate::models::history::{self, FieldChange};
use crate::models::Student;
use crate::views::{AppState, Nav};

/// One change as the page lists it.
pub struct ChangeRow {
    /// UTC, to the second.
    pub when: String,
    /// The same instant for `<time datetime>`.
    pub when_iso: String,
    pub who: String,
    pub action: String,
    pub fields: Vec<FieldChange>,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/history.html")]
pub struct HistoryPage {
    nav: Nav,
    student_id: i32,
    /// The student's name now, or the last it had before it was deleted.
    name: String,
    deleted: bool,
    changes: Vec<ChangeRow>,
}

pub async fn page(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<i32>,
) -> Result<HistoryPage, AppError> {
    let id = id.into_inner();
    let (student, changes) = db::with_conn(&state.db, move |conn| {
        let student = match Student::find(conn, id) {
            Ok(student) => Some(student),
            Err(diesel::result::Error::NotFound) => None,
            Err(e) => return Err(e.into()),
        };
        Ok((student, history::of_student(conn, id)?))
    })
    .await?;
    if student.is_none() && changes.is_empty() {
        return Err(AppError::NotFound);
    }
    let name = match &student {
        Some(student) => student.name.clone(),
        None => changes
            .iter()
            .find_map(|c| c.name_before.clone().or_else(|| c.name_after.clone()))
            .unwrap_or_default(),
    };
    let changes = changes
        .into_iter()
        .map(|change| {
            let at = chrono::DateTime::from_timestamp_millis(change.at_ms).unwrap_or_default();
            ChangeRow {
                when: at.format("%Y-%m-%d %H:%M:%S").to_string(),
                when_iso: at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                fields: change.fields(),
                who: change.who,
                action: change.action,
            }
        })
        .collect();
    Ok(HistoryPage {
        nav: Nav::new(&session)?.at("staff"),
        student_id: id,
        name,
        deleted: student.is_none(),
        changes,
    })
}
