//! The database the cache keeps its tables in, and which its queries read: one connection type
//! for PostgreSQL and SQLite, and its pool. The application builds the pool (its settings are
//! the application's) and shares it.

use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;

/// One connection type for both backends. PostgreSQL comes first: `establish` tries the
/// variants in order, and SQLite would take any string, a `postgres://` URL included, as a
/// file name.
#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

pub type DbPool = Pool<ConnectionManager<DbConn>>;
pub type PooledConn = PooledConnection<ConnectionManager<DbConn>>;

/// Runs `$body` with `$conn` bound to the concrete connection of either backend. For the few
/// statements that do not type-check through the multi-backend connection (RETURNING, multi-row
/// INSERT), each arm is compiled for its own backend.
#[macro_export]
macro_rules! on_backend {
    ($multi:expr, $conn:ident => $body:expr) => {
        match $multi {
            $crate::db::DbConn::Pg($conn) => $body,
            $crate::db::DbConn::Sqlite($conn) => $body,
        }
    };
}

/// Runs `f` with a pooled connection, off the executor. The connection is taken inside the
/// blocking closure because waiting for one can block too.
pub async fn with_conn<T>(
    pool: &DbPool,
    f: impl FnOnce(&mut DbConn) -> Result<T, crate::CacheError> + Send + 'static,
) -> Result<T, crate::CacheError>
where
    T: Send + 'static,
{
    let pool = pool.clone();
    crate::timings::blocking(move || {
        let mut conn = pool.get()?;
        f(&mut conn)
    })
    .await
}

/// Runs `f` in a transaction that writes: on SQLite `BEGIN IMMEDIATE`, which takes the
/// database's write lock at the start, waiting for it under `busy_timeout`. A plain (deferred)
/// transaction takes it at its first write, and when anything was read before that write in
/// the transaction (a trigger's own reads count: FTS5 reads its tables while indexing a row)
/// and another connection committed in between, SQLite cannot upgrade the read and answers
/// "database is locked" at once, without waiting: 5 of 40 concurrent staff writes failed that
/// way. Begun through Diesel's transaction manager, so a `transaction()` inside `f` is a
/// savepoint. PostgreSQL's transactions need nothing of the kind.
pub fn write_transaction<T, E>(
    conn: &mut DbConn,
    f: impl FnOnce(&mut DbConn) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    use diesel::connection::{AnsiTransactionManager, Connection, TransactionManager};
    let DbConn::Sqlite(sqlite) = conn else {
        return conn.transaction(f);
    };
    AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE")?;
    let outcome = f(conn);
    let DbConn::Sqlite(sqlite) = conn else {
        unreachable!("the connection is the SQLite one it was a moment ago");
    };
    // As Diesel's own `transaction()` ends one.
    match outcome {
        Ok(value) => {
            AnsiTransactionManager::commit_transaction(sqlite)?;
            Ok(value)
        }
        Err(error) => match AnsiTransactionManager::rollback_transaction(sqlite) {
            Ok(()) | Err(diesel::result::Error::BrokenTransactionManager) => Err(error),
            Err(rollback_error) => Err(rollback_error.into()),
        },
    }
}
