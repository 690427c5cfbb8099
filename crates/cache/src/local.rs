//! The in-process tier in front of Redis: a copy of the value in memory, served without a
//! Redis round trip, and never after a write has answered (Chubby-style leases).
//!
//! # The argument
//!
//! An instance serves from memory only while it holds a *lease*: a member of the sorted set
//! `{prefix}:instances` whose score is an expiry computed by Redis from its own clock. The
//! instance renews it every [`RENEW_EVERY`] and trusts it locally until `t0 + LEASE - MARGIN`,
//! where `t0` is read *before* the renewal is sent; Redis computes its expiry after receiving
//! it, so the local end always comes first (clocks may be offset, only their rates must agree).
//!
//! Every invalidation publishes the new generation `g` on `{prefix}:invalidations`. Each
//! instance's subscriber raises its floor to `g`, drops an older copy, and only then writes its
//! acknowledgement (`HSET {prefix}:acks ID g`). A writer answers only once every instance with
//! an unexpired lease has acknowledged `g` (or its lease has expired in Redis' clock). So after
//! the answer, every instance either has dropped the old value or no longer serves from memory.
//!
//! A copy is accepted into memory only if its generation is at least the floor: a read that
//! fetched the old value from Redis just before the invalidation cannot plant it afterwards.
//! An instance renews its lease only while its subscription is up, and only while its floor is
//! at least the generation in Redis (see [`super::memory_lease`]); after a reconnection it starts
//! empty, with its floor set to the generation then current in Redis. A subscription that
//! stops answering without closing (a NAT or load balancer that forgot it) is found by a PING
//! after `REDIS_TIMEOUT_MS` without a message, which must answer within as long, and
//! reconnected.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use redis::RedisResult;

use super::generation::Generation;
use super::redis_target::RedisTarget;
use super::single_flight::Shared;
use super::Cache;

pub use super::memory_lease::{MemoryLease, LEASE, RENEW_EVERY};

/// At most this many values in memory: anyone can ask for any page of the list, and a crawl
/// must not grow the process. A full tier makes room by dropping the copy closest to its
/// expiry; Redis still holds every value.
pub const MAX_ENTRIES: usize = 1024;

/// The copy in memory and the guards around it.
pub struct LocalTier {
    pub instance_id: String,
    /// Whether this instance may serve from memory now; also the clock entries expire by.
    lease: MemoryLease,
    state: RwLock<LocalState>,
}

#[derive(Default)]
struct LocalState {
    /// The highest generation announced; copies older than it are refused.
    floor: Generation,
    /// The copies by key, each with its generation and when it expires (ms since `started`): no
    /// later than the key in Redis, so `CACHE_TTL_SECS` bounds the age of a value served from
    /// memory too.
    entries: HashMap<String, Entry>,
}

#[derive(Clone)]
struct Entry {
    value: Shared,
    generation: Generation,
    expires_ms: u64,
    /// How long the aggregate took, for the early refresh (see `cache::early_refresh_due`).
    compute: Duration,
}

/// A value served from memory, with what the early refresh and the consistency monitor need.
#[derive(Clone)]
pub struct MemoryHit {
    pub value: Shared,
    pub generation: Generation,
    pub remaining: Duration,
    pub compute: Duration,
}

impl LocalTier {
    pub fn new(instance_id: String) -> Self {
        LocalTier {
            instance_id,
            lease: MemoryLease::default(),
            state: RwLock::new(LocalState::default()),
        }
    }

    /// This instance's memory lease.
    pub fn lease(&self) -> &MemoryLease {
        &self.lease
    }

    /// The value of `key` in memory, if this instance may serve it now.
    pub fn get(&self, key: &str) -> Option<MemoryHit> {
        let now = self.lease.now_ms();
        if !self.lease.holds(now) {
            return None;
        }
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        match state.entries.get(key) {
            Some(e) if e.generation >= state.floor && now < e.expires_ms => Some(MemoryHit {
                value: Arc::clone(&e.value),
                generation: e.generation,
                remaining: Duration::from_millis(e.expires_ms - now),
                compute: e.compute,
            }),
            _ => None,
        }
    }

