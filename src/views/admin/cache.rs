//! `/admin/cache`: the cache as it is now and over the last hour, and two buttons.

use std::sync::Arc;

use actix_session::Session;
use actix_web::web;
use askama::Template;
use askama_web::WebTemplate;
use diesel::prelude::*;

use super::cache_state::{self, span, FromRedis};
use super::students::staff_name;
use crate::cache::generation::Generation;
use crate::cache::history::{self, SERIES};
use crate::cache::lookup;
use crate::cache::schema::cache_invalidations;
use crate::cache::trust::now_ms;
use crate::db;
use crate::error::AppError;
use crate::forms::CsrfOnlyForm;
use crate::models::cached::AverageAgeQuery;
use crate::models::write_log::{self, LoggedWrite};
use crate::session;
use crate::views::minute_chart::{MinuteChart, BASELINE, CHART_HEIGHT, CHART_WIDTH, PLOT_TOP};
use crate::views::{AppState, Nav};

/// The figures of one series over the hour, and its per-minute chart.
pub struct SeriesView {
    pub name: &'static str,
    pub id: String,
    pub this_instance: u64,
    pub all_instances: Option<u64>,
    pub chart: MinuteChart,
}

pub struct PendingRow {
    pub id: i32,
    pub key: String,
    pub age: String,
}

