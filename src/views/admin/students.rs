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
use crate::forms::{search_needle, CsrfOnlyForm, StudentAge, StudentForm, StudentFormErrors};
use crate::models::student::{ListOrder, StudentFilter, StudentRecord};
use crate::models::{history, write_log, NewStudent, Student};
use crate::session;
use crate::views::sort_link::SortLink;
use crate::views::{parse_page, AppState, Nav, Pager, PER_PAGE};

/// A redirect back to the list, or the form again with its errors (422).
type FormResult = Result<Either<web::Redirect, CustomizeResponder<StudentFormPage>>, AppError>;

pub async fn home() -> web::Redirect {
    web::Redirect::to("/admin/students").see_other()
}

/// `/admin/students`' query: the search, the age range, the order, the page.
#[derive(Deserialize)]
pub struct IndexQuery {
    page: Option<String>,
    #[serde(default)]
    q: String,
    sort: Option<String>,
    age_min: Option<String>,
    age_max: Option<String>,
}

impl IndexQuery {
    /// The filter and the order, or a 400 that says which parameter is wrong.
    pub fn parse(&self) -> Result<(StudentFilter, ListOrder), AppError> {
        let age_min = age_bound("age_min", self.age_min.as_deref())?;
        let age_max = age_bound("age_max", self.age_max.as_deref())?;
        if let (Some(min), Some(max)) = (age_min, age_max) {
            if min > max {
                return Err(AppError::BadRequest(format!(
                    "The lowest age ({min}) is above the highest ({max})."
                )));
            }
        }
        let order = match self.sort.as_deref() {
            None | Some("") => ListOrder::Id,
            Some(raw) => ListOrder::parse(raw).ok_or_else(|| {
                AppError::BadRequest(format!(
                    "Sort by id, name, age or created_at (a leading - for descending), not {raw:?}."
                ))
            })?,
        };
        let filter = StudentFilter {
            name_contains: search_needle(&self.q)?,
            age_min,
            age_max,
        };
        Ok((filter, order))
    }
}

/// An age bound: empty is none; otherwise a whole number from 0 to 150.
fn age_bound(field: &str, raw: Option<&str>) -> Result<Option<i32>, AppError> {
    let raw = raw.unwrap_or_default().trim();
    if raw.is_empty() {
        return Ok(None);
    }
    // The staff form's own rule for an age.
    StudentAge::parse(raw)
        .map(|age| Some(age.get()))
        .map_err(|_| {
            AppError::BadRequest(format!(
                "{field} must be a whole number from 0 to 150, not {raw:?}."
            ))
        })
}

