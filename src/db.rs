//! The database connection type, its pool, the embedded migrations, and the one helper that
//! moves blocking work off the async executor.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::config::DatabaseUrl;
use crate::error::AppError;
use crate::metrics;

pub type DbConn = SqliteConnection;
pub type DbPool = Pool<ConnectionManager<DbConn>>;
pub type PooledConn = PooledConnection<ConnectionManager<DbConn>>;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// How long a request waits for a free database connection before it answers 503.
const POOL_TIMEOUT: Duration = Duration::from_secs(5);

/// Per-connection SQLite settings.
#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<DbConn, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut DbConn) -> Result<(), diesel::r2d2::Error> {
        // WAL lets readers run while a writer commits; busy_timeout makes concurrent writers
        // (several instances, the seed command) wait for the lock instead of failing at once.
        // busy_timeout comes first so that the other pragmas wait for a lock too.
        conn.batch_execute(
            "PRAGMA busy_timeout = 5000;
             PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;",
        )
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Builds the pool. Connections are opened lazily, so this fails only on an unusable URL.
pub fn build_pool(url: &DatabaseUrl) -> anyhow::Result<DbPool> {
    let DatabaseUrl::Sqlite(path) = url;
    // Every new connection records its queries into the current request's timings, if any.
    let _ = diesel::connection::set_default_instrumentation(|| {
        Some(Box::new(metrics::QueryRecorder::default()))
    });
    let pool = Pool::builder()
        .max_size(8)
        .min_idle(Some(1))
        // A local file does not go stale; a check would cost one query per request.
        .test_on_check_out(false)
        .connection_timeout(POOL_TIMEOUT)
        .connection_customizer(Box::new(SqlitePragmas))
        .build(ConnectionManager::<DbConn>::new(path))?;
    Ok(pool)
}

/// Applies the migrations that have not run yet.
pub fn run_migrations(conn: &mut DbConn) -> anyhow::Result<()> {
    conn.run_pending_migrations(MIGRATIONS)
        .map_err(|e| anyhow::anyhow!("running migrations: {e}"))?;
    Ok(())
}

/// Runs blocking work (Diesel, the Redis pool, Argon2) on actix's blocking thread pool, carrying
/// the current request's timings along so the work shows in `Server-Timing`.
pub async fn blocking<T, E>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, AppError>
where
    T: Send + 'static,
    E: Into<AppError> + Send + 'static,
{
    let timings = metrics::current_request_timings();
    actix_web::web::block(move || metrics::with_installed_timings(timings, f))
        .await?
        .map_err(Into::into)
}

/// Runs `f` with a pooled connection, off the executor. The connection is taken inside the
/// blocking closure because waiting for one can block too.
pub async fn with_conn<T>(
    pool: &DbPool,
    f: impl FnOnce(&mut DbConn) -> Result<T, AppError> + Send + 'static,
) -> Result<T, AppError>
where
    T: Send + 'static,
{
    let pool = pool.clone();
    blocking(move || {
        let mut conn = pool.get()?;
        f(&mut conn)
    })
    .await
}
