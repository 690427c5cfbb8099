//! Whether the server in use can do the job at all (SPEC §4, "Servers").
//!
//! The protocol needs Redis 6.2 or later (or Valkey), Lua scripts (every read and write is one),
//! pub/sub (the memory tier's invalidations) and `INFO` (a server's `run_id`, see
//! [`crate::resync`]). A proxy or a managed service may refuse some of them: twemproxy and
//! Envoy's Redis proxy refuse or restrict scripts and pub/sub, an ACL may forbid them, an old
//! server lacks what the scripts use. Such a server is not down, and waiting for it to come
//! back is pointless, so it is named instead: the refusal is logged once, `/readyz` says
//! `"cache": "unsupported"` with the reason, and the cache is not used (pages come from the
//! database, as in an outage). Each check is made again on every new connection (pool
//! connections in [`crate::resync`], the subscription in [`crate::local`]), so a server
//! replaced by one that can do the job is used again without a restart.
//!
//! # Why a write need not wait for a server that refuses scripts
//!
//! A write that cannot invalidate normally waits for another instance to apply its outbox row
//! (the partial partition, see [`crate::outbox`]): another instance may still read Redis. But
//! every read of Redis is a script, and so is every renewal of a memory lease. Once the server
//! has refused scripts for longer than a memory lease, no instance can have read a value from it
//! or renewed a lease through it since (a lease renewed just before the refusal began has run
//! out), so nothing old can be served and the write answers at once. Its outbox row stays, so the
//! invalidation is applied by the first instance that meets a server that can run it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redis::{ErrorKind, RedisError, ServerErrorKind};

/// The oldest Redis the application supports (SPEC §4), and the oldest it is tested against.
/// Valkey is recognised by its own `valkey_version` (it reports a `redis_version` of 7.2.4).
const MINIMUM: (u32, u32) = (6, 2);

/// What a check found the server refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// For the log and `/readyz`: what is missing, and the server's own words.
    pub why: String,
    /// True when it refuses scripts (the write path's shortcut above).
    pub scripts: bool,
    since: Instant,
}

/// The checks, each made on its own kind of connection.
#[derive(Clone, Copy, Debug)]
pub enum Check {
    /// On every new pooled connection: `INFO`, the version, a script.
    Connection,
    /// On every new subscription: `SUBSCRIBE`.
    PubSub,
}

/// The last result of each check. The results change only when connections are made; every
/// request reads [`ServerSupport::is_supported`], so that is one atomic load.
#[derive(Default)]
pub struct ServerSupport {
    /// The connection check's refusal, then the subscription's.
    refusals: Mutex<[Option<Refusal>; 2]>,
    /// True while either has one; written under the lock.
    refused: AtomicBool,
    /// Whether the server in use honours script flags (see [`honours_script_flags`]).
    script_flags: AtomicBool,
}

impl ServerSupport {
    fn refusals(&self) -> MutexGuard<'_, [Option<Refusal>; 2]> {
        self.refusals.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn index(check: Check) -> usize {
        match check {
            Check::Connection => 0,
            Check::PubSub => 1,
        }
    }

    /// The server refused what `check` needs. Logged when the reason is new, not on every
    /// connection that meets it again.
    pub fn refused(&self, check: Check, why: String, scripts: bool) {
        let mut refusals = self.refusals();
        let slot = &mut refusals[Self::index(check)];
        if slot.as_ref().is_some_and(|r| r.why == why) {
            return;
        }
        log::error!(
            "the redis server cannot be used as this application's cache: {why}; serving \
             every page from the database (SPEC: Redis 6.2 or later, or Valkey, with scripts, \
             pub/sub and INFO)"
        );
        let since = slot.as_ref().map_or_else(Instant::now, |r| r.since);
        *slot = Some(Refusal {
            why,
            scripts,
            since,
        });
        self.refused.store(true, Ordering::Release);
    }

    /// The server passed `check`.
    pub fn passed(&self, check: Check) {
        let mut refusals = self.refusals();
        if refusals[Self::index(check)].take().is_some() {
            log::info!("the redis server now does what the cache needs ({check:?} check)");
        }
        let any = refusals.iter().any(Option::is_some);
        self.refused.store(any, Ordering::Release);
    }

    /// Why the server cannot be used, if it cannot.
    pub fn refusal(&self) -> Option<Refusal> {
        self.refusals().iter().flatten().next().cloned()
    }

    pub fn is_supported(&self) -> bool {
        !self.refused.load(Ordering::Acquire)
    }

    /// Set on every new connection, from its server's `INFO server`.
    pub fn set_script_flags(&self, honoured: bool) {
        self.script_flags.store(honoured, Ordering::Release);
    }

    /// Whether the server in use honours script flags (see [`honours_script_flags`]).
    pub fn script_flags(&self) -> bool {
        self.script_flags.load(Ordering::Acquire)
    }

    /// Whether the server has refused scripts for at least `long`.
    pub fn scripts_refused_for(&self, long: Duration) -> bool {
        self.refusals()[0]
            .as_ref()
            .is_some_and(|r| r.scripts && r.since.elapsed() >= long)
    }
}

