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
//!
//! The raise also records, in the server, when it was first met in its current role (see
//! [`ServerMet`]), so that only the processes meeting it within a lease of that wait for the
//! leases its predecessor granted.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::{ConnectionLike, RedisError, RedisResult};

use super::generation::{self, Generation};
use super::memory_lease::LEASE;
use super::redis_pool::OnConnect;
use super::scripts::Scripts;
use super::support::{self, Check, ServerSupport};
use super::Keys;
use crate::db::DbPool;

pub struct Resync {
    /// Where the mark is read and raised: a pool of its own (one connection is enough, the
    /// raises are serialised by `server`), so that opening a Redis connection never waits
    /// for a database connection that a page's query holds.
    db: DbPool,
    keys: Keys,
    scripts: Scripts,
    /// The `run_id` of the last server raised; held while raising, so connections opened
    /// together wait for one raise instead of each running its own.
    server: Mutex<Option<String>>,
    met: Arc<ServerMet>,
    /// Whether the server can do the job at all; checked here on every new connection.
    support: ServerSupport,
}

/// When the leases granted by the server before the one in use have all ended.
///
/// A new server (restarted, restored, promoted) has lost, or never had, the memory leases the
/// old one granted: an instance that renewed its lease there just before it went (and cannot
/// reach the new one yet) still serves from memory, trusting it, for up to [`LEASE`], while
/// the new server's table of lease holders does not name it. So for [`LEASE`] after a server
/// was first met, a writer waits out those leases instead of trusting that table.
///
/// "First met" is by any process, not this one: the first meeting is recorded in the server
/// (`{prefix}:server_met:{run_id}:{replication id}`, in the server's clock), and a process
/// meeting it later waits only for what is left of that lease. Without the record every new
/// process (each command-line write, each instance for its first seconds) waited a whole lease
/// for a server that had served for hours. The name carries the replication id as well as the
/// `run_id`: a master that is demoted and later promoted again keeps its `run_id`, and would
/// find its old record in the data replicated back to it; a promotion gives it a new
/// replication id.
#[derive(Default)]
pub struct ServerMet(Mutex<Option<Instant>>);

impl ServerMet {
    /// The earlier server's leases have `left` to run, as measured by the server just now; the
    /// local clock, read after its answer, can only place their end later than it is.
    fn leases_left(&self, left: Duration) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + left);
    }

    /// Whether every lease an earlier server granted has ended.
    pub fn earlier_leases_ended(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none_or(|end| Instant::now() >= end)
    }
}

/// How long a server's first meeting is remembered in it. Past this, the next process to meet
/// it records a new meeting and waits a lease it need not have: harmless, and once a day.
const MET_RECORD_TTL: Duration = Duration::from_secs(24 * 60 * 60);

impl Resync {
    pub fn new(db: DbPool, prefix: &str, met: Arc<ServerMet>) -> Self {
        Resync {
            met,
            db,
            keys: Keys::new(prefix),
            scripts: Scripts::default(),
            server: Mutex::new(None),
            support: ServerSupport::default(),
        }
    }

    /// What the last checks found the server refuses (see [`crate::support`]).
    pub fn support(&self) -> &ServerSupport {
        &self.support
    }

    /// When the previous server's leases end.
    pub fn met(&self) -> &ServerMet {
        &self.met
    }

    /// Puts back a generation that the server in use lost without a restart (a `FLUSHALL`, an
    /// eviction under `maxmemory`, a `DEL` or `SET` by hand), as if the server were new: the
    /// read script found it missing or below `floor`, the highest generation this instance has
    /// seen announced. The lease table went with it, or may have: a writer waits out the leases
    /// it named (the marker in `unacknowledged.lua`, and [`ServerMet`] here, whose record the
    /// flush took too).
    ///
    /// Concurrent readers all meet the loss at once; the first repairs under the lock, and
    /// the others find the generation back and return, so a flush costs one raise, and then the
    /// computing lease gives the burst one aggregate.
    pub fn repair(&self, conn: &mut dyn ConnectionLike, floor: Generation) -> RedisResult<()> {
        let _raising = self.server.lock().unwrap_or_else(PoisonError::into_inner);
        let found = self.generation_in(conn)?;
        if found.is_some_and(|found| found >= floor) {
            return Ok(());
        }
        let run_id = info_field(conn, "server", "run_id")?;
        let (raised, leases_left) = self.raise_above(conn, &run_id, floor)?;
        self.met.leases_left(leases_left);
        log::warn!(
            "redis lost the generation (found {}, this instance had seen {floor}): raised to \
             {raised}; values from before are misses",
            found.map_or_else(|| "none".to_owned(), |g| g.to_string()),
        );
        Ok(())
    }

