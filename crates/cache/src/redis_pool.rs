//! An r2d2 pool of synchronous Redis connections with bounded connect and command timeouts.
//!
//! redis' own `r2d2::ManageConnection` impl for `Client` connects without a timeout and sets no
//! read or write timeout, so one unreachable Redis would hold a blocking thread for as long as
//! the kernel keeps trying. This manager opens its connections through a [`RedisTarget`], which
//! bounds both and follows a Sentinel failover, and checks each new connection's server before
//! it is used (see [`super::resync`]).

use std::sync::Arc;
use std::time::Duration;

use redis::{ConnectionLike, RedisResult};

use super::redis_target::{RedisConnection, RedisTarget};

/// How long connecting, and each command, may take before the call fails.
#[derive(Clone, Copy, Debug)]
pub struct RedisTimeouts {
    pub connect: Duration,
    pub command: Duration,
    /// How long a request waits for a free pooled connection.
    pub checkout: Duration,
}

impl RedisTimeouts {
    /// `REDIS_TIMEOUT_MS` for connecting and for each command; a checkout waits a little longer,
    /// so that a connection being opened for it can still arrive.
    pub fn from_setting(timeout: Duration) -> Self {
        RedisTimeouts {
            connect: timeout,
            command: timeout,
            checkout: timeout + Duration::from_millis(50),
        }
    }
}

/// Runs on every new connection before the pool hands it out (see [`super::resync`]).
pub trait OnConnect: Send + Sync {
    fn on_connect(&self, conn: &mut dyn ConnectionLike) -> RedisResult<()>;
}

pub struct RedisManager {
    target: Arc<RedisTarget>,
    on_connect: Option<Arc<dyn OnConnect>>,
}

impl r2d2::ManageConnection for RedisManager {
    type Connection = RedisConnection;
    type Error = redis::RedisError;

    fn connect(&self) -> Result<RedisConnection, redis::RedisError> {
        let mut conn = self.target.connect_pooled()?;
        if let Some(check) = &self.on_connect {
            check.on_connect(&mut conn)?;
        }
        Ok(conn)
    }

    fn is_valid(&self, conn: &mut RedisConnection) -> Result<(), redis::RedisError> {
        redis::cmd("PING").query::<String>(conn).map(drop)
    }

    /// A connection that saw `READONLY`, an I/O error or a timeout, or that was opened to a
    /// master since replaced, is dropped, not reused: after a timeout the reply may still come,
    /// or never (a connection dropped without a FIN), and its server may no longer be the master.
    fn has_broken(&self, conn: &mut RedisConnection) -> bool {
        conn.is_broken()
    }
}

/// Errors of pool creation are logged by `trust::RedisTrust`, rate-limited; r2d2's default
/// handler would log every failed background connect during an outage.
#[derive(Debug)]
struct QuietErrors;

impl r2d2::HandleError<redis::RedisError> for QuietErrors {
    fn handle_error(&self, error: redis::RedisError) {
        log::debug!("redis pool: {error}");
    }
}

pub type RedisPool = r2d2::Pool<RedisManager>;

/// Builds the pool without connecting: the application starts, and serves from the database,
/// while Redis is down. `on_connect` runs on each new connection before it is used.
pub fn build_checked_redis_pool(
    target: Arc<RedisTarget>,
    timeouts: RedisTimeouts,
    max_size: u32,
    on_connect: Option<Arc<dyn OnConnect>>,
) -> RedisPool {
    r2d2::Pool::builder()
        .max_size(max_size)
        .min_idle(Some(0))
        // A PING per checkout would double the round trips of a cache hit. A connection that
        // died with Redis fails its next command instead, which distrusts Redis, and the
        // broken connection is dropped (`has_broken`).
        .test_on_check_out(false)
        .connection_timeout(timeouts.checkout)
        .error_handler(Box::new(QuietErrors))
        .build_unchecked(RedisManager { target, on_connect })
}
