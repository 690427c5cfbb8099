//! The staff's student pages: list and search, add, edit, delete. Every write commits, then
//! invalidates the cached average, then answers.

use std::sync::Arc;

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, CustomizeResponder, Either, Responder};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use crate::cache::lookup;
use crate::db;
use crate::error::AppError;
use crate::forms::{search_needle, CsrfOnlyForm, StudentAge, StudentForm, StudentFormErrors};
use crate::models::cached::StaffSearchCount;
use crate::models::student::{ListOrder, StudentFilter, StudentRecord};
use crate::models::student_window::{Cursor, Matches, Position, Window};
use crate::models::{history, write_log, NewStudent, Student};
use crate::session;
use crate::views::sort_link::SortLink;
use crate::views::{parse_page, thousands, AppState, Nav, PER_PAGE};

/// A redirect back to the list, or the form again with its errors (422).
type FormResult = Result<Either<web::Redirect, CustomizeResponder<StudentFormPage>>, AppError>;

pub async fn home() -> web::Redirect {
    web::Redirect::to("/admin/students").see_other()
}

/// `/admin/students`' query: the search, the age range, the order, the place in the list.
#[derive(Deserialize)]
pub struct IndexQuery {
    /// The page's number as the pager counts it, or `last`; alone, a number typed in.
    page: Option<String>,
    /// The row the page follows (`Next`) or precedes (`Previous`), as `Cursor::encode` says it.
    after: Option<String>,
    before: Option<String>,
    #[serde(default)]
    q: String,
    sort: Option<String>,
    age_min: Option<String>,
    age_max: Option<String>,
}

/// Where in the list a request asks to be, and the page number the pager gave it, if any.
enum Requested {
    First,
    After(Cursor, Option<i64>),
    Before(Cursor, Option<i64>),
    Last,
    /// `?page=N` alone: typed in, so read by OFFSET.
    Typed(i64),
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

