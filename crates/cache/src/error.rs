//! The cache's one error type. The application converts it at its web layer (a database that
//! cannot be reached is a 503 there, anything else a 500).

/// What can fail when the cache answers a lookup or records a write.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// No database connection in time: the database is down or every connection is busy.
    #[error("no database connection: {0}")]
    DatabaseUnavailable(#[from] r2d2::Error),
    /// A statement failed (the query of a value, the outbox's row).
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
    /// Redis failed where its answer was needed (most calls fall back to the database instead).
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    /// The blocking thread that ran the work panicked or was cancelled.
    #[error("blocking task failed: {0}")]
    Blocking(#[from] tokio::task::JoinError),
}