    /// Whether this instance serves anything from memory now (the staff cache page's figure).
    pub fn is_serving(&self) -> bool {
        let now = self.lease.now_ms();
        if !self.lease.holds(now) {
            return false;
        }
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state
            .entries
            .values()
            .any(|e| e.generation >= state.floor && now < e.expires_ms)
    }

    /// Keeps a copy of `key` read from, or stored into, Redis at `generation` with `ttl` left,
    /// unless a later invalidation has been announced.
    pub fn offer(
        &self,
        key: &str,
        value: Shared,
        generation: Generation,
        ttl: Duration,
        compute: Duration,
    ) {
        let now = self.lease.now_ms();
        let expires_ms = now + ttl.as_millis() as u64;
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if generation < state.floor {
            return;
        }
        if state.entries.len() >= MAX_ENTRIES && !state.entries.contains_key(key) {
            state.entries.retain(|_, e| now < e.expires_ms);
            if state.entries.len() >= MAX_ENTRIES {
                let soonest = state
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.expires_ms)
                    .map(|(k, _)| k.clone());
                if let Some(soonest) = soonest {
                    state.entries.remove(&soonest);
                }
            }
        }
        state.entries.insert(
            key.to_owned(),
            Entry {
                value,
                generation,
                expires_ms,
                compute,
            },
        );
    }

    /// An invalidation to `generation` was announced: drop older copies.
    pub fn invalidated(&self, generation: Generation) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.floor = state.floor.max(generation);
        let floor = state.floor;
        state.entries.retain(|_, e| e.generation >= floor);
    }

    /// Starts empty, above every generation up to `generation` (after a reconnection, or a
    /// renewal refused because an announcement was missed).
    pub(super) fn restart_from(&self, generation: Generation) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.floor = state.floor.max(generation);
        state.entries.clear();
    }

    /// The highest generation announced: this instance holds no copy older than it.
    pub fn floor(&self) -> Generation {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .floor
    }
}