    fn generation_in(&self, conn: &mut dyn ConnectionLike) -> RedisResult<Option<Generation>> {
        let found: Option<String> = redis::cmd("GET").arg(&self.keys.generation).query(conn)?;
        // A counter that is not a number was not written by this application: the mark wins.
        Ok(found.and_then(|text| Generation::parse(&text).ok()))
    }

    /// Raises the server's generation to the mark; returns it, and how long the leases of the
    /// server before may still run.
    fn raise(
        &self,
        conn: &mut dyn ConnectionLike,
        run_id: &str,
    ) -> RedisResult<(Generation, Duration)> {
        self.raise_above(conn, run_id, Generation::ZERO)
    }

    /// [`Resync::raise`], with the mark first raised to at least `seen` (a generation some
    /// instance saw announced: a database restored or failed over behind Redis has a lower
    /// mark, see [`generation::raise_to`]).
    fn raise_above(
        &self,
        conn: &mut dyn ConnectionLike,
        run_id: &str,
        seen: Generation,
    ) -> RedisResult<(Generation, Duration)> {
        let found = self.generation_in(conn)?.unwrap_or(Generation::ZERO);
        let mark = self
            .db
            .get()
            .map_err(|e| database_error(&e))
            .and_then(|mut db| {
                generation::raise_to(&mut db, found.max(seen)).map_err(|e| database_error(&e))
            })?;
        let replication_id = info_field(conn, "replication", "master_replid")?;
        let (raised, left_ms): (u64, u64) = self
            .scripts
            .resync
            .key(&self.keys.generation)
            .key(self.keys.server_met(run_id, &replication_id))
            .arg(mark)
            .arg(LEASE.as_millis() as u64)
            .arg(MET_RECORD_TTL.as_millis() as u64)
            .arg(&self.keys.channel)
            .invoke(conn)?;
        Ok((Generation::new(raised), Duration::from_millis(left_ms)))
    }
}

impl OnConnect for Resync {
    /// Checks the server (see [`crate::support`]): `INFO`, its version, and on first meeting a
    /// script, the raise. A server that refuses one of them fails the connection and is named.
    fn on_connect(&self, conn: &mut dyn ConnectionLike) -> RedisResult<()> {
        let info = redis::cmd("INFO")
            .arg("server")
            .query::<String>(conn)
            .inspect_err(|e| {
                if support::is_refusal(e) {
                    self.support
                        .refused(Check::Connection, format!("INFO refused: {e}"), false);
                }
            })?;
        if let Some(why) = support::version_problem(&info) {
            self.support.refused(Check::Connection, why.clone(), false);
            return Err(support::unsupported(&why));
        }
        self.support
            .set_script_flags(support::honours_script_flags(&info));
        let run_id = field_of(&info, "server", "run_id")?;
        let mut server = self.server.lock().unwrap_or_else(PoisonError::into_inner);
        if server.as_deref() == Some(run_id.as_str()) {
            self.support.passed(Check::Connection);
            return Ok(());
        }
        let (raised, leases_left) = self.raise(conn, &run_id).inspect_err(|e| {
            if support::is_refusal(e) {
                self.support
                    .refused(Check::Connection, format!("scripts refused: {e}"), true);
            }
        })?;
        self.support.passed(Check::Connection);
        self.met.leases_left(leases_left);
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

/// A field of `INFO section`: the server's `run_id`, new at every start of a Redis process, or
/// its replication id, new at every promotion.
fn info_field(conn: &mut dyn ConnectionLike, section: &str, field: &str) -> RedisResult<String> {
    let info: String = redis::cmd("INFO").arg(section).query(conn)?;
    field_of(&info, section, field)
}

/// `field` of an `INFO section` reply.
fn field_of(info: &str, section: &str, field: &str) -> RedisResult<String> {
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(|value| value.trim().to_owned())
        .ok_or_else(|| {
            RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "INFO has no such field",
                format!("INFO {section} has no {field}"),
            ))
        })
}

/// A database failure met while working on Redis, as the error the callers already handle.
pub(super) fn database_error(e: &dyn std::fmt::Display) -> RedisError {
    RedisError::from(std::io::Error::other(format!(
        "cannot read the generation mark from the database: {e}"
    )))
}
