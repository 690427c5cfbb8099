//! The public student list.

use actix_session::Session;
use actix_web::web;
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use super::{parse_page, AppState, Nav, Pager, PER_PAGE};
use crate::db;
use crate::error::AppError;
use crate::models::{student, Student};

#[derive(Deserialize)]
pub struct ListQuery {
    page: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "students/list.html")]
pub struct StudentListPage {
    nav: Nav,
    students: Vec<Student>,
    pager: Pager,
}

pub async fn list(
    state: web::Data<AppState>,
    session: Session,
    query: web::Query<ListQuery>,
) -> Result<StudentListPage, AppError> {
    let page = parse_page(query.page.as_deref())?;
    let shared = state.clone();
    let found = db::with_conn(&state.db, move |conn| {
        Ok(student::list_page(
            conn,
            &shared.page_index,
            page,
            PER_PAGE,
        )?)
    })
    .await?;
    Ok(StudentListPage {
        nav: Nav::new(&session)?,
        pager: Pager::new(page, found.total, String::new())?,
        students: found.students,
    })
}
