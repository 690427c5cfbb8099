//! Liveness, readiness and metrics.

use std::sync::Arc;
use std::time::Duration;

use actix_session::Session;
use actix_web::{web, HttpRequest, HttpResponse};
use diesel::connection::SimpleConnection;
use serde::Serialize;

use super::AppState;
use crate::db;
use crate::error::AppError;

/// How long `/readyz` waits for a database connection.
const READINESS_TIMEOUT: Duration = Duration::from_millis(500);

/// 200 while the process can answer at all.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("ok\n")
}

#[derive(Serialize)]
struct Readiness {
    database: &'static str,
    /// "ok", "unavailable" (down or unreachable: it comes back by itself) or "unsupported" (it
    /// answers, but refuses what the cache needs: see `cache_error`).
    cache: &'static str,
    /// Why the server cannot be used, when `cache` is "unsupported".
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_error: Option<String>,
    /// `host:port` of the Redis in use (through Sentinel, the master it last named), for an
    /// operator on this host or signed-in staff only: to anyone else it is a map of the inside.
    #[serde(skip_serializing_if = "Option::is_none")]
    redis_master: Option<String>,
    /// True from the first moment of a graceful stop: the answer is then 503, so that a load
    /// balancer sends this instance nothing new while it finishes what it has.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stopping: bool,
}

/// Whether the request comes from this host itself, not through a proxy (a probe, an operator
/// with curl), or from signed-in staff.
fn may_see_the_inside(req: &HttpRequest, session: &Session) -> bool {
    let local = req
        .peer_addr()
        .is_some_and(|a| a.ip().to_canonical().is_loopback())
        && !req.headers().contains_key("x-forwarded-for");
    local || crate::session::signed_in(session).is_some()
}

/// 503 when the database cannot be used; 200 with `"cache": "unavailable"` when only Redis is
/// down, or `"unsupported"` when it refuses what the cache needs, since pages are still served
/// (from the database).
pub async fn readyz(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
) -> HttpResponse {
    let pool = state.db.clone();
    let database_ok = db::blocking(move || {
        // A probe answers quickly: no waiting out the pages' 5 s pool timeout.
        let mut conn = pool.get_timeout(READINESS_TIMEOUT)?;
        conn.batch_execute("SELECT 1 FROM students LIMIT 1")
            .map_err(AppError::from)
    })
    .await
    .is_ok();
    let cache = Arc::clone(&state.cache);
    let cache_ok = db::blocking(move || {
        Ok::<_, AppError>(match cache.ping() {
            Ok(()) => true,
            Err(e) => {
                cache.report_failure("readyz", &e);
                false
            }
        })
    })
    .await
    .unwrap_or(false);
    // The ping opens a connection if none is idle, which checks the server: read after it.
    let refusal = state.cache.support().refusal();
    let body = Readiness {
        database: if database_ok { "ok" } else { "unavailable" },
        cache: match (&refusal, cache_ok) {
            (Some(_), _) => "unsupported",
            (None, true) => "ok",
            (None, false) => "unavailable",
        },
        cache_error: refusal.map(|r| r.why),
        redis_master: state
            .cache
            .redis_master()
            .filter(|_| may_see_the_inside(&req, &session)),
        stopping: state.stopping.load(std::sync::atomic::Ordering::Acquire),
    };
    if database_ok && !body.stopping {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus text exposition, on `BIND_ADDR` unless `METRICS_BIND_ADDR` is set.
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    if state.metrics_elsewhere {
        return Err(AppError::NotFound);
    }
    Ok(exposition(&state.metrics))
}

/// Prometheus text exposition on the `METRICS_BIND_ADDR` listener.
pub async fn metrics_only(metrics: web::Data<crate::metrics::Metrics>) -> HttpResponse {
    exposition(&metrics)
}

fn exposition(metrics: &crate::metrics::Metrics) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render())
}
