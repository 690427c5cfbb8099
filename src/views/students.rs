//! The public student list.

use std::sync::Arc;

use actix_session::Session;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::http_cache::HttpCaching;
use super::{parse_page, AppState, Nav, Pager, PER_PAGE};
use crate::cache::lookup;
use crate::error::AppError;
use crate::models::cached::StudentListQuery;
use crate::models::student::StudentPage;

#[derive(Deserialize)]
pub struct ListQuery {
    page: Option<String>,
}

#[derive(Template)]
#[template(path = "students/list.html")]
pub struct StudentListPage {
    nav: Nav,
    students: Arc<StudentPage>,
    pager: Pager,
}

/// A page of the list, cached like the average (see `models::cached`), with its `X-Cache`.
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let page = parse_page(query.page.as_deref())?;
    let query = StudentListQuery {
        page,
        per_page: PER_PAGE,
        index: Arc::clone(&state.page_index),
    };
    let lookup = lookup::lookup(&state.cache, &state.db, &query).await?;
    state.history.note_hit(lookup.tier);
    let mut nav = Nav::new(&session)?.at("students");
    let caching = HttpCaching::for_page(
        &lookup,
        &format!("list.html.p{page}"),
        nav.staff.is_some(),
        state.debug,
    );
    if caching.is_fresh(&req) {
        return Ok(super::not_modified(&lookup, &caching));
    }
    // A visitor's page is named exactly by its validator (see `rendered`).
    if let Some(body) = caching.etag().and_then(|etag| state.rendered.get(etag)) {
        return Ok(super::cached_html(&lookup, &caching, body));
    }
    nav.cache_outcome = Some(lookup.outcome.label());
    let body = StudentListPage {
        nav,
        pager: Pager::new(page, lookup.value.total, String::new())?,
        students: Arc::clone(&lookup.value),
    }
    .render()
    .map_err(AppError::unexpected)?;
    let body = web::Bytes::from(body);
    if let Some(etag) = caching.etag() {
        state.rendered.keep(etag.clone(), body.clone());
    }
    Ok(super::cached_html(&lookup, &caching, body))
}
