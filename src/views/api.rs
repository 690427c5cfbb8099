//! The JSON twin of the average-age page.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::AppState;
use crate::cache::{lookup, Tier};
use crate::error::AppError;
use crate::models::cached::AverageAgeQuery;

#[derive(Serialize)]
struct AverageAgeBody {
    average_age: Option<f64>,
    student_count: i64,
    cache: &'static str,
    /// `"memory"` or `"redis"` on a hit, `null` otherwise.
    tier: Option<&'static str>,
}

pub async fn average_age(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let lookup = lookup::lookup(&state.cache, &state.db, &AverageAgeQuery).await?;
    state.history.note_hit(lookup.tier);
    let mut response = HttpResponse::Ok();
    for header in super::cache_headers(&lookup) {
        response.insert_header(header);
    }
    Ok(response.json(AverageAgeBody {
        average_age: lookup.value.average_age,
        student_count: lookup.value.student_count,
        cache: lookup.outcome.label(),
        tier: lookup.tier.map(Tier::label),
    }))
}
