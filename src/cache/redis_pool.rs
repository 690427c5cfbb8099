//! An r2d2 pool of synchronous Redis connections with bounded connect and command timeouts.
//!
//! redis' own `r2d2::ManageConnection` impl for `Client` connects without a timeout and sets no
//! read or write timeout, so one unreachable Redis would hold a blocking thread for as long as
//! the kernel keeps trying. This manager wraps the same `redis::Client` and bounds both.

use std::sync::Arc;
use std::time::Duration;

use redis::{ConnectionLike, RedisResult, Value};

/// How long connecting, and each command, may take before the call fails.
#[derive(Clone, Copy, Debug)]
pub struct RedisTimeouts {
    pub connect: Duration,
    pub command: Duration,
    /// How long a request waits for a free pooled connection.
    pub checkout: Duration,
}

impl Default for RedisTimeouts {
    fn default() -> Self {
        RedisTimeouts {
            connect: Duration::from_millis(250),
            command: Duration::from_millis(250),
            checkout: Duration::from_millis(300),
        }
    }
}

/// Runs on every new connection before the pool hands it out (see [`super::resync`]).
pub trait OnConnect: Send + Sync {
    fn on_connect(&self, conn: &mut redis::Connection) -> redis::RedisResult<()>;
}

pub struct RedisManager {
    client: redis::Client,
    timeouts: RedisTimeouts,
    on_connect: Option<Arc<dyn OnConnect>>,
}

/// A pooled connection that remembers a command that failed on the network. After a timeout the
/// reply may still come, or never (a connection dropped without a FIN): either way the
/// connection is no longer worth reusing, and the pool drops it instead of handing it out to
/// fail again.
pub struct RedisConnection {
    inner: redis::Connection,
    failed: bool,
}

impl RedisConnection {
    fn note<T>(&mut self, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(e) = &result {
            self.failed |= e.is_timeout() || e.is_io_error() || e.is_connection_dropped();
        }
        result
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        let result = self.inner.req_packed_command(cmd);
        self.note(result)
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let result = self.inner.req_packed_commands(cmd, offset, count);
        self.note(result)
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }

    fn check_connection(&mut self) -> bool {
        self.inner.check_connection()
    }

    fn is_open(&self) -> bool {
        !self.failed && self.inner.is_open()
    }
}

impl r2d2::ManageConnection for RedisManager {
    type Connection = RedisConnection;
    type Error = redis::RedisError;

    fn connect(&self) -> Result<RedisConnection, redis::RedisError> {
        let mut conn = self
            .client
            .get_connection_with_timeout(self.timeouts.connect)?;
        conn.set_read_timeout(Some(self.timeouts.command))?;
        conn.set_write_timeout(Some(self.timeouts.command))?;
        if let Some(check) = &self.on_connect {
            check.on_connect(&mut conn)?;
        }
        Ok(RedisConnection {
            inner: conn,
            failed: false,
        })
    }

    fn is_valid(&self, conn: &mut RedisConnection) -> Result<(), redis::RedisError> {
        redis::cmd("PING").query::<String>(conn).map(drop)
    }

    fn has_broken(&self, conn: &mut RedisConnection) -> bool {
        !conn.is_open()
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
/// while Redis is down.
pub fn build_redis_pool(url: &str, timeouts: RedisTimeouts) -> anyhow::Result<RedisPool> {
    build_checked_redis_pool(url, timeouts, None)
}

/// The same, with `on_connect` run on each new connection before it is used.
pub fn build_checked_redis_pool(
    url: &str,
    timeouts: RedisTimeouts,
    on_connect: Option<Arc<dyn OnConnect>>,
) -> anyhow::Result<RedisPool> {
    let client = redis::Client::open(url)?;
    Ok(r2d2::Pool::builder()
        .max_size(16)
        .min_idle(Some(0))
        // A PING per checkout would double the round trips of a cache hit. A connection that
        // died with Redis fails its next command instead, which distrusts Redis, and the
        // broken connection is dropped (`has_broken`).
        .test_on_check_out(false)
        .connection_timeout(timeouts.checkout)
        .error_handler(Box::new(QuietErrors))
        .build_unchecked(RedisManager {
            client,
            timeouts,
            on_connect,
        }))
}
