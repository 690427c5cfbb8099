//! Pools, the HTTP server and its middleware: `Application::build` for `main` and the tests.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_session::SessionMiddleware;
use actix_web::body::MessageBody;
use actix_web::cookie::{Key, SameSite};
use actix_web::dev::{Server, ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::error::{PathError, QueryPayloadError, UrlencodedError};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpRequest, HttpServer};

use crate::cache::history::{self, History};
use crate::cache::redis_pool::{build_checked_redis_pool, RedisTimeouts};
use crate::cache::redis_target::RedisTarget;
use crate::cache::resync::{Resync, ServerMet};
use crate::cache::{Cache, Keys};
use crate::compression;
use crate::config::Settings;
use crate::db::{self, DbPool};
use crate::error::AppError;
use crate::logging;
use crate::metrics::{self, Metrics, RequestTimings, SharedTimings};
use crate::on_answer::OnAnswer;
use crate::only_when::OnlyWhen;
use crate::request_id;
use crate::request_limits;
use crate::security;
use crate::session;
use crate::session_store::{DbSessionStore, Lifetimes};
use crate::signin_token::SigninTokens;
use crate::views::{self, AppState};

/// The largest request body accepted (SPEC §3).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The database, the cache and the metrics: what the server and the commands share.
#[derive(Clone)]
pub struct Resources {
    pub db: DbPool,
    pub cache: Arc<Cache>,
    pub metrics: Arc<Metrics>,
}

impl Resources {
    /// Opens the database (applying pending migrations) and the Redis pool. Redis being down
    /// is not an error: the cache distrusts Redis until the outbox is applied, and after the first
    /// failed call.
    pub fn open(settings: &Settings) -> anyhow::Result<Resources> {
        // redis' rustls support needs a process-wide crypto provider for rediss:// URLs.
        // rustls 0.23.48 deprecates ring's provider because it has no post-quantum key
        // exchange; aws-lc-rs, which has, needs cmake and a C toolchain's worth of build time.
        // A Redis link inside a private network does not need post-quantum TLS yet.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let db = db::build_pool(&settings.database_url)?;
        let mut conn = db.get()?;
        db::run_migrations(&mut conn)?;
        drop(conn);
        let metrics = Arc::new(Metrics::new());
        let timeouts = RedisTimeouts::from_setting(settings.redis_timeout);
        let target = Arc::new(RedisTarget::open(
            &settings.redis_url,
            &Keys::new(&settings.cache_key_prefix).generation,
            timeouts.connect,
            timeouts.command,
        )?);
        // Every new connection is checked for a Redis that lost data before it is used. The check
        // reads the database's mark through a connection of its own: through the shared pool, a
        // Redis connect (and so every cache hit that needs a new connection) would queue behind
        // the pages' queries, and fail when they hold every connection.
        let server_met = Arc::new(ServerMet::default());
        let resync = Arc::new(Resync::new(
            db::build_pool_of(&settings.database_url, 1)?,
            &settings.cache_key_prefix,
            server_met,
        ));
        let redis = build_checked_redis_pool(
            Arc::clone(&target),
            timeouts,
            settings.redis_pool_size,
            Some(Arc::clone(&resync) as Arc<dyn crate::cache::redis_pool::OnConnect>),
        );
        let cache = Arc::new(Cache::new(
            redis,
            target,
            &settings.cache_key_prefix,
            settings.cache_ttl,
            Arc::clone(&metrics.cache),
            db.clone(),
            resync,
        )?);
        Ok(Resources { db, cache, metrics })
    }
}

/// A bound, ready-to-run server.
pub struct Application {
    port: u16,
    server: Server,
    /// Shared with `/readyz` (see [`Stopper`]).
    stopping: Arc<AtomicBool>,
    shutdown_drain: Duration,
    /// `/metrics` on `METRICS_BIND_ADDR`, when set, and its port.
    metrics_server: Option<(Server, u16)>,
    cache: Arc<Cache>,
}

