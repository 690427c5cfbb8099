//! The public student list.

use std::sync::Arc;

use actix_session::Session;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::http_cache::HttpCaching;
use super::sort_link::SortLink;
use super::{parse_page, search_query, AppState, Nav, Pager, PER_PAGE};
use crate::cache::lookup;
use crate::error::AppError;
use crate::forms::search_needle;
use crate::models::cached::{hex, StudentListQuery, StudentSearchQuery};
use crate::models::student::{ListOrder, StudentPage};

#[derive(Deserialize)]
pub struct ListQuery {
    page: Option<String>,
    #[serde(default)]
    q: String,
    sort: Option<String>,
}

#[derive(Template)]
#[template(path = "students/list.html")]
pub struct StudentListPage {
    nav: Nav,
    students: Arc<StudentPage>,
    pager: Pager,
    q: String,
    /// `?sort=` when not the insertion order: the search form keeps it.
    sort: &'static str,
    name_sort: SortLink,
    age_sort: SortLink,
}

/// `?sort=`: absent is the insertion order; anything unknown is a 400.
fn parse_order(raw: Option<&str>) -> Result<ListOrder, AppError> {
    match raw {
        None | Some("") => Ok(ListOrder::Id),
        Some(raw) => ListOrder::parse(raw)
            .filter(|o| o.is_public())
            .ok_or_else(|| {
                AppError::BadRequest(format!(
                    "Sort by name, -name, age, -age or id, not {raw:?}."
                ))
            }),
    }
}

/// A page of the list, cached like the average (see `models::cached`), with its `X-Cache`.
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let page = parse_page(query.page.as_deref())?;
    let needle = search_needle(&query.q)?;
    let order = parse_order(query.sort.as_deref())?;
    // The plain list keeps its own keys and its index of deep pages; a search or another
    // order is a query of its own, under the same invalidation.
    let lookup = if needle.is_none() && order == ListOrder::Id {
        let query = StudentListQuery {
            page,
            per_page: PER_PAGE,
        };
        lookup::lookup(&state.cache, &state.db, &query).await?
    } else {
        let query = StudentSearchQuery {
            name_contains: needle.clone(),
            order,
            page,
            per_page: PER_PAGE,
        };
        lookup::lookup(&state.cache, &state.db, &query).await?
    };
    state.history.note_hit(lookup.tier);
    let mut nav = Nav::new(&session)?.at("students");
    let caching = HttpCaching::for_page(
        &lookup,
        &representation(page, order, needle.as_deref()),
        nav.staff.is_some(),
        state.debug,
    );
    if caching.is_fresh(&req) {
        return Ok(super::not_modified(&lookup, &caching));
    }
    // A visitor's page is named exactly by its validator (see `rendered`).
    if let Some(kept) = caching.etag().and_then(|etag| state.rendered.get(etag)) {
        return Ok(super::cached_html(&lookup, &caching, kept.with_timing("")));
    }
    nav.cache_outcome = Some(lookup.outcome.label());
    let q = needle.unwrap_or_default();
    let q_query = search_query(&q);
    let sort_query = match order {
        ListOrder::Id => String::new(),
        order => format!("sort={}&", order.as_str()),
    };
    let body = StudentListPage {
        nav,
        pager: Pager::new(page, lookup.value.total, format!("{q_query}{sort_query}"))?,
        students: Arc::clone(&lookup.value),
        name_sort: SortLink::new(order, ListOrder::Name, &q_query),
        age_sort: SortLink::new(order, ListOrder::Age, &q_query),
        sort: match order {
            ListOrder::Id => "",
            order => order.as_str(),
        },
        q,
    }
    .render()
    .map_err(AppError::unexpected)?;
    let body = web::Bytes::from(body);
    if let Some(etag) = caching.etag() {
        state
            .rendered
            .keep(etag.clone(), super::rendered::Rendered::whole(body.clone()));
    }
    Ok(super::cached_html(&lookup, &caching, body))
}

/// What the validator names besides the generation: the page, the order and the search (in
/// hex, so that any text is a valid `ETag`).
fn representation(page: i64, order: ListOrder, needle: Option<&str>) -> String {
    let mut representation = format!("list.html.p{page}");
    if order != ListOrder::Id || needle.is_some() {
        representation.push_str(&format!(
            ".{}.{}",
            order.as_str(),
            hex(needle.unwrap_or_default())
        ));
    }
    representation
}
