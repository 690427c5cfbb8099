//! The database connection type (PostgreSQL or SQLite, chosen by `DATABASE_URL`), its pool, the
//! embedded migrations, and the one helper that moves blocking work off the async executor.

use std::time::Duration;

use cache::migrations::with_application;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::config::DatabaseUrl;
use crate::error::AppError;
use crate::metrics;

pub use cache::db::{write_transaction, DbConn, DbPool, PooledConn};

/// The SQL of the two backends differs (AUTOINCREMENT against SERIAL), so each has its folder.
/// The cache's tables have their own migrations, run with these (see [`run_migrations`]).
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// How long a request waits for a free database connection before it answers 503. Also how
/// soon a page that needs the database, or a write, answers 503 when the database is down
/// (r2d2 waits this long for a connection it cannot open): a visitor or a load balancer is
/// better told at once than after five seconds.
const POOL_TIMEOUT: Duration = Duration::from_secs(2);

/// Per-connection settings.
#[derive(Debug)]
struct ConnectionSettings;

impl CustomizeConnection<DbConn, diesel::r2d2::Error> for ConnectionSettings {
    fn on_acquire(&self, conn: &mut DbConn) -> Result<(), diesel::r2d2::Error> {
        let settings = match conn {
            // WAL lets readers run while a writer commits; busy_timeout (first, so the other
            // pragmas wait for a lock too) makes concurrent writers wait instead of failing.
            DbConn::Sqlite(_) => {
                "PRAGMA busy_timeout = 5000;
                 PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 PRAGMA foreign_keys = ON;"
            }
            // A runaway statement must not hold a pooled connection for ever.
            DbConn::Pg(_) => "SET statement_timeout = '30s'",
        };
        conn.batch_execute(settings)
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Creates a missing SQLite file readable by its owner only (0600): it holds the staff's
/// password hashes and sessions, and its `-wal` and `-shm` files take its permissions. An
/// existing file wider than that is left as it is, with a warning: its owner may mean it.
fn create_private(path: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if path == ":memory:" || path.starts_with("file:") {
        return Ok(());
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if let Ok(meta) = std::fs::metadata(path) {
                if meta.permissions().mode() & 0o077 != 0 {
                    log::warn!(
                        "{path} can be read by other users (mode {:o}); it holds password \
                         hashes and sessions: chmod 600 it",
                        meta.permissions().mode() & 0o777
                    );
                }
            }
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!("cannot create the SQLite file {path}: {e}")),
    }
}

/// Builds the pool. For PostgreSQL it connects once first, so that a wrong URL or a server
/// that is down is reported with the real reason (the multi-backend connection would only say
/// "invalid connection url").
pub fn build_pool(url: &DatabaseUrl) -> anyhow::Result<DbPool> {
    let size = match url {
        DatabaseUrl::Postgres(_) => 16,
        DatabaseUrl::Sqlite(_) => 8,
    };
    build_pool_of(url, size)
}

/// [`build_pool`] with `max_size` connections.
pub fn build_pool_of(url: &DatabaseUrl, max_size: u32) -> anyhow::Result<DbPool> {
    // Every new connection records its queries into the current request's timings, if any.
    let _ = diesel::connection::set_default_instrumentation(|| {
        Some(Box::new(metrics::QueryRecorder::default()))
    });
    let url = match url {
        DatabaseUrl::Postgres(url) => {
            PgConnection::establish(url)
                .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL: {e}"))?;
            url.as_str()
        }
        DatabaseUrl::Sqlite(path) => {
            create_private(path)?;
            path.as_str()
        }
    };
    let pool = Pool::builder()
        .max_size(max_size)
        // No connection opened in the background to keep one idle: r2d2 would start one on each
        // checkout, and a command that exits while it is connecting crashes in OpenSSL's exit
        // handler (libpq over TLS), for `staff list` in about one run of six. Connections are
        // made only for a caller waiting on one.
        .min_idle(Some(0))
        // A connection is checked (`SELECT 1`) when it is handed out. Without the check, a
        // connection the server or the network closed while it sat in the pool (a database
        // restart or failover, a cut link) was handed to a request, whose query failed: after a
        // database outage the pool kept its dead connections and pages answered 503 for as long
        // as they were reused (the nemesis' `DatabaseCut`). The check is one round trip, paid
        // only by the requests that use the database at all: a cache hit takes no connection.
        .test_on_check_out(true)
        .connection_timeout(POOL_TIMEOUT)
        .connection_customizer(Box::new(ConnectionSettings))
        .build(ConnectionManager::<DbConn>::new(url))?;
    Ok(pool)
}

/// Applies the migrations of the connection's backend that have not run yet, the cache's and the
/// application's in the order of their versions.
///
/// Several instances start at once (a rolling deploy, `compose up`, systemd's `ExecStartPre` on
/// every host): each would find the same migrations pending, and all but the first would fail
/// on a table that now exists. So the whole run is one transaction that first takes a lock:
/// on PostgreSQL a transaction-scoped advisory lock (DDL is transactional there, and the waiter
/// reads the winner's history once the lock is released), on SQLite an immediate transaction
/// (the database's write lock, which `busy_timeout` waits for). Each migration keeps its own
/// savepoint, and a failure leaves no half-applied history.
pub fn run_migrations(conn: &mut DbConn) -> anyhow::Result<()> {
    let applied = match conn {
        DbConn::Pg(conn) => conn.transaction(|conn| {
            conn.batch_execute(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))?;
            conn.run_pending_migrations(with_application(
                cache::migrations::POSTGRES,
                POSTGRES_MIGRATIONS,
            ))
            .map(drop)
        }),
        DbConn::Sqlite(conn) => conn.immediate_transaction(|conn| {
            conn.run_pending_migrations(with_application(
                cache::migrations::SQLITE,
                SQLITE_MIGRATIONS,
            ))
            .map(drop)
        }),
    };
    applied.map_err(|e: Box<dyn std::error::Error + Send + Sync>| {
        anyhow::anyhow!("running migrations: {e}")
    })
}

/// The advisory lock key migrations hold on PostgreSQL: "cwr-migr" in ASCII, so that it does not
/// collide by accident with another application's key in a shared database.
const MIGRATION_LOCK: i64 = 0x6377_722d_6d69_6772;

/// Runs blocking work (Diesel, the Redis pool, Argon2) on actix's blocking thread pool, carrying
/// the current request's timings along so the work shows in `Server-Timing`.
pub async fn blocking<T, E>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, AppError>
where
    T: Send + 'static,
    E: Into<AppError> + Send + 'static,
{
    cache::timings::run_blocking(f).await?.map_err(Into::into)
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