impl Application {
    /// Binds `settings.bind_addr` (port 0 picks a free port) and builds the server.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let listener = TcpListener::bind(settings.bind_addr)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.bind_addr))?;
        let metrics_listener = settings
            .metrics_bind_addr
            .map(|addr| {
                TcpListener::bind(addr).map_err(|e| {
                    anyhow::anyhow!("cannot listen on {addr} (METRICS_BIND_ADDR): {e}")
                })
            })
            .transpose()?;
        let opened = settings.clone();
        let resources =
            db::blocking(move || Resources::open(&opened).map_err(AppError::Unexpected))
                .await
                .map_err(|e| match e {
                    AppError::Unexpected(inner) | AppError::DatabaseUnavailable(inner) => inner,
                    other => anyhow::anyhow!("{other}"),
                })?;
        Self::build_with(settings, resources, listener, metrics_listener).await
    }

    async fn build_with(
        settings: Settings,
        resources: Resources,
        listener: TcpListener,
        metrics_listener: Option<TcpListener>,
    ) -> anyhow::Result<Application> {
        let port = listener.local_addr()?.port();
        // Apply the outbox once before serving: invalidations left by a crash or an outage
        // must land before this process reads Redis.
        resources.cache.claim_unowned_keys();
        let (cache, pool) = (Arc::clone(&resources.cache), resources.db.clone());
        db::blocking(move || {
            cache.apply_outbox(&pool);
            Ok::<_, AppError>(())
        })
        .await?;
        resources.cache.start_background(resources.db.clone());

        let history = Arc::new(History::new(
            Arc::clone(&resources.metrics.cache),
            format!("{}:{port}", settings.bind_addr.ip()),
            resources.cache.redis_target(),
        ));
        tokio::spawn(history::run_sampler(
            Arc::clone(&history),
            Arc::downgrade(&resources.cache),
        ));

        let key = match &settings.secret_key {
            Some(secret) => Key::derive_from(secret.as_bytes()),
            None => {
                log::warn!(
                    "SECRET_KEY is not set: using a random key, so sessions end at restart and \
                     do not work across instances"
                );
                Key::generate()
            }
        };
        let cookie_secure = settings.cookie_secure;
        let signin_tokens = web::Data::new(SigninTokens::new(key.clone(), cookie_secure));
        let static_dir = settings.static_dir.clone();
        let sessions = DbSessionStore::new(
            resources.db.clone(),
            Lifetimes {
                idle: settings.session_idle,
                max: settings.session_max,
            },
        );
        let stopping = Arc::new(AtomicBool::new(false));
        let state = web::Data::new(AppState {
            db: resources.db.clone(),
            cache: Arc::clone(&resources.cache),
            metrics: Arc::clone(&resources.metrics),
            debug: settings.debug,
            history,
            chart: Default::default(),
            rendered: Default::default(),
            trusted_proxies: settings.trusted_proxies.clone(),
            metrics_elsewhere: metrics_listener.is_some(),
            stopping: Arc::clone(&stopping),
        });
        if settings.debug {
            log::warn!("DEBUG=1: every HTML page shows its SQL statements and Redis commands");
        }
        let metrics = web::Data::from(Arc::clone(&resources.metrics));

        // actix-web's default: one worker per core.
        let workers = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(metrics.clone())
                .app_data(web::Data::new(security::Https(cookie_secure)))
                .app_data(signin_tokens.clone())
                .app_data(
                    web::FormConfig::default()
                        .limit(MAX_BODY_BYTES)
                        .error_handler(form_error),
                )
                .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
                .app_data(web::QueryConfig::default().error_handler(query_error))
                .app_data(web::PathConfig::default().error_handler(path_error))
                .configure(views::routes)
                .configure(|cfg| match &static_dir {
                    Some(dir) => {
                        cfg.service(views::static_files(dir));
                    }
                    None => views::embedded_static_files(cfg),
                })
                .default_service(web::to(not_found))
                .wrap(OnlyWhen::new(
                    session::may_be_used,
                    SessionMiddleware::builder(sessions.clone(), key.clone())
                        .cookie_name(security::SESSION_COOKIE.into())
                        .cookie_http_only(true)
                        .cookie_same_site(SameSite::Lax)
                        .cookie_secure(cookie_secure)
                        .build(),
                ))
                .wrap(OnAnswer(session_store_unavailable))
                // Before the session is loaded: a refused request costs no database work.
                .wrap(OnlyWhen::writes(from_fn(security::same_origin_writes)))
                .wrap(OnlyWhen::writes(from_fn(request_limits::body_deadline)))
                .wrap(OnAnswer(security::private_when_signed_in))
                .wrap(compression::CompressWhenAsked)
                .wrap(from_fn(observe))
                .wrap(security::headers(cookie_secure))
        })
        .on_connect(no_delay)
        // SIGTERM is the Stopper's: readiness goes first, then the listener (`cli::serve`).
        .disable_signals()
        // In-flight requests get this long to finish once the listener has closed.
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        .max_connections(request_limits::connections_per_worker(workers))
        .workers(workers)
        .listen(listener)?
        .run();
        let metrics_server = match metrics_listener {
            Some(listener) => {
                let metrics_port = listener.local_addr()?.port();
                let metrics = web::Data::from(Arc::clone(&resources.metrics));
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(metrics.clone())
                        .route("/metrics", web::get().to(views::health::metrics_only))
                        .default_service(web::to(not_found))
                })
                .workers(1)
                .disable_signals()
                .listen(listener)?
                .run();
                Some((server, metrics_port))
            }
            None => None,
        };
        Ok(Application {
            port,
            server,
            stopping,
            shutdown_drain: settings.shutdown_drain,
            metrics_server,
            cache: Arc::clone(&resources.cache),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port `/metrics` is served on when `METRICS_BIND_ADDR` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_server.as_ref().map(|(_, port)| *port)
    }

    /// Stops the server from another task at once, with no drain.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// What `serve` calls on SIGTERM: see [`Stopper::stop`].
    pub fn stopper(&self) -> Stopper {
        Stopper {
            handle: self.server.handle(),
            stopping: Arc::clone(&self.stopping),
            drain: self.shutdown_drain,
        }
    }

    /// Serves until stopped; after a graceful stop, withdraws this instance's memory lease so
    /// that writes do not wait for an instance that has left.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let metrics = self.metrics_server.map(|(server, _)| {
            let handle = server.handle();
            tokio::spawn(server);
            handle
        });
        let served = self.server.await;
        if let Some(metrics) = metrics {
            metrics.stop(true).await;
        }
        let cache = self.cache;
        match db::blocking(move || Ok::<_, AppError>(cache.withdraw_lease())).await {
            Ok(Ok(())) => log::info!("stopped; cache lease withdrawn"),
            Ok(Err(e)) => log::warn!("could not withdraw the cache lease, it will lapse: {e}"),
            Err(e) => log::warn!("could not withdraw the cache lease, it will lapse: {e}"),
        }
        served
    }
}

