//! The average-age page, with its cache badge.

use std::sync::Arc;
use std::time::Duration;

use actix_session::Session;
use actix_web::{web, CustomizeResponder, Responder};
use askama::Template;
use askama_web::WebTemplate;

use super::{AppState, Nav};
use crate::cache::{average, CacheOutcome, Tier};
use crate::error::AppError;

#[derive(Template, WebTemplate)]
#[template(path = "students/average.html")]
pub struct AveragePage {
    nav: Nav,
    average_text: Option<String>,
    student_count: i64,
    badge_class: &'static str,
    badge_icon: &'static str,
    badge_text: &'static str,
    explanation: &'static str,
    elapsed: String,
    /// Rendered by [`super::age_chart::RenderedChart`], whose template escapes what it shows.
    chart: Option<Arc<str>>,
}

pub async fn page(
    state: web::Data<AppState>,
    session: Session,
) -> Result<CustomizeResponder<AveragePage>, AppError> {
    let lookup = average::lookup(&state.cache, &state.db).await?;
    state.history.note_hit(lookup.tier);
    let (badge_class, badge_icon, badge_text, explanation) = match (lookup.outcome, lookup.tier) {
        (CacheOutcome::Hit, Some(Tier::Memory)) => (
            "hit",
            "✔",
            "Cache hit · memory",
            "Served from this server’s memory: neither a database query nor a Redis call was needed.",
        ),
        (CacheOutcome::Hit, _) => (
            "hit",
            "✔",
            "Cache hit · Redis",
            "Served from Redis: no database query was needed.",
        ),
        (CacheOutcome::Miss, _) => (
            "miss",
            "↻",
            "Cache miss",
            "Computed with one SQL aggregate and stored in Redis for the next visitors.",
        ),
        (CacheOutcome::Bypass, _) => (
            "bypass",
            "⚠",
            "Cache unavailable",
            "Redis could not be used, so the value was computed from the database.",
        ),
    };
    let mut nav = Nav::new(&session)?;
    nav.cache_outcome = Some(lookup.outcome.label());
    let page = AveragePage {
        nav,
        average_text: lookup.stats.average_age.map(|a| format!("{a:.2}")),
        student_count: lookup.stats.student_count,
        badge_class,
        badge_icon,
        badge_text,
        explanation,
        elapsed: human_duration(lookup.elapsed),
        chart: state.chart.html(&lookup.stats.ages),
    };
    let mut page = page
        .customize()
        .insert_header(("X-Cache", lookup.outcome.header()));
    if let Some(tier) = lookup.tier {
        page = page.insert_header(("X-Cache-Tier", tier.label()));
    }
    Ok(page)
}

/// `850 µs`, `12.3 ms`, `1.20 s`.
pub fn human_duration(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 1000.0 {
        format!("{micros:.0} µs")
    } else if micros < 1e6 {
        format!("{:.1} ms", micros / 1000.0)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_shown_in_human_units() {
        assert_eq!(human_duration(Duration::from_micros(850)), "850 µs");
        assert_eq!(human_duration(Duration::from_micros(12_340)), "12.3 ms");
        assert_eq!(human_duration(Duration::from_millis(1200)), "1.20 s");
    }
}
