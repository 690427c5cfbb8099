//! The average-age page, with its cache badge.

use std::sync::Arc;
use std::time::Duration;

use actix_session::Session;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::http_cache::HttpCaching;
use super::rendered::{Rendered, TIMING_MARK};
use super::{AppState, Nav};
use crate::cache::{lookup, CacheOutcome, Tier};
use crate::error::AppError;
use crate::models::cached::AverageAgeQuery;

#[derive(Template)]
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

impl AveragePage {
    /// "1,000": with its thousands separators.
    fn student_count_text(&self) -> String {
        super::thousands(self.student_count)
    }
}

pub async fn page(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
) -> Result<HttpResponse, AppError> {
    let lookup = lookup::lookup(&state.cache, &state.db, &AverageAgeQuery).await?;
    state.history.note_hit(lookup.tier);
    let mut nav = Nav::new(&session)?.at("average");
    let caching = HttpCaching::for_page(&lookup, "average.html", nav.staff.is_some(), state.debug);
    if caching.is_fresh(&req) {
        return Ok(super::not_modified(&lookup, &caching));
    }
    let elapsed = human_duration(lookup.elapsed);
    // A visitor's page is named by its validator but for the timing (see `rendered`).
    if let Some(kept) = caching.etag().and_then(|etag| state.rendered.get(etag)) {
        return Ok(super::cached_html(
            &lookup,
            &caching,
            kept.with_timing(&elapsed),
        ));
    }
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
    nav.cache_outcome = Some(lookup.outcome.label());
    let page = AveragePage {
        nav,
        average_text: lookup.value.average_text(),
        student_count: lookup.value.student_count,
        badge_class,
        badge_icon,
        badge_text,
        explanation,
        elapsed: match caching.etag() {
            Some(_) => TIMING_MARK.to_owned(),
            None => elapsed.clone(),
        },
        chart: state.chart.html(&lookup.value.ages),
    };
    // Sized for the chart as well: grown from the template's own size hint, the page was copied
    // twice on its way to 4 KB.
    let chart_len = page.chart.as_deref().map_or(0, str::len);
    let mut body = String::with_capacity(AveragePage::SIZE_HINT + chart_len);
    page.render_into(&mut body).map_err(AppError::unexpected)?;
    let Some(etag) = caching.etag() else {
        return Ok(super::cached_html(&lookup, &caching, body));
    };
    let kept = Rendered::with_timing_hole(&body)
        .ok_or_else(|| AppError::unexpected(anyhow::anyhow!("the average page lost its timing")))?;
    let body = kept.with_timing(&elapsed);
    state.rendered.keep(etag.clone(), kept);
    Ok(super::cached_html(&lookup, &caching, body))
}

/// `850 µs`, `12.3 ms`, `1.20 s`; in integers, for the same reason as `Server-Timing`.
pub fn human_duration(d: Duration) -> String {
    // On every average page: integers pushed, as `format!` cost 500 instructions of a hit.
    let nanos = d.as_nanos();
    let mut digits = itoa::Buffer::new();
    let mut out = String::with_capacity(16);
    if nanos < 999_500 {
        out.push_str(digits.format((nanos + 500) / 1_000));
        out.push_str(" µs");
    } else if nanos < 999_950_000 {
        let tenths_of_ms = (nanos + 50_000) / 100_000;
        out.push_str(digits.format(tenths_of_ms / 10));
        out.push('.');
        out.push_str(digits.format(tenths_of_ms % 10));
        out.push_str(" ms");
    } else {
        let hundredths_of_s = (nanos + 5_000_000) / 10_000_000;
        out.push_str(digits.format(hundredths_of_s / 100));
        out.push_str(if hundredths_of_s % 100 < 10 {
            ".0"
        } else {
            "."
        });
        out.push_str(digits.format(hundredths_of_s % 100));
        out.push_str(" s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_shown_in_human_units() {
        assert_eq!(human_duration(Duration::from_micros(850)), "850 µs");
        assert_eq!(human_duration(Duration::from_micros(12_340)), "12.3 ms");
        assert_eq!(human_duration(Duration::from_millis(1200)), "1.20 s");
        // Each unit starts where rounding would print a thousand of the one before.
        assert_eq!(human_duration(Duration::from_nanos(999_499)), "999 µs");
        assert_eq!(human_duration(Duration::from_nanos(999_500)), "1.0 ms");
        assert_eq!(
            human_duration(Duration::from_nanos(999_949_999)),
            "999.9 ms"
        );
        assert_eq!(human_duration(Duration::from_nanos(999_950_000)), "1.00 s");
    }
}
