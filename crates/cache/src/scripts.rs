//! The Lua scripts Redis runs atomically; each file documents its KEYS and ARGV. The scripts
//! that may claim the keys start with one prelude, `owner_check.lua`.

use redis::Script;

pub struct Scripts {
    pub read_or_lease: Script,
    /// `read_or_lease.lua` declared as a script that may write (`#!lua`, no `no-writes`), for
    /// servers that honour script flags ([`crate::support::honours_script_flags`]): an old
    /// master cut off from its replicas then refuses even a hit with `NOREPLICAS`, a failover
    /// sign, where the legacy script would serve it a value the new master has invalidated.
    pub read_or_lease_guarded: Script,
    pub try_lease: Script,
    pub renew_lock: Script,
    pub fill: Script,
    pub invalidate: Script,
    pub resync: Script,
    pub renew_lease: Script,
    pub unacknowledged: Script,
    pub withdraw_lease: Script,
    pub inspect: Script,
    pub publish_stats: Script,
}

const READ_OR_LEASE: &str = include_str!("scripts/read_or_lease.lua");
const READ_OR_LEASE_GUARDED: &str = concat!("#!lua\n", include_str!("scripts/read_or_lease.lua"));
const TRY_LEASE: &str = include_str!("scripts/try_lease.lua");
const RENEW_LOCK: &str = include_str!("scripts/renew_lock.lua");
const FILL: &str = include_str!("scripts/fill.lua");
const INVALIDATE: &str = concat!(
    include_str!("scripts/owner_check.lua"),
    include_str!("scripts/invalidate.lua")
);
const RESYNC: &str = include_str!("scripts/resync.lua");
const RENEW_LEASE: &str = include_str!("scripts/renew_lease.lua");
const UNACKNOWLEDGED: &str = include_str!("scripts/unacknowledged.lua");
const WITHDRAW_LEASE: &str = include_str!("scripts/withdraw_lease.lua");
const INSPECT: &str = concat!(
    include_str!("scripts/owner_check.lua"),
    include_str!("scripts/inspect.lua")
);
const PUBLISH_STATS: &str = include_str!("scripts/publish_stats.lua");

impl Scripts {
    /// Every script's body, with its SHA-1: what a node met through `ASK` is given to load
    /// (see [`crate::redis_target`]).
    pub fn bodies() -> Vec<(String, &'static str)> {
        [
            READ_OR_LEASE,
            READ_OR_LEASE_GUARDED,
            TRY_LEASE,
            RENEW_LOCK,
            FILL,
            INVALIDATE,
            RESYNC,
            RENEW_LEASE,
            UNACKNOWLEDGED,
            WITHDRAW_LEASE,
            INSPECT,
            PUBLISH_STATS,
        ]
        .into_iter()
        .map(|body| (Script::new(body).get_hash().to_owned(), body))
        .collect()
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts {
            read_or_lease: Script::new(READ_OR_LEASE),
            read_or_lease_guarded: Script::new(READ_OR_LEASE_GUARDED),
            try_lease: Script::new(TRY_LEASE),
            renew_lock: Script::new(RENEW_LOCK),
            fill: Script::new(FILL),
            invalidate: Script::new(INVALIDATE),
            resync: Script::new(RESYNC),
            renew_lease: Script::new(RENEW_LEASE),
            unacknowledged: Script::new(UNACKNOWLEDGED),
            withdraw_lease: Script::new(WITHDRAW_LEASE),
            inspect: Script::new(INSPECT),
            publish_stats: Script::new(PUBLISH_STATS),
        }
    }
}