pub struct WriteRow {
    pub who: String,
    pub what: String,
    pub when: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/cache.html")]
pub struct CachePage {
    nav: Nav,
    csrf_token: String,
    series: Vec<SeriesView>,
    hit_ratio_this: String,
    hit_ratio_all: String,
    redis: Option<FromRedis>,
    last_hit_tier: &'static str,
    gate: &'static str,
    gate_ok: bool,
    serving_from_memory: bool,
    redis_master: String,
    instance_id: String,
    consistency_checks: u64,
    inconsistencies: u64,
    pending: Vec<PendingRow>,
    writes: Vec<WriteRow>,
    chart_width: u32,
    chart_height: u32,
    baseline: f64,
    plot_top: f64,
}

fn ratio(hits: u64, misses: u64, bypasses: u64) -> String {
    let all = hits + misses + bypasses;
    if all == 0 {
        "no requests".into()
    } else {
        format!("{:.1}%", 100.0 * hits as f64 / all as f64)
    }
}

pub async fn page(state: web::Data<AppState>, session: Session) -> Result<CachePage, AppError> {
    let history = Arc::clone(&state.history);
    let cache = Arc::clone(&state.cache);
    let read =
        db::blocking(move || Ok::<_, AppError>(cache_state::read(&history, &cache).ok())).await?;
    let (pending, writes) = db::with_conn(&state.db, |conn| {
        Ok((pending_invalidations(conn)?, write_log::latest(conn)?))
    })
    .await?;
    let now = now_ms() as i64;
    let (series, hit_ratio_this, hit_ratio_all) = series(&state.history, read.as_ref());
    let (gate, gate_ok) = gate(&state.cache);
    let (cache, metrics) = (&state.cache, &state.metrics);
    Ok(CachePage {
        csrf_token: session::csrf_token(&session)?,
        nav: Nav::new(&session)?.at("cache"),
        series,
        hit_ratio_this,
        hit_ratio_all,
        redis: read,
        last_hit_tier: state
            .history
            .last_hit_tier()
            .map_or("none yet", |t| t.label()),
        gate,
        gate_ok,
        serving_from_memory: cache.local().is_serving(),
        redis_master: state
            .cache
            .redis_master()
            .unwrap_or_else(|| "none yet (no sentinel has named one)".into()),
        instance_id: cache.local().instance_id.clone(),
        consistency_checks: metrics.cache.cache_consistency_checks.get(),
        inconsistencies: metrics.cache.cache_inconsistencies.get(),
        pending: pending
            .into_iter()
            .map(|(id, key, at)| PendingRow {
                id,
                key,
                age: span(now - at),
            })
            .collect(),
        writes: writes
            .into_iter()
            .map(|w: LoggedWrite| WriteRow {
                who: if w.who.is_empty() {
                    "—".into()
                } else {
                    w.who
                },
                what: w.what,
                when: format!("{} ago", span(now - w.at_ms)),
            })
            .collect(),
        chart_width: CHART_WIDTH,
        chart_height: CHART_HEIGHT,
        baseline: BASELINE,
        plot_top: PLOT_TOP,
    })
}

/// The outbox rows not yet applied: id, key, created (Unix ms).
fn pending_invalidations(conn: &mut db::DbConn) -> QueryResult<Vec<(i32, String, i64)>> {
    cache_invalidations::table
        .order(cache_invalidations::id)
        .select((
            cache_invalidations::id,
            cache_invalidations::cache_key,
            cache_invalidations::created_at_ms,
        ))
        .load(conn)
}

/// Each series over the hour, for this instance and for all (when Redis answered), and the
/// two hit ratios.
fn series(
    history: &history::History,
    read: Option<&FromRedis>,
) -> (Vec<SeriesView>, String, String) {
    let mine = history.minutes();
    let mut all = mine.clone();
    for other in read.iter().flat_map(|r| &r.others) {
        history::add_minutes(&mut all, other);
    }
    let (this, every) = (history::totals(&mine), history::totals(&all));
    let views = SERIES
        .iter()
        .enumerate()
        .map(|(i, &name)| SeriesView {
            name,
            id: name.replace(' ', "-"),
            this_instance: this[i],
            all_instances: read.map(|_| every[i]),
            chart: MinuteChart::new(name, &all, i),
        })
        .collect();
    (
        views,
        ratio(this[0], this[1], this[2]),
        ratio(every[0], every[1], every[2]),
    )
}

/// Whether this instance reads Redis now, and why not.
fn gate(cache: &crate::cache::Cache) -> (&'static str, bool) {
    if cache.is_usable() {
        ("usable: requests read Redis", true)
    } else {
        (
            "distrusted: a Redis call failed or an invalidation is pending; pages come from the \
             database until the outbox is applied",
            false,
        )
    }
}

/// "Clear cache": what `cachewithredis cache-clear` does.
pub async fn clear(
    state: web::Data<AppState>,
    session: Session,
    form: web::Form<CsrfOnlyForm>,
) -> Result<web::Redirect, AppError> {
    session::verify_csrf(&session, &form.csrf_token)?;
    let message = match invalidate(&state, staff_name(&session), "cleared the cache").await? {
        Ok(generation) => format!("The cache was cleared (generation {generation})."),
        Err(e) => format!("Redis could not be reached, so the cache was not cleared: {e}."),
    };
    session::flash(&session, message);
    Ok(back())
}

/// "Recompute now": clears, then runs the aggregate and stores it, as a miss would.
pub async fn recompute(
    state: web::Data<AppState>,
    session: Session,
    form: web::Form<CsrfOnlyForm>,
) -> Result<web::Redirect, AppError> {
    session::verify_csrf(&session, &form.csrf_token)?;
    let cleared = invalidate(&state, staff_name(&session), "recomputed the cache").await?;
    let lookup = lookup::lookup(&state.cache, &state.db, &AverageAgeQuery).await?;
    let average = lookup.value.average_age.map_or_else(
        || "no average (no students)".into(),
        |a| format!("{a:.2} years"),
    );
    let message = match cleared {
        Ok(_) => format!(
            "Recomputed: {average} over {} students.",
            lookup.value.student_count
        ),
        Err(e) => format!("Redis could not be reached, so nothing was stored: {e}."),
    };
    session::flash(&session, message);
    Ok(back())
}

/// Invalidates and logs who did it; the inner error is Redis', for the flash message.
async fn invalidate(
    state: &AppState,
    who: String,
    what: &'static str,
) -> Result<Result<Generation, String>, AppError> {
    let cache = Arc::clone(&state.cache);
    // As `cache-clear`: the generation's mark moves first, so copies in memory go too. No
    // connection is held meanwhile: the wait for acknowledgements can take seconds.
    let invalidated =
        db::blocking(move || Ok::<_, AppError>(cache.clear().map_err(|e| e.to_string()))).await?;
    if invalidated.is_ok() {
        state.cache.metrics().cache_invalidations.inc();
        db::with_conn(&state.db, move |conn| {
            Ok(write_log::record(conn, &who, what)?)
        })
        .await?;
    }
    Ok(invalidated)
}

fn back() -> web::Redirect {
    web::Redirect::to("/admin/cache").see_other()
}