/// What is wrong with the server `INFO server` describes, if anything: a version before
/// [`MINIMUM`], or none at all.
pub fn version_problem(info_server: &str) -> Option<String> {
    let field = |name: &str| {
        info_server
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let Some(version) = field("redis_version") else {
        return Some("INFO server names no redis_version".into());
    };
    if let Some(valkey) = field("valkey_version") {
        return parse_version(valkey)
            .is_none()
            .then(|| format!("Valkey {valkey}: not a version this application knows"));
    }
    match parse_version(version) {
        Some(found) if found >= MINIMUM => None,
        _ => Some(format!(
            "Redis {version}; the cache needs {}.{} or later",
            MINIMUM.0, MINIMUM.1
        )),
    }
}

/// Whether the server `INFO server` describes honours a script's flags (a first line `#!lua`):
/// Redis 7.0 or later, and every Valkey. Such a server refuses to run a script that may write
/// (one without `flags=no-writes`) whenever it would refuse a write, before the script runs:
/// `NOREPLICAS` from a master that has lost its replicas under `min-replicas-to-write`, even
/// for a call that would only have read. A script without the line is run, and refused only
/// when it actually writes.
pub fn honours_script_flags(info_server: &str) -> bool {
    let field = |name: &str| {
        info_server
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    field("valkey_version").is_some()
        || field("redis_version")
            .and_then(parse_version)
            .is_some_and(|version| version >= (7, 0))
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Whether `error` is the server saying it will not run a command at all (unknown, disabled,
/// unsupported by a proxy, forbidden by an ACL), as opposed to a failure that passes: a timeout,
/// a dropped connection, a replica's `READONLY`, a server still `LOADING`, or a script that ran
/// and failed on data it found.
pub fn is_refusal(error: &RedisError) -> bool {
    match error.kind() {
        ErrorKind::Server(ServerErrorKind::NoPerm) => true,
        ErrorKind::Server(ServerErrorKind::ResponseError) | ErrorKind::Extension => {
            let text = error.to_string().to_ascii_lowercase();
            [
                "unknown command",
                "unsupported command",
                "is disabled",
                "not allowed",
            ]
            .iter()
            .any(|phrase| text.contains(phrase))
        }
        _ => false,
    }
}

/// The error a caller gets for a server that cannot be used.
pub fn unsupported(why: &str) -> RedisError {
    RedisError::from((
        ErrorKind::InvalidClientConfig,
        "the redis server cannot be used as this cache",
        why.to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_from_six_two_and_every_valkey_are_supported() {
        for info in [
            "# Server\r\nredis_version:6.2.14\r\nrun_id:x\r\n",
            "redis_version:7.0.15\r\n",
            "redis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.0.1\r\n",
        ] {
            assert_eq!(version_problem(info), None, "{info}");
        }
    }

    #[test]
    fn script_flags_are_honoured_from_redis_7_and_by_valkey() {
        assert!(!honours_script_flags("redis_version:6.2.14\r\n"));
        assert!(honours_script_flags("redis_version:7.0.15\r\n"));
        assert!(honours_script_flags(
            "redis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.0.1\r\n"
        ));
        assert!(!honours_script_flags("run_id:x\r\n"));
    }

    #[test]
    fn an_older_redis_is_named_with_its_version() {
        let why = version_problem("redis_version:5.0.7\r\n").unwrap();
        assert!(why.contains("5.0.7") && why.contains("6.2"), "{why}");
        assert!(version_problem("redis_version:6.0.20\r\n").is_some());
        assert!(
            version_problem("run_id:x\r\n").is_some(),
            "no version at all"
        );
    }

    #[test]
    fn a_refused_command_is_a_refusal_and_a_failover_or_a_timeout_is_not() {
        let refused = |text: &str| {
            RedisError::from((
                ErrorKind::Server(ServerErrorKind::ResponseError),
                "",
                text.to_owned(),
            ))
        };
        assert!(is_refusal(&refused(
            "unknown command 'EVALSHA', with args beginning with:"
        )));
        assert!(is_refusal(&RedisError::from((
            ErrorKind::Server(ServerErrorKind::NoPerm),
            "no permissions to run the 'evalsha' command"
        ))));
        assert!(!is_refusal(&refused("Error running script: WRONGTYPE")));
        assert!(!is_refusal(&RedisError::from((
            ErrorKind::Server(ServerErrorKind::ReadOnly),
            "You can't write against a read only replica."
        ))));
        assert!(!is_refusal(&RedisError::from(std::io::Error::from(
            std::io::ErrorKind::TimedOut
        ))));
    }

    #[test]
    fn a_refusal_is_remembered_from_when_it_began_until_a_check_passes() {
        let support = ServerSupport::default();
        support.refused(Check::Connection, "scripts refused".into(), true);
        assert!(!support.is_supported());
        assert!(support.scripts_refused_for(Duration::ZERO));
        assert!(!support.scripts_refused_for(Duration::from_secs(60)));
        support.passed(Check::Connection);
        assert!(support.is_supported());
        support.refused(Check::PubSub, "pub/sub refused".into(), false);
        assert_eq!(support.refusal().unwrap().why, "pub/sub refused");
        assert!(!support.scripts_refused_for(Duration::ZERO));
    }
}