    /// Where the page is: `?after=` or `?before=` (a link of the pager's), `?page=last`, or a
    /// page number.
    fn requested(&self, order: ListOrder) -> Result<Requested, AppError> {
        let cursor = |raw: &str| {
            Cursor::parse(raw, order).ok_or_else(|| {
                AppError::BadRequest(
                    "The place in the list is not one this list's links give; \
                     start again from the first page."
                        .into(),
                )
            })
        };
        let last = self.page.as_deref().map(str::trim) == Some("last");
        let number = match self.page.as_deref() {
            Some(_) if last => None,
            raw => raw.map(|_| parse_page(raw)).transpose()?,
        };
        Ok(match (self.after.as_deref(), self.before.as_deref()) {
            (Some(_), Some(_)) => {
                return Err(AppError::BadRequest(
                    "Ask for the rows after one place or before it, not both.".into(),
                ))
            }
            (Some(_), None) | (None, Some(_)) if last => {
                return Err(AppError::BadRequest(
                    "The last page has no place to start from.".into(),
                ))
            }
            (Some(after), None) => Requested::After(cursor(after)?, number),
            (None, Some(before)) => Requested::Before(cursor(before)?, number),
            (None, None) if last => Requested::Last,
            (None, None) => match number {
                None | Some(1) => Requested::First,
                Some(n) => Requested::Typed(n),
            },
        })
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
    /// "60 matching students." or "More than 10,000 matching students."
    count_text: String,
    pager: ListPager,
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
    let (filter, order) = query.parse()?;
    let requested = query.requested(order)?;
    let keep = filter_query(&filter);
    let sort_query = match order {
        ListOrder::Id => String::new(),
        order => format!("sort={}&", order.as_str()),
    };
    // A search's count through the cache: the same for each of its pages and orders.
    let counted = match filter.name_contains {
        Some(_) => {
            let query = StaffSearchCount {
                filter: filter.clone(),
                limit: PER_PAGE,
            };
            Some(*lookup::lookup(&state.cache, &state.db, &query).await?.value)
        }
        None => None,
    };
    let read = filter.clone();
    let (matches, window, requested) = db::with_conn(&state.db, move |conn| {
        let (matches, plan) = match counted {
            Some(counted) => (
                counted.matches,
                read.plan(order, counted.matches, counted.total, PER_PAGE),
            ),
            None => read.plan_reads(conn, order, PER_PAGE)?,
        };
        let position = match &requested {
            Requested::First => Position::First,
            Requested::After(cursor, _) => Position::After(cursor.clone()),
            Requested::Before(cursor, _) => Position::Before(cursor.clone()),
            // Known, the count puts the last page's first row where page numbers from the
            // first page would: the same pages either way.
            Requested::Last => Position::Last(match matches.capped {
                false if matches.count > 0 => (matches.count - 1) % PER_PAGE + 1,
                _ => PER_PAGE,
            }),
            Requested::Typed(n) => Position::Skip((n - 1).saturating_mul(PER_PAGE)),
        };
        let window = read.window(conn, order, plan, &position, PER_PAGE)?;
        Ok((matches, window, requested))
    })
    .await?;
    let last_page = (!matches.capped).then(|| ((matches.count + PER_PAGE - 1) / PER_PAGE).max(1));
    if let (Requested::Typed(n), Some(last)) = (&requested, last_page) {
        if *n > last {
            return Err(AppError::NotFound);
        }
    }
    // The export takes what the pager keeps: the filter and the order.
    let kept = format!("{keep}{sort_query}");
    let count_text = match matches {
        Matches {
            count,
            capped: true,
        } => format!("More than {} matching students.", thousands(count)),
        Matches { count: 1, .. } => "1 matching student.".to_owned(),
        Matches { count, .. } => format!("{} matching students.", thousands(count)),
    };
    Ok(StudentIndexPage {
        nav: Nav::new(&session)?.at("staff"),
        pager: ListPager::new(&window, &requested, last_page, order, &kept),
        students: window.rows,
        count_text,
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
        csrf_token: session::csrf_token(&session)?,
    })
}

/// The staff list's pager: first, previous, next and last, each a link to a place in the
/// list rather than a page number, so that no page is read by skipping the ones before it.
pub struct ListPager {
    pub first: Option<String>,
    pub previous: Option<String>,
    pub next: Option<String>,
    pub last: Option<String>,
    /// "Page 3 of 20,000", "Page 3" (the count stopped early), or "Last page".
    pub label: Option<String>,
}

impl ListPager {
    fn new(
        window: &Window,
        requested: &Requested,
        last_page: Option<i64>,
        order: ListOrder,
        kept: &str,
    ) -> ListPager {
        let number = match requested {
            _ if window.is_first => Some(1),
            Requested::First => Some(1),
            Requested::After(_, n) | Requested::Before(_, n) => *n,
            Requested::Last => last_page,
            Requested::Typed(n) => Some(*n),
        };
        let href = |page: Option<i64>, at: Option<(&str, &StudentRecord)>| {
            let mut query = kept.to_owned();
            if let Some(page) = page {
                query.push_str(&format!("page={page}&"));
            }
            if let Some((side, row)) = at {
                let cursor = Cursor::of(row, order).encode();
                query.push_str(&serde_urlencoded::to_string([(side, cursor)]).unwrap_or_default());
            }
            match query.trim_end_matches('&') {
                "" => "/admin/students".to_owned(),
                query => format!("?{query}"),
            }
        };
        let first_href = href(None, None);
        let previous = match (window.rows.first(), number) {
            (_, Some(2)) => Some(first_href.clone()),
            (Some(row), n) => Some(href(n.map(|n| n - 1), Some(("before", row)))),
            (None, _) => None,
        };
        let next = window
            .rows
            .last()
            .map(|row| href(number.map(|n| n + 1), Some(("after", row))));
        let last = {
            let mut query = kept.to_owned();
            query.push_str("page=last");
            format!("?{query}")
        };
        ListPager {
            first: window.more_before.then_some(first_href),
            previous: previous.filter(|_| window.more_before),
            next: next.filter(|_| window.more_after),
            last: window.more_after.then_some(last),
            label: match (number, last_page) {
                (Some(n), Some(of)) => Some(format!("Page {} of {}", thousands(n), thousands(of))),
                (Some(n), None) => Some(format!("Page {}", thousands(n))),
                (None, _) if matches!(requested, Requested::Last) => Some("Last page".into()),
                (None, _) => None,
            },
        }
    }

    /// Whether there is anywhere to go: one page has no pager.
    pub fn shown(&self) -> bool {
        self.previous.is_some() || self.next.is_some()
    }
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