/// How long requests in flight may take to finish once the listener has closed, in seconds.
const SHUTDOWN_TIMEOUT_SECS: u64 = 10;

/// A graceful stop, in the order a load balancer needs.
#[derive(Clone)]
pub struct Stopper {
    handle: ServerHandle,
    stopping: Arc<AtomicBool>,
    drain: Duration,
}

impl Stopper {
    /// `/readyz` answers 503 at once while every other page is still served, for
    /// `SHUTDOWN_DRAIN_SECS`, so that a balancer polling it sends nothing new; then the listener
    /// closes, the requests in flight finish (for at most [`SHUTDOWN_TIMEOUT_SECS`]), and
    /// `run_until_stopped` withdraws the memory lease and returns.
    pub async fn stop(self) {
        self.stopping.store(true, Ordering::Release);
        log::info!(
            "stopping: /readyz answers 503; closing the listener in {:?}",
            self.drain
        );
        tokio::time::sleep(self.drain).await;
        self.handle.stop(true).await;
    }
}

/// Sends each write at once (`TCP_NODELAY`). A compressed page goes out in chunks, the headers
/// and each piece of the body in a write of its own; with Nagle's algorithm on, the second
/// small write waits for the client's acknowledgement of the first, which a client delays by
/// up to 40 ms: measured, gzip and br pages answered at about 1,000 req/s with a p50 of 44 ms
/// against 77,000 and 0.36 ms uncompressed (BENCHMARKS.md).
fn no_delay(connection: &dyn std::any::Any, _: &mut actix_web::dev::Extensions) {
    if let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
        if let Err(e) = stream.set_nodelay(true) {
            log::debug!("TCP_NODELAY not set: {e}");
        }
    }
}