/// Listens for invalidations until the cache is dropped; reconnects after errors.
pub fn run_subscriber(cache: Weak<Cache>, client: Arc<RedisTarget>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(strong) = cache.upgrade() else {
            return;
        };
        let channel = strong.keys().channel.clone();
        drop(strong);
        match subscribe_once(&cache, &client, &channel) {
            Ok(()) => return,
            Err(e) => {
                if let Some(cache) = cache.upgrade() {
                    cache.local().lease().set_subscribed(false);
                    log::debug!("invalidation subscription lost: {e}");
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Whether the server lets this process subscribe. redis-rs' `PubSub::subscribe` discards the
/// server's reply, so a refused `SUBSCRIBE` (a proxy, an ACL, a renamed command) would pass for
/// a subscription that never hears anything; a throwaway connection asks first.
fn probe_subscribe(client: &RedisTarget, channel: &str) -> RedisResult<()> {
    let mut probe = client.connect()?;
    redis::cmd("SUBSCRIBE")
        .arg(channel)
        .query::<redis::Value>(&mut probe)
        .map(drop)
}

/// One subscription: returns Ok when the cache is gone, Err when the connection failed.
fn subscribe_once(cache: &Weak<Cache>, client: &RedisTarget, channel: &str) -> RedisResult<()> {
    // With the command timeout (`REDIS_TIMEOUT_MS`) as its read timeout: how long the
    // subscription may be silent before it is PINGed, and how long the PING may take.
    let mut conn = client.connect()?;
    let subscribed = probe_subscribe(client, channel);
    let mut pubsub = conn.as_pubsub();
    {
        let Some(cache) = cache.upgrade() else {
            return Ok(());
        };
        match &subscribed {
            Err(e) if crate::support::is_refusal(e) => cache.support().refused(
                crate::support::Check::PubSub,
                format!("pub/sub refused: {e}"),
                false,
            ),
            Err(_) => {}
            Ok(()) => cache.support().passed(crate::support::Check::PubSub),
        }
        subscribed?;
        pubsub.subscribe(channel)?;
        // Invalidations sent while unsubscribed were missed: start empty, above all of them.
        cache.local().restart_from(cache.current_generation()?);
        cache.local().lease().set_subscribed(true);
        if cache.is_usable() {
            cache.renew_lease();
        }
    }
    loop {
        let message = match pubsub.get_message() {
            Ok(message) => Some(message),
            // Quiet: make sure the connection is still there, since a dropped one may stay
            // quiet forever. A PING that does not come back in time fails the subscription.
            Err(e) if e.is_timeout() => {
                pubsub.ping::<redis::Value>()?;
                None
            }
            Err(e) => return Err(e),
        };
        let Some(cache) = cache.upgrade() else {
            return Ok(());
        };
        if let Some(message) = message {
            let generation = Generation::parse(&message.get_payload::<String>()?)?;
            cache.local().invalidated(generation);
            cache.acknowledge(generation)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);
    const COMPUTE: Duration = Duration::from_millis(5);
    const KEY: &str = "students:average_age";

    fn offer(local: &LocalTier, key: &str, n: u32, generation: u64, ttl: Duration) {
        local.offer(key, Arc::new(n), Generation::new(generation), ttl, COMPUTE);
    }

    fn get(local: &LocalTier, key: &str) -> Option<u32> {
        local
            .get(key)
            .and_then(|hit| hit.value.downcast_ref::<u32>().copied())
    }

    #[test]
    fn nothing_is_served_without_a_lease() {
        let local = LocalTier::new("a".into());
        offer(&local, KEY, 1, 0, TTL);
        assert_eq!(get(&local, KEY), None);
        assert!(!local.is_serving());
        local.lease().renewed(local.lease().renewal_started());
        assert_eq!(get(&local, KEY), Some(1));
        assert!(local.is_serving());
        local.lease().revoke();
        assert_eq!(get(&local, KEY), None);
    }

    #[test]
    fn a_copy_older_than_an_announced_invalidation_is_dropped_and_refused() {
        let local = LocalTier::new("a".into());
        local.lease().renewed(local.lease().renewal_started());
        offer(&local, KEY, 1, 4, TTL);
        offer(&local, "students:page:2", 7, 4, TTL);
        local.invalidated(Generation::new(5));
        assert_eq!(get(&local, KEY), None);
        assert_eq!(
            get(&local, "students:page:2"),
            None,
            "one invalidation covers every key"
        );
        offer(&local, KEY, 1, 4, TTL);
        assert_eq!(
            get(&local, KEY),
            None,
            "a late read of the old value is refused"
        );
        offer(&local, KEY, 2, 5, TTL);
        assert_eq!(get(&local, KEY), Some(2));
    }

    #[test]
    fn a_copy_expires_with_the_redis_key() {
        let local = LocalTier::new("a".into());
        local.lease().renewed(local.lease().renewal_started());
        offer(&local, KEY, 1, 0, Duration::ZERO);
        assert_eq!(get(&local, KEY), None);
    }

    #[test]
    fn the_tier_is_bounded_and_makes_room_by_dropping_the_soonest_to_expire() {
        let local = LocalTier::new("a".into());
        local.lease().renewed(local.lease().renewal_started());
        offer(&local, "first", 0, 0, Duration::from_secs(1));
        for page in 1..MAX_ENTRIES {
            offer(&local, &format!("students:page:{page}"), 1, 0, TTL);
        }
        offer(&local, KEY, 2, 0, TTL);
        assert_eq!(get(&local, KEY), Some(2));
        assert_eq!(
            get(&local, "first"),
            None,
            "the copy closest to expiry made room"
        );
        assert_eq!(get(&local, "students:page:1"), Some(1));
        assert_eq!(local.state.read().unwrap().entries.len(), MAX_ENTRIES);
    }
}
