//! `/admin/cache`: the cache as it is now and over the last hour, and two buttons.

use std::collections::HashMap;
use std::sync::Arc;

use actix_session::Session;
use actix_web::web;
use askama::Template;
use askama_web::WebTemplate;
use diesel::prelude::*;

use super::students::staff_name;
use crate::cache::breaker::now_ms;
use crate::cache::history::{self, Minute, Published, MINUTES, SERIES};
use crate::cache::{average, Cache};
use crate::db;
use crate::error::AppError;
use crate::forms::CsrfOnlyForm;
use crate::models::write_log::{self, LoggedWrite};
use crate::schema::cache_invalidations;
use crate::session;
use crate::views::{AppState, Nav};

/// The figures of one series over the hour, and its per-minute chart.
pub struct SeriesView {
    pub name: &'static str,
    pub id: String,
    pub this_instance: u64,
    pub all_instances: Option<u64>,
    pub chart: MinuteChart,
}

/// A per-minute bar chart (server-rendered SVG), one bar per minute of the hour.
pub struct MinuteChart {
    pub bars: Vec<MinuteBar>,
    pub peak: u64,
    pub summary: String,
}

pub struct MinuteBar {
    pub x: String,
    pub y: String,
    pub height: String,
    pub label: String,
}

/// The chart's coordinate space: one 10-unit column per minute.
pub const CHART_WIDTH: u32 = 600;
pub const CHART_HEIGHT: u32 = 130;
const PLOT_TOP: f64 = 4.0;
pub const BASELINE: f64 = 110.0;

impl MinuteChart {
    fn new(name: &str, minutes: &[Minute], series: usize) -> MinuteChart {
        let peak = minutes.iter().map(|m| m.counts[series]).max().unwrap_or(0);
        let step = f64::from(CHART_WIDTH) / MINUTES as f64;
        let offset = MINUTES.saturating_sub(minutes.len());
        let bars = minutes
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let count = m.counts[series];
                let height = if peak == 0 {
                    0.0
                } else {
                    (BASELINE - PLOT_TOP) * count as f64 / peak as f64
                };
                MinuteBar {
                    x: format!("{:.1}", step * (i + offset) as f64 + 1.0),
                    y: format!("{:.1}", BASELINE - height),
                    height: format!("{height:.1}"),
                    label: format!("{} UTC: {count} {name}", clock(m.minute)),
                }
            })
            .collect();
        MinuteChart {
            bars,
            peak,
            summary: format!("{name} per minute over the last hour, at most {peak} in a minute"),
        }
    }
}

/// `HH:MM` of a Unix minute, UTC.
fn clock(minute: u64) -> String {
    format!("{:02}:{:02}", (minute / 60) % 24, minute % 60)
}

/// `3.2 s`, `4 min 10 s`: how long ago, or how long left.
fn span(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 10_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 120_000 {
        format!("{} s", ms / 1000)
    } else {
        format!("{} min {} s", ms / 60_000, (ms / 1000) % 60)
    }
}

/// The value in Redis, as the page shows it.
pub struct CachedValue {
    pub average: String,
    pub count: i64,
    pub generation: u64,
    pub age: String,
    pub ttl_left: String,
}

pub struct InstanceRow {
    pub id: String,
    pub address: String,
    pub lease: String,
    pub acknowledged: String,
    pub from_memory: &'static str,
    pub this_one: bool,
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

/// What the page reads from Redis; `None` where Redis did not answer.
struct FromRedis {
    value: Option<CachedValue>,
    generation: u64,
    instances: Vec<InstanceRow>,
    /// Every other live instance's published minutes.
    others: Vec<Vec<Minute>>,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/cache.html")]
pub struct CachePage {
    nav: Nav,
    csrf_token: String,
    series: Vec<SeriesView>,
    hit_ratio_this: String,
    hit_ratio_all: String,
    redis: Option<FromRedisView>,
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
}

pub struct FromRedisView {
    pub value: Option<CachedValue>,
    pub generation: u64,
    pub instances: Vec<InstanceRow>,
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
    let read = db::blocking(move || Ok::<_, AppError>(read_redis(&history, &cache).ok())).await?;
    let (pending, writes) = db::with_conn(&state.db, |conn| {
        let pending = cache_invalidations::table
            .order(cache_invalidations::id)
            .select((
                cache_invalidations::id,
                cache_invalidations::cache_key,
                cache_invalidations::created_at_ms,
            ))
            .load::<(i32, String, i64)>(conn)?;
        Ok((pending, write_log::latest(conn)?))
    })
    .await?;
    let now = now_ms() as i64;