/// Records the request's database and cache work (`Server-Timing`) and its latency histogram.
async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let debug = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|state| state.debug);
    let request_id = request_id::of(req.headers());
    let timings: SharedTimings = Arc::new(Mutex::new(RequestTimings {
        debug,
        request_id: Some(Arc::clone(&request_id)),
        ..RequestTimings::default()
    }));
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let method = metrics::method_label(req.method());
    let access = log::log_enabled!(target: logging::ACCESS, log::Level::Info).then(|| {
        let peer = req.peer_addr().map(|a| a.ip().to_string());
        (peer.unwrap_or_else(|| "-".into()), req.path().to_owned())
    });
    let mut res = metrics::REQUEST_TIMINGS
        .scope(Arc::clone(&timings), next.call(req))
        .await?;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(request_id::X_REQUEST_ID, value);
    }
    if let Ok(timings) = timings.lock() {
        // A hit names its tier, so the developer tools tell memory from Redis at a glance.
        let tier = res
            .headers()
            .get(&views::X_CACHE_TIER)
            .and_then(|t| t.to_str().ok());
        if let Some(value) = server_timing(&timings, tier) {
            res.headers_mut()
                .insert(HeaderName::from_static("server-timing"), value);
        }
    }
    if let Some(metrics) = metrics {
        // The route pattern, not the path, so ids do not create new series.
        let route = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".into());
        metrics
            .http_request_duration
            .with_label_values(&[&route, method, res.status().as_str()])
            .observe(started.elapsed().as_secs_f64());
    }
    if let Some((peer, path)) = access {
        let status = res.status().as_u16();
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        let cache = res
            .headers()
            .get(&views::X_CACHE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        // Written inside the request's scope, so the line names its id like any other.
        metrics::REQUEST_TIMINGS.sync_scope(timings, || {
            log::info!(
                target: logging::ACCESS,
                method = method, path = path.as_str(), status = status,
                duration_ms = duration_ms, cache = cache;
                "{peer} \"{method} {path}\" {status} {duration_ms:.2}ms cache={cache}"
            )
        });
    }
    Ok(res)
}

/// The `Server-Timing` value. A memory hit did no database or cache work, so its value is
/// always the same: a constant, where writing it out cost 1,100 instructions of a 42,000-
/// instruction hit.
fn server_timing(timings: &RequestTimings, tier: Option<&str>) -> Option<HeaderValue> {
    // Constants, as elsewhere: called at run time, `from_static` checks each byte (940
    // instructions a hit for this one); in a constant that happens at compile time.
    const IDLE: HeaderValue =
        HeaderValue::from_static(r#"db;dur=0.00;desc="0 queries", cache;dur=0.00;desc="0 calls""#);
    const IDLE_MEMORY: HeaderValue = HeaderValue::from_static(
        r#"db;dur=0.00;desc="0 queries", cache;dur=0.00;desc="0 calls", cache-tier;desc="memory""#,
    );
    if timings.db.is_empty() && timings.cache.is_empty() {
        match tier {
            None => return Some(IDLE),
            Some("memory") => return Some(IDLE_MEMORY),
            Some(_) => {}
        }
    }
    HeaderValue::from_str(&timings.server_timing(tier)).ok()
}

/// The session middleware answers a failure of its store with a bare 500; the store is the
/// database, so it is the 503 (with `Retry-After`) that any other page gives when the database
/// is unavailable.
fn session_store_unavailable<B>(
    res: Result<ServiceResponse<B>, actix_web::Error>,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    res.map_err(|e| {
        if e.as_response_error().status_code().as_u16() == 500 {
            AppError::DatabaseUnavailable(anyhow::anyhow!("session store: {e}")).into()
        } else {
            e
        }
    })
}

async fn not_found() -> Result<actix_web::HttpResponse, AppError> {
    Err(AppError::NotFound)
}

fn form_error(err: UrlencodedError, _req: &HttpRequest) -> actix_web::Error {
    match err {
        UrlencodedError::Overflow { .. } => AppError::PayloadTooLarge.into(),
        other => AppError::BadRequest(format!("The form could not be read: {other}.")).into(),
    }
}

fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    AppError::BadRequest(format!("The query string could not be read: {err}.")).into()
}

fn path_error(_err: PathError, _req: &HttpRequest) -> actix_web::Error {
    AppError::NotFound.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_constant_timings_of_a_request_that_did_no_work_are_what_they_would_be_written_as() {
        let idle = RequestTimings::default();
        for tier in [None, Some("memory"), Some("redis")] {
            assert_eq!(
                server_timing(&idle, tier).unwrap().to_str().unwrap(),
                idle.server_timing(tier),
                "{tier:?}"
            );
        }
        let busy = RequestTimings {
            db: vec![cache::timings::Call {
                what: "SELECT 1".into(),
                duration: Duration::from_micros(410),
            }],
            ..RequestTimings::default()
        };
        assert!(server_timing(&busy, Some("memory"))
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("db;dur=0.41;desc=\"1 query\""));
    }
}
