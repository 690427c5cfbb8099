//! The JSON twin of the average-age page.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::http_cache::HttpCaching;
use super::AppState;
use crate::cache::{lookup, Tier};
use crate::error::AppError;
use crate::models::cached::AverageAgeQuery;

#[derive(Serialize)]
struct AverageAgeBody {
    /// Rounded as the page rounds it (the very digits it prints), so that the two agree.
    average_age: Option<f64>,
    student_count: i64,
    /// Exact: `age_sum / student_count` is the average to any precision.
    age_sum: u64,
    cache: &'static str,
    /// `"memory"` or `"redis"` on a hit, `null` otherwise.
    tier: Option<&'static str>,
}

/// The API has no session: its answers are always public.
pub async fn average_age(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let lookup = lookup::lookup(&state.cache, &state.db, &AverageAgeQuery).await?;
    state.history.note_hit(lookup.tier);
    let caching = HttpCaching::for_page(&lookup, "average.json", false, false);
    if caching.is_fresh(&req) {
        return Ok(super::not_modified(&lookup, &caching));
    }
    let mut response = HttpResponse::Ok();
    for header in super::cache_headers(&lookup) {
        response.insert_header(header);
    }
    caching.apply(&mut response);
    Ok(response.json(AverageAgeBody {
        average_age: lookup
            .value
            .average_text()
            .and_then(|text| text.parse().ok()),
        student_count: lookup.value.student_count,
        age_sum: lookup.value.age_sum(),
        cache: lookup.outcome.label(),
        tier: lookup.tier.map(Tier::label),
    }))
}