    let mine = state.history.minutes();
    let mut all = mine.clone();
    if let Some(read) = &read {
        for other in &read.others {
            history::add_minutes(&mut all, other);
        }
    }
    let (this_totals, all_totals) = (history::totals(&mine), history::totals(&all));
    let series = SERIES
        .iter()
        .enumerate()
        .map(|(i, &name)| SeriesView {
            name,
            id: name.replace(' ', "-"),
            this_instance: this_totals[i],
            all_instances: read.as_ref().map(|_| all_totals[i]),
            chart: MinuteChart::new(name, &all, i),
        })
        .collect();
    let cache = &state.cache;
    let (gate, gate_ok) = if cache.is_usable() {
        ("usable: requests read Redis", true)
    } else if !cache.is_reachable() {
        (
            "unreachable: the circuit breaker is open, pages come from the database",
            false,
        )
    } else {
        (
            "held: an invalidation is pending, pages come from the database until it is applied",
            false,
        )
    };
    let metrics = &state.metrics;
    Ok(CachePage {
        csrf_token: session::csrf_token(&session)?,
        nav: Nav::new(&session)?,
        series,
        hit_ratio_this: ratio(this_totals[0], this_totals[1], this_totals[2]),
        hit_ratio_all: ratio(all_totals[0], all_totals[1], all_totals[2]),
        redis: read.map(|r| FromRedisView {
            value: r.value,
            generation: r.generation,
            instances: r.instances,
        }),
        last_hit_tier: state
            .history
            .last_hit_tier()
            .map_or("none yet", |t| t.label()),
        gate,
        gate_ok,
        serving_from_memory: cache.local().get().is_some(),
        redis_master: state.history.redis_master.clone(),
        instance_id: cache.local().instance_id.clone(),
        consistency_checks: metrics.cache_consistency_checks.get(),
        inconsistencies: metrics.cache_inconsistencies.get(),
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
            .map(
                |LoggedWrite {
                     at_ms, who, what, ..
                 }| WriteRow {
                    who: if who.is_empty() { "—".into() } else { who },
                    what,
                    when: format!("{} ago", span(now - at_ms)),
                },
            )
            .collect(),
        chart_width: CHART_WIDTH,
        chart_height: CHART_HEIGHT,
        baseline: BASELINE,
    })
}

/// One connection, two pipelines: the value and the instances, then their published figures.
fn read_redis(history: &history::History, cache: &Cache) -> redis::RedisResult<FromRedis> {
    let mut conn = history::connect(&history.client)?;
    let keys = cache.keys();
    #[allow(clippy::type_complexity)]
    let (value, pttl, generation, leases, acks, (secs, micros)): (
        Option<String>,
        i64,
        Option<u64>,
        Vec<(String, i64)>,
        HashMap<String, u64>,
        (i64, i64),
    ) = redis::pipe()
        .get(&keys.value)
        .pttl(&keys.value)
        .get(&keys.generation)
        .zrange_withscores(&keys.instances, 0, -1)
        .hgetall(&keys.acks)
        .cmd("TIME")
        .query(&mut conn)?;
    let redis_now = secs * 1000 + micros / 1000;
    let published: Vec<Option<String>> = if leases.is_empty() {
        Vec::new()
    } else {
        let stats_keys: Vec<String> = leases.iter().map(|(id, _)| history.stats_key(id)).collect();
        redis::cmd("MGET").arg(stats_keys).query(&mut conn)?
    };
    let me = &cache.local().instance_id;
    let mut instances = Vec::new();
    let mut others = Vec::new();
    for ((id, lease_end), published) in leases.into_iter().zip(published) {
        let published: Option<Published> =
            published.and_then(|json| serde_json::from_str(&json).ok());
        let this_one = &id == me;
        let lease = if lease_end > redis_now {
            format!("ends in {}", span(lease_end - redis_now))
        } else {
            format!("expired {} ago", span(redis_now - lease_end))
        };
        instances.push(InstanceRow {
            address: published
                .as_ref()
                .map_or_else(|| "unknown".into(), |p| p.address.clone()),
            from_memory: match &published {
                _ if this_one && cache.local().get().is_some() => "yes",
                _ if this_one => "no",
                Some(p) if p.serving_from_memory => "yes",
                Some(_) => "no",
                None => "unknown",
            },
            acknowledged: acks
                .get(&id)
                .map_or_else(|| "none".into(), |g| g.to_string()),
            lease,
            this_one,
            id,
        });
        if let (false, Some(p)) = (this_one, published) {
            others.push(p.minutes);
        }
    }
    Ok(FromRedis {
        value: value.and_then(|json| cached_value(&json, pttl)),
        generation: generation.unwrap_or(0),
        instances,
        others,
    })
}

fn cached_value(json: &str, pttl: i64) -> Option<CachedValue> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let computed_at = v["computed_at_ms"].as_i64().unwrap_or(0);
    Some(CachedValue {
        average: v["average_age"]
            .as_f64()
            .map_or_else(|| "none (no students)".into(), |a| format!("{a:.2}")),
        count: v["student_count"].as_i64().unwrap_or(0),
        generation: v["generation"].as_u64().unwrap_or(0),
        age: if computed_at > 0 {
            span(now_ms() as i64 - computed_at)
        } else {
            "unknown".into()
        },
        ttl_left: span(pttl),
    })
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
    let lookup = average::lookup(&state.cache, &state.db).await?;
    let average = lookup.stats.average_age.map_or_else(
        || "no average (no students)".into(),
        |a| format!("{a:.2} years"),
    );
    let message = match cleared {
        Ok(_) => format!(
            "Recomputed: {average} over {} students.",
            lookup.stats.student_count
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
) -> Result<Result<u64, String>, AppError> {
    let cache = Arc::clone(&state.cache);
    db::with_conn(&state.db, move |conn| {
        let invalidated = cache.invalidate().map_err(|e| e.to_string());
        if invalidated.is_ok() {
            cache.metrics().cache_invalidations.inc();
            write_log::record(conn, &who, what)?;
        }
        Ok(invalidated)
    })
    .await
}

fn back() -> web::Redirect {
    web::Redirect::to("/admin/cache").see_other()
}
