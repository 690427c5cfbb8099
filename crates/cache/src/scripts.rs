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

impl Default for Scripts {
    fn default() -> Self {
        Scripts {
            read_or_lease: Script::new(include_str!("scripts/read_or_lease.lua")),
            read_or_lease_guarded: Script::new(concat!(
                "#!lua\n",
                include_str!("scripts/read_or_lease.lua")
            )),
            try_lease: Script::new(include_str!("scripts/try_lease.lua")),
            renew_lock: Script::new(include_str!("scripts/renew_lock.lua")),
            fill: Script::new(include_str!("scripts/fill.lua")),
            invalidate: Script::new(concat!(
                include_str!("scripts/owner_check.lua"),
                include_str!("scripts/invalidate.lua")
            )),
            resync: Script::new(include_str!("scripts/resync.lua")),
            renew_lease: Script::new(include_str!("scripts/renew_lease.lua")),
            unacknowledged: Script::new(include_str!("scripts/unacknowledged.lua")),
            withdraw_lease: Script::new(include_str!("scripts/withdraw_lease.lua")),
            inspect: Script::new(concat!(
                include_str!("scripts/owner_check.lua"),
                include_str!("scripts/inspect.lua")
            )),
            publish_stats: Script::new(include_str!("scripts/publish_stats.lua")),
        }
    }
}
