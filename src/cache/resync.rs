//! Noticing that Redis lost data, and putting its generation back above every floor.
//!
//! A Redis restarted from an older snapshot, or a replica promoted before it had every write,
//! holds an older generation, and possibly an older value at that generation. Each such server
//! is a new process with a new `run_id` (`INFO server`), and every connection to it is new:
//! the old ones closed with the old process. So the pool checks the server of every connection
//! it opens; the first time this process meets a `run_id`, before the connection is used, it
//! raises the server's generation to the database's high-water mark (see [`super::generation`]).
//! Every generation any instance ever saw in Redis was at most the mark committed then, so
//! after the raise no value, lease or fill from before counts: a value whose generation is not
//! the current one is a miss, and a fill at an older generation is refused.
//!
//! A process that starts meets its first server this way too, so its floor of 0 does not
//! matter: the server it reads has been raised by it, not only by the instances that ran before.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use redis::{ConnectionLike, RedisError, RedisResult};

use super::generation::{self, Generation};
use super::lease::LEASE;
use super::redis_pool::OnConnect;
use super::scripts::Scripts;
use super::Keys;
use crate::db::DbPool;

pub struct Resync {
    db: DbPool,
    keys: Keys,
    scripts: Scripts,
    /// The `run_id` of the last server raised; held while raising, so connections opened
    /// together wait for one raise instead of each running its own.
    server: Mutex<Option<String>>,
    met: Arc<ServerMet>,
}

/// When this process first met the Redis server it uses now.
///
/// A new server (restarted, restored, promoted) has lost, or never had, the memory leases the
/// old one granted: an instance that renewed its lease there just before it went (and cannot
/// reach the new one yet) still serves from memory, trusting it, for up to [`LEASE`], while
/// the new server's table of lease holders does not name it. So for [`LEASE`] after meeting a
/// server a writer waits out those leases instead of trusting that table.
#[derive(Default)]
pub struct ServerMet(Mutex<Option<Instant>>);

impl ServerMet {
    fn now(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// Whether every lease an earlier server granted has ended.
    pub fn earlier_leases_ended(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map_or(true, |met| met.elapsed() >= LEASE)
    }
}

impl Resync {
    pub fn new(db: DbPool, prefix: &str, met: Arc<ServerMet>) -> Self {
        Resync {
            met,
            db,
            keys: Keys::new(prefix),
            scripts: Scripts::default(),
            server: Mutex::new(None),
        }
    }

    fn raise(&self, conn: &mut dyn ConnectionLike) -> RedisResult<Generation> {
        let found: Option<String> = redis::cmd("GET").arg(&self.keys.generation).query(conn)?;
        // A counter that is not a number was not written by this application: the mark wins.
        let found = found
            .and_then(|text| Generation::parse(&text).ok())
            .unwrap_or(Generation::ZERO);
        let mark = self
            .db
            .get()
            .map_err(|e| database_error(&e))
            .and_then(|mut db| {
                generation::raise_to(&mut db, found).map_err(|e| database_error(&e))
            })?;
        let raised: u64 = self
            .scripts
            .resync
            .key(&self.keys.generation)
            .key(&self.keys.channel)
            .arg(mark)
            .invoke(conn)?;
        Ok(Generation::new(raised))
    }
}

impl OnConnect for Resync {
    fn on_connect(&self, conn: &mut dyn ConnectionLike) -> RedisResult<()> {
        let run_id = run_id(conn)?;
        let mut server = self.server.lock().unwrap_or_else(PoisonError::into_inner);
        if server.as_deref() == Some(run_id.as_str()) {
            return Ok(());
        }
        let raised = self.raise(conn)?;
        self.met.now();
        if let Some(previous) = server.as_deref() {
            log::warn!(
                "redis server changed ({previous} -> {run_id}): generation raised to {raised} \
                 before reading it"
            );
        }
        *server = Some(run_id);
        Ok(())
    }
}

/// The server's `run_id`, new at every start of a Redis process.
fn run_id(conn: &mut dyn ConnectionLike) -> RedisResult<String> {
    let info: String = redis::cmd("INFO").arg("server").query(conn)?;
    info.lines()
        .find_map(|line| line.strip_prefix("run_id:"))
        .map(|id| id.trim().to_owned())
        .ok_or_else(|| {
            RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "INFO server has no run_id",
            ))
        })
}

/// A database failure met while working on Redis, as the error the callers already handle.
pub(super) fn database_error(e: &dyn std::fmt::Display) -> RedisError {
    RedisError::from(std::io::Error::other(format!(
        "cannot read the generation mark from the database: {e}"
    )))
}
