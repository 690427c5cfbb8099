//! The staff's student pages: list and search, add, edit, delete. Every write commits, then
//! invalidates the cached average, then answers.

use std::sync::Arc;

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, CustomizeResponder, Either, Responder};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use crate::db;
use crate::error::AppError;
use crate::forms::{search_needle, CsrfOnlyForm, StudentForm, StudentFormErrors};
use crate::models::student::ListOrder;
use crate::models::{write_log, NewStudent, Student};
use crate::session;
use crate::views::{parse_page, search_query, AppState, Nav, Pager, PER_PAGE};

/// A redirect back to the list, or the form again with its errors (422).
type FormResult = Result<Either<web::Redirect, CustomizeResponder<StudentFormPage>>, AppError>;

pub async fn home() -> web::Redirect {
    web::Redirect::to("/admin/students").see_other()
}

#[derive(Deserialize)]
pub struct IndexQuery {
    page: Option<String>,
    #[serde(default)]
    q: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/students.html")]
pub struct StudentIndexPage {
    nav: Nav,
    students: Vec<Student>,
    pager: Pager,
    q: String,
}

pub async fn index(
    state: web::Data<AppState>,
    session: Session,
    query: web::Query<IndexQuery>,
) -> Result<StudentIndexPage, AppError> {
    let page = parse_page(query.page.as_deref())?;
    let needle = search_needle(&query.q)?;
    let q = needle.clone().unwrap_or_default();
    let found = db::with_conn(&state.db, move |conn| {
        Ok(Student::page(
            conn,
            page,
            PER_PAGE,
            needle.as_deref(),
            ListOrder::Id,
        )?)
    })
    .await?;
    let extra_query = search_query(&q);
    Ok(StudentIndexPage {
        nav: Nav::new(&session)?.at("staff"),
        pager: Pager::new(page, found.total, extra_query)?,
        students: found.students,
        q,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/student_form.html")]
pub struct StudentFormPage {
    nav: Nav,
    heading: String,
    action: String,
    name: String,
    age: String,
    errors: StudentFormErrors,
    csrf_token: String,
}

impl StudentFormPage {
    fn new(
        session: &Session,
        student_id: Option<i32>,
        form: StudentForm,
    ) -> Result<Self, AppError> {
        let (heading, action) = match student_id {
            None => ("Add a student".to_owned(), "/admin/students".to_owned()),
            Some(id) => (
                format!("Edit {}", form.name.trim()),
                format!("/admin/students/{id}"),
            ),
        };
        Ok(StudentFormPage {
            nav: Nav::new(session)?.at("staff"),
            heading,
            action,
            name: form.name,
            age: form.age,
            errors: StudentFormErrors::default(),
            csrf_token: session::csrf_token(session)?,
        })
    }

    fn with_errors(mut self, errors: StudentFormErrors) -> CustomizeResponder<Self> {
        self.errors = errors;
        self.customize()
            .with_status(StatusCode::UNPROCESSABLE_ENTITY)
    }
}

pub async fn new(session: Session) -> Result<StudentFormPage, AppError> {
    StudentFormPage::new(&session, None, StudentForm::default())
}

pub async fn create(
    state: web::Data<AppState>,
    session: Session,
    form: web::Form<StudentForm>,
) -> FormResult {
    session::verify_csrf(&session, &form.csrf_token)?;
    let new = match form.validate() {
        Ok(new) => new,
        Err(errors) => {
            let page = StudentFormPage::new(&session, None, form.into_inner())?;
            return Ok(Either::Right(page.with_errors(errors)));
        }
    };
    let who = staff_name(&session);
    let student = write(&state, move |conn| {
        let student = Student::insert(conn, &new)?;
        let what = format!("added “{}” (age {})", student.name, student.age);
        write_log::record(conn, &who, &what)?;
        Ok(student)
    })
    .await?;
    session::flash(
        &session,
        format!("The student “{}” was added.", student.name),
    );
    Ok(Either::Left(back_to_list()))
}

pub async fn edit(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<i32>,
) -> Result<StudentFormPage, AppError> {
    let id = id.into_inner();
    let student = db::with_conn(&state.db, move |conn| Ok(Student::find(conn, id)?)).await?;
    let form = StudentForm {
        name: student.name,
        age: student.age.to_string(),
        csrf_token: String::new(),
    };
    StudentFormPage::new(&session, Some(id), form)
}

pub async fn update(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<i32>,
    form: web::Form<StudentForm>,
) -> FormResult {
    session::verify_csrf(&session, &form.csrf_token)?;
    let id = id.into_inner();
    let changes: NewStudent = match form.validate() {
        Ok(changes) => changes,
        Err(errors) => {
            // An unknown id is a 404 even when the form is also wrong.
            db::with_conn(&state.db, move |conn| Ok(Student::find(conn, id)?)).await?;
            let page = StudentFormPage::new(&session, Some(id), form.into_inner())?;
            return Ok(Either::Right(page.with_errors(errors)));
        }
    };
    let who = staff_name(&session);
    let student = write(&state, move |conn| {
        let student = Student::update(conn, id, &changes)?;
        let what = format!("changed “{}” (age {})", student.name, student.age);
        write_log::record(conn, &who, &what)?;
        Ok(student)
    })
    .await?;
    session::flash(
        &session,
        format!("The student “{}” was changed.", student.name),
    );
    Ok(Either::Left(back_to_list()))
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/delete.html")]
pub struct DeletePage {
    nav: Nav,
    student: Student,
    csrf_token: String,
}

pub async fn confirm_delete(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<i32>,
) -> Result<DeletePage, AppError> {
    let id = id.into_inner();
    let student = db::with_conn(&state.db, move |conn| Ok(Student::find(conn, id)?)).await?;
    Ok(DeletePage {
        nav: Nav::new(&session)?.at("staff"),
        student,
        csrf_token: session::csrf_token(&session)?,
    })
}

pub async fn delete(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<i32>,
    form: web::Form<CsrfOnlyForm>,
) -> Result<web::Redirect, AppError> {
    session::verify_csrf(&session, &form.csrf_token)?;
    let id = id.into_inner();
    let who = staff_name(&session);
    let student = write(&state, move |conn| {
        let student = Student::delete(conn, id)?;
        let what = format!("deleted “{}” (age {})", student.name, student.age);
        write_log::record(conn, &who, &what)?;
        Ok(student)
    })
    .await?;
    session::flash(
        &session,
        format!("The student “{}” was deleted.", student.name),
    );
    Ok(back_to_list())
}

/// The signed-in staff user's name, for the cache page's log of writes.
pub fn staff_name(session: &Session) -> String {
    session::signed_in(session)
        .map(|user| user.username)
        .unwrap_or_default()
}

fn back_to_list() -> web::Redirect {
    web::Redirect::to("/admin/students").see_other()
}

/// Runs a write and its invalidation off the executor; a missing row is a 404.
async fn write<T: Send + 'static>(
    state: &AppState,
    change: impl FnOnce(&mut db::DbConn) -> diesel::QueryResult<T> + Send + 'static,
) -> Result<T, AppError> {
    let (cache, pool) = (Arc::clone(&state.cache), state.db.clone());
    db::blocking(move || cache.commit_and_invalidate(&pool, change)).await
}