/// The filter as query parameters, each followed by `&`, for links that keep it.
fn filter_query(filter: &StudentFilter) -> String {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    if let Some(q) = &filter.name_contains {
        pairs.push(("q", q.clone()));
    }
    if let Some(min) = filter.age_min {
        pairs.push(("age_min", min.to_string()));
    }
    if let Some(max) = filter.age_max {
        pairs.push(("age_max", max.to_string()));
    }
    if pairs.is_empty() {
        return String::new();
    }
    format!(
        "{}&",
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    )
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/students.html")]
pub struct StudentIndexPage {
    nav: Nav,
    students: Vec<StudentRecord>,
    pager: Pager,
    q: String,
    age_min: String,
    age_max: String,
    /// `?sort=` when not the id order: the filter form keeps it.
    sort: &'static str,
    filtered: bool,
    id_sort: SortLink,
    name_sort: SortLink,
    age_sort: SortLink,
    added_sort: SortLink,
    /// The export link, with this list's filters and order.
    export_href: String,
    csrf_token: String,
}

pub async fn index(
    state: web::Data<AppState>,
    session: Session,
    query: web::Query<IndexQuery>,
) -> Result<StudentIndexPage, AppError> {
    let page = parse_page(query.page.as_deref())?;
    let (filter, order) = query.parse()?;
    let keep = filter_query(&filter);
    let sort_query = match order {
        ListOrder::Id => String::new(),
        order => format!("sort={}&", order.as_str()),
    };
    let read = filter.clone();
    let (students, total) = db::with_conn(&state.db, move |conn| {
        Ok(Student::records(conn, page, PER_PAGE, &read, order)?)
    })
    .await?;
    // The export takes what the pager keeps: the filter and the order.
    let kept = format!("{keep}{sort_query}");
    Ok(StudentIndexPage {
        nav: Nav::new(&session)?.at("staff"),
        students,
        filtered: filter != StudentFilter::default(),
        q: filter.name_contains.unwrap_or_default(),
        age_min: filter.age_min.map(|a| a.to_string()).unwrap_or_default(),
        age_max: filter.age_max.map(|a| a.to_string()).unwrap_or_default(),
        sort: match order {
            ListOrder::Id => "",
            order => order.as_str(),
        },
        id_sort: SortLink::new(order, ListOrder::Id, &keep),
        name_sort: SortLink::new(order, ListOrder::Name, &keep),
        age_sort: SortLink::new(order, ListOrder::Age, &keep),
        added_sort: SortLink::new(order, ListOrder::CreatedAt, &keep),
        export_href: match kept.trim_end_matches('&') {
            "" => "/admin/students/export.csv".to_owned(),
            query => format!("/admin/students/export.csv?{query}"),
        },
        pager: Pager::new(page, total, kept)?,
        csrf_token: session::csrf_token(&session)?,
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
        history::added(conn, &who, std::slice::from_ref(&student))?;
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
        let record = history::changing(conn, &who, id)?;
        let student = Student::update(conn, id, &changes)?;
        history::changed(conn, record, &student)?;
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
        history::deleted(conn, &who, std::slice::from_ref(&student))?;
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

/// The most students "Delete selected" takes at once: a page of a thousand rows to confirm is
/// already more than anyone reads, and the ids fit in the 16 KiB a form may send.
pub const MAX_SELECTED: usize = 1000;

/// The "Delete selected" form: `confirm` and the CSRF token; its `ids`, repeated (which
/// `web::Form` cannot read), are read apart.
struct Selection {
    confirmed: bool,
    csrf_token: String,
}

impl Selection {
    /// Reads the form; the ids are checked only after the CSRF token (see `delete_selected`).
    fn read(body: &[u8]) -> (Selection, Vec<String>) {
        let mut selection = Selection {
            confirmed: false,
            csrf_token: String::new(),
        };
        let mut raw_ids = Vec::new();
        for (key, value) in form_urlencoded::parse(body) {
            match &*key {
                "ids" => raw_ids.push(value.into_owned()),
                "confirm" => selection.confirmed = value == "yes",
                "csrf_token" => selection.csrf_token = value.into_owned(),
                _ => {}
            }
        }
        (selection, raw_ids)
    }

    /// The ids as numbers, each once; a 400 for a bad one, for none, and for too many.
    fn ids(raw_ids: &[String]) -> Result<Vec<i32>, AppError> {
        let mut ids = std::collections::BTreeSet::new();
        for raw in raw_ids {
            match raw.trim().parse::<i32>() {
                Ok(id) if id > 0 => ids.insert(id),
                _ => {
                    return Err(AppError::BadRequest(format!(
                        "Each selected id must be a whole number from 1 up, not {raw:?}."
                    )))
                }
            };
        }
        if ids.is_empty() {
            return Err(AppError::BadRequest(
                "Select at least one student to delete.".into(),
            ));
        }
        if ids.len() > MAX_SELECTED {
            return Err(AppError::BadRequest(format!(
                "Select at most {MAX_SELECTED} students at a time, not {}.",
                ids.len()
            )));
        }
        Ok(ids.into_iter().collect())
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/delete_selected.html")]
pub struct DeleteSelectedPage {
    nav: Nav,
    students: Vec<Student>,
    csrf_token: String,
}

/// `POST /admin/students/delete-selected`: without `confirm=yes`, a page that lists the
/// selected students that still exist, to confirm; with it, one transaction deletes them and
/// one invalidation follows.
pub async fn delete_selected(
    state: web::Data<AppState>,
    session: Session,
    body: web::Bytes,
) -> Result<Either<DeleteSelectedPage, web::Redirect>, AppError> {
    let (selection, raw_ids) = Selection::read(&body);
    session::verify_csrf(&session, &selection.csrf_token)?;
    let ids = Selection::ids(&raw_ids)?;
    if !selection.confirmed {
        let students =
            db::with_conn(&state.db, move |conn| Ok(Student::find_many(conn, &ids)?)).await?;
        return Ok(Either::Left(DeleteSelectedPage {
            nav: Nav::new(&session)?.at("staff"),
            students,
            csrf_token: session::csrf_token(&session)?,
        }));
    }
    let who = staff_name(&session);
    let deleted = write(&state, move |conn| {
        let deleted = Student::delete_many(conn, &ids)?;
        history::deleted(conn, &who, &deleted)?;
        if !deleted.is_empty() {
            write_log::record(conn, &who, &deleted_summary(&deleted))?;
        }
        Ok(deleted.len())
    })
    .await?;
    session::flash(
        &session,
        format!(
            "Deleted {deleted} student{}.",
            if deleted == 1 { "" } else { "s" }
        ),
    );
    Ok(Either::Right(back_to_list()))
}

/// The write log's line for a bulk delete: the count and the first few names.
fn deleted_summary(deleted: &[Student]) -> String {
    const NAMED: usize = 5;
    let names: Vec<String> = deleted
        .iter()
        .take(NAMED)
        .map(|s| format!("“{}”", s.name))
        .collect();
    let more = deleted.len().saturating_sub(NAMED);
    format!(
        "deleted {} student{}: {}{}",
        deleted.len(),
        if deleted.len() == 1 { "" } else { "s" },
        names.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
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
