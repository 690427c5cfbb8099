//! The seeded fault schedule and its execution. Two independent slots, so one or two faults
//! are active at a time: one for Redis itself, one for an instance or its network path (or,
//! on PostgreSQL, the database's). The writes made outside the application, and the command
//! run against another Redis, are the staff writer's (see `clients.rs`): they are writes the
//! checker must order with the others.
//!
//! On a Redis Cluster (`--cluster`) the Redis slot's faults are a cluster's, each on the master
//! that serves the application's slot when the fault starts: killed (restarted empty after the
//! duration: it rejoins as a replica if its replica was promoted meanwhile, or comes back as an
//! empty master if not), frozen (promoted past if frozen longer than the node timeout), a manual
//! failover to its replica, the slot migrated to another master key by key, and the flush,
//! eviction and foreign value of a single server.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::checker::History;
use crate::clients::DatabaseLink;
use crate::cluster::Instance;
use anyhow::Context;
use testkit::{FaultProxy as Proxy, RedisCluster, RedisServer as Redis};

/// The value a program other than this app's release might leave in the key, with no TTL.
const FOREIGN_VALUE: &str = "{\"legacy\": true, \"avg\": 1}";

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Killed (SIGKILL) and, after the duration, restarted empty.
    RedisRestartedEmpty,
    /// Snapshot taken (SAVE); after the duration, killed and restarted from that snapshot.
    RedisRestartedFromSnapshot,
    /// SIGSTOP for the duration, then SIGCONT.
    RedisFrozen,
    /// A value the app did not write, SET into the key with no TTL.
    ForeignValue,
    /// `FLUSHALL`, as an operator (or Django's `cache.clear()`, a `FLUSHDB`) does.
    Flushed,
    /// Some of the application's keys deleted, as eviction does: `which` picks them.
    KeysEvicted(u8),
    /// `maxmemory` just above what Redis holds, `allkeys-lru`, and a client filling it for
    /// the duration: Redis evicts what it likes, the application's keys too.
    MemoryPressure,
    /// The instance's proxy refuses connections and closes the open ones.
    CutOff(usize),
    /// The instance's proxy accepts and never answers (open connections freeze too).
    Stalled(usize),
    /// The instance's open connections to Redis go silent for good (no FIN); new ones pass.
    BlackHoled(usize),
    /// SIGKILL, restarted after the duration.
    Killed(usize),
    /// SIGTERM (a rolling restart), restarted after the duration.
    Terminated(usize),
    /// PostgreSQL only: the proxy in front of the database refuses connections and closes the
    /// open ones, for both instances.
    DatabaseCut,
    /// Cluster only: the master of the application's slot killed (SIGKILL), restarted empty
    /// after the duration.
    SlotMasterKilled,
    /// Cluster only: the master of the application's slot frozen (SIGSTOP) for the duration.
    SlotMasterFrozen,
    /// Cluster only: `CLUSTER FAILOVER` on the replica of the slot's master.
    ManualFailover,
    /// Cluster only: the slot migrated to another master, a key every 50 ms.
    SlotMigrated,
}

#[derive(Debug, Clone, Copy)]
pub struct Planned {
    pub at: Duration,
    pub lasts: Duration,
    pub fault: Fault,
}

fn seconds(rng: &mut StdRng, from: f64, to: f64) -> Duration {
    Duration::from_secs_f64(rng.random_range(from..to))
}

/// The schedule of `seed`: the same seed, the same faults at the same times.
pub fn schedule(
    seed: u64,
    run: Duration,
    instances: usize,
    postgres: bool,
    cluster: bool,
) -> Vec<Vec<Planned>> {
    let mut slots = Vec::new();
    for slot in 0..2u64 {
        let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(2).wrapping_add(slot));
        let mut at = seconds(&mut rng, 1.0, 3.0);
        let mut planned = Vec::new();
        loop {
            let lasts = seconds(&mut rng, 0.3, 3.0);
            if at + lasts + Duration::from_secs(1) > run {
                break;
            }
            let fault = if slot == 0 && cluster {
                match rng.random_range(0..7) {
                    0 => Fault::SlotMasterKilled,
                    1 => Fault::SlotMasterFrozen,
                    2 => Fault::ManualFailover,
                    3 => Fault::SlotMigrated,
                    4 => Fault::ForeignValue,
                    5 => Fault::Flushed,
                    _ => Fault::KeysEvicted(rng.random()),
                }
            } else if slot == 1 && cluster {
                let i = rng.random_range(0..instances);
                match rng.random_range(0..if postgres { 3 } else { 2 }) {
                    0 => Fault::Killed(i),
                    1 => Fault::Terminated(i),
                    _ => Fault::DatabaseCut,
                }
            } else if slot == 0 {
                match rng.random_range(0..7) {
                    0 => Fault::RedisRestartedEmpty,
                    1 => Fault::RedisRestartedFromSnapshot,
                    2 => Fault::RedisFrozen,
                    3 => Fault::ForeignValue,
                    4 => Fault::Flushed,
                    5 => Fault::KeysEvicted(rng.random()),
                    _ => Fault::MemoryPressure,
                }
            } else {
                let i = rng.random_range(0..instances);
                match rng.random_range(0..if postgres { 6 } else { 5 }) {
                    0 => Fault::CutOff(i),
                    1 => Fault::Stalled(i),
                    2 => Fault::BlackHoled(i),
                    3 => Fault::Killed(i),
                    4 => Fault::Terminated(i),
                    _ => Fault::DatabaseCut,
                }
            };
            planned.push(Planned { at, lasts, fault });
            at += lasts + seconds(&mut rng, 0.5, 3.0);
        }
        slots.push(planned);
    }
    slots
}

/// How long a cluster fault waits for the masters to agree on the slot's master.
const CLUSTER_SETTLES: Duration = Duration::from_secs(30);
/// Twice the time Redis gives a manual failover's handshake before it abandons it (5 s,
/// `CLUSTER_MF_TIMEOUT` in its source).
const MANUAL_FAILOVER_GRACE: Duration = Duration::from_secs(10);

/// The Redis the instances use.
#[derive(Clone)]
pub enum Backend {
    Standalone(Arc<Redis>),
    Cluster {
        cluster: Arc<RedisCluster>,
        /// The slot of the application's keys.
        slot: u16,
    },
}

impl Backend {
    pub fn url(&self) -> String {
        match self {
            Backend::Standalone(redis) => redis.url(),
            Backend::Cluster { cluster, .. } => cluster.url(),
        }
    }

    /// The server holding the application's keys now. On a cluster, once the masters agree
    /// on it: an earlier fault's failover may still be under way.
    fn server(&self) -> anyhow::Result<Arc<Redis>> {
        match self {
            Backend::Standalone(redis) => Ok(Arc::clone(redis)),
            Backend::Cluster { cluster, slot } => {
                let deadline = Instant::now() + CLUSTER_SETTLES;
                loop {
                    if let Some(master) = cluster.master_of(*slot) {
                        return Ok(Arc::clone(master));
                    }
                    if Instant::now() > deadline {
                        anyhow::bail!("no master agreed on for slot {slot} in {CLUSTER_SETTLES:?}");
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    fn cluster(&self) -> anyhow::Result<(&RedisCluster, u16)> {
        match self {
            Backend::Cluster { cluster, slot } => Ok((cluster, *slot)),
            Backend::Standalone(_) => anyhow::bail!("a cluster fault on a single Redis"),
        }
    }
}

/// Everything a fault can act on.
pub struct Targets {
    pub redis: Backend,
    pub proxies: Vec<Arc<Proxy>>,
    pub instances: Vec<Arc<Instance>>,
    pub prefix: String,
    /// The proxy in front of PostgreSQL, and who writes past it.
    pub database: Arc<DatabaseLink>,
}

/// The application's keys, for [`Fault::KeysEvicted`].
fn application_keys(prefix: &str) -> [String; 8] {
    [
        format!("{{{prefix}}}:students:average_age"),
        format!("{{{prefix}}}:generation"),
        format!("{{{prefix}}}:students:average_age:lock"),
        format!("{{{prefix}}}:instances"),
        format!("{{{prefix}}}:acks"),
        format!("{{{prefix}}}:database"),
        format!("{{{prefix}}}:server_met:*"),
        // The list's pages and their leases.
        format!("{{{prefix}}}:students:page:*"),
    ]
}

fn evict(redis: &Redis, prefix: &str, which: u8) -> anyhow::Result<Vec<String>> {
    let mut conn = redis.connection()?;
    let mut deleted = Vec::new();
    for (bit, key) in application_keys(prefix).into_iter().enumerate() {
        if which & (1 << bit) == 0 {
            continue;
        }
        let keys: Vec<String> = if key.ends_with('*') {
            redis::cmd("KEYS").arg(&key).query(&mut conn)?
        } else {
            vec![key]
        };
        for key in keys {
            let _: i64 = redis::cmd("DEL").arg(&key).query(&mut conn)?;
            deleted.push(key);
        }
    }
    Ok(deleted)
}

/// Fills Redis under a `maxmemory` just above what it holds, until `until`, then lifts the limit.
fn memory_pressure(redis: &Redis, until: Instant, stop: &AtomicBool) -> anyhow::Result<u64> {
    let mut conn = redis.connection()?;
    let info: String = redis::cmd("INFO").arg("memory").query(&mut conn)?;
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1 << 20);
    let set = |conn: &mut redis::Connection, name: &str, value: String| {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query::<()>(conn)
    };
    set(&mut conn, "maxmemory-policy", "allkeys-lru".into())?;
    set(&mut conn, "maxmemory", (used + 1024 * 1024).to_string())?;
    let filler = "f".repeat(8 * 1024);
    let mut written = 0u64;
    let filled = (|| -> redis::RedisResult<()> {
        while Instant::now() < until && !stop.load(Ordering::Acquire) {
            let set = redis::cmd("SET")
                .arg(format!("filler:{written}"))
                .arg(&filler)
                .arg("EX")
                .arg(30)
                .query::<()>(&mut conn);
            match set {
                Ok(()) => written += 1,
                // What a full Redis answers when eviction cannot keep up; so be it.
                Err(e) if e.code() == Some("OOM") => {}
                Err(e) => return Err(e),
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    })();
    set(&mut conn, "maxmemory", "0".into())?;
    set(&mut conn, "maxmemory-policy", "noeviction".into())?;
    filled?;
    Ok(written)
}

/// How long a SIGTERMed instance may take to stop before that counts as an error.
const STOP_PATIENCE: Duration = Duration::from_secs(10);

/// Runs one slot's faults in order; returns early, undoing the current fault, on `stop`.
pub fn run_slot(
    planned: Vec<Planned>,
    targets: Arc<Targets>,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
    applied: Arc<AtomicUsize>,
) {
    for p in planned {
        if !sleep_until(history.t0 + p.at, &stop) {
            return;
        }
        applied.fetch_add(1, Ordering::AcqRel);
        println!(
            "[{}] fault: {:?} for {:.1}s",
            history.now(),
            p.fault,
            p.lasts.as_secs_f64()
        );
        let span = history.fault_started(format!("{:?}", p.fault));
        if let Err(e) = apply(p, &targets, &history, &stop) {
            history.error(format!("fault {:?}: {e:#}", p.fault));
        }
        // A black hole's connections stay silent after this; the instance must notice itself.
        history.fault_ended(span);
    }
}

/// Sleeps until `when` or until `stop`; false when stopped.
fn sleep_until(when: Instant, stop: &AtomicBool) -> bool {
    while Instant::now() < when {
        if stop.load(Ordering::Acquire) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20).min(when - Instant::now()));
    }
    !stop.load(Ordering::Acquire)
}

/// Runs `fault` on the server holding the application's keys. On a cluster that server may
/// change under it (an earlier fault's failover finishing): a `MOVED`, `CLUSTERDOWN` or
/// `TRYAGAIN` is the harness' own miss, not the application's, and the fault is tried again on
/// the master the cluster names then.
fn on_slot_master<T>(
    targets: &Targets,
    fault: impl Fn(&Redis) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + CLUSTER_SETTLES;
    loop {
        let result = fault(&*targets.redis.server()?);
        let moving = |e: &anyhow::Error| {
            let text = e.to_string();
            [
                "Moved",
                "ClusterDown",
                "TryAgain",
                "MOVED",
                "CLUSTERDOWN",
                "TRYAGAIN",
            ]
            .iter()
            .any(|code| text.contains(code))
        };
        match result {
            Err(e) if moving(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

fn apply(
    p: Planned,
    targets: &Targets,
    history: &History,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let until = Instant::now() + p.lasts;
    // Looked up when the fault starts: on a cluster, the slot's master changes with the faults.
    let server = || targets.redis.server();
    match p.fault {
        Fault::RedisRestartedEmpty => {
            let redis = server()?;
            redis.kill();
            sleep_until(until, stop);
            redis.restart_empty()?;
        }
        Fault::RedisRestartedFromSnapshot => {
            let redis = server()?;
            let snapshot = redis.snapshot()?;
            sleep_until(until, stop);
            redis.restart_from(&snapshot)?;
        }
        Fault::RedisFrozen => {
            let redis = server()?;
            redis.freeze();
            sleep_until(until, stop);
            redis.thaw();
        }
        Fault::ForeignValue => on_slot_master(targets, |server| {
            let _: () = redis::cmd("SET")
                .arg(format!("{{{}}}:students:average_age", targets.prefix))
                .arg(FOREIGN_VALUE)
                .query(&mut server.connection()?)?;
            Ok(())
        })?,
        Fault::Flushed => on_slot_master(targets, |server| {
            let _: () = redis::cmd("FLUSHALL").query(&mut server.connection()?)?;
            Ok(())
        })?,
        Fault::KeysEvicted(which) => {
            let deleted = on_slot_master(targets, |server| evict(server, &targets.prefix, which))?;
            println!("[{}] evicted {deleted:?}", history.now());
        }
        Fault::MemoryPressure => {
            let written = memory_pressure(&*server()?, until, stop)?;
            println!("[{}] filler wrote {written} keys of 8 KiB", history.now());
        }
        Fault::SlotMasterKilled => {
            let redis = server()?;
            redis.kill();
            sleep_until(until, stop);
            redis.restart_empty()?;
        }
        Fault::SlotMasterFrozen => {
            let redis = server()?;
            redis.freeze();
            sleep_until(until, stop);
            redis.thaw();
        }
        Fault::ManualFailover => {
            let redis = server()?;
            let (cluster, slot) = targets.redis.cluster()?;
            let replica = cluster
                .replica_of(redis.port)
                .context("the slot's master has no replica now")?;
            redis::cmd("CLUSTER")
                .arg("FAILOVER")
                .query::<()>(&mut replica.connection()?)?;
            // CLUSTER FAILOVER answers before the replica has taken over. A slot migration
            // that followed a short failover window read the old master from a node that had
            // not heard yet, and MIGRATE answered MOVED halfway (CI at e8522bb, seed
            // 3509824019): the next fault starts once the failover is done.
            //
            // A manual failover is abandoned, with no error to its caller, when the master and
            // the replica do not finish their handshake in time (CI at da9e680, seed
            // 2077746458: nothing promoted in 30 s, the run failed on the harness, not on the
            // instances): then FORCE, which skips the handshake, still fails the slot over.
            if cluster
                .wait_for_new_master(slot, redis.port, MANUAL_FAILOVER_GRACE)
                .is_err()
            {
                println!("[{}] failover abandoned; forcing it", history.now());
                redis::cmd("CLUSTER")
                    .arg("FAILOVER")
                    .arg("FORCE")
                    .query::<()>(&mut replica.connection()?)?;
                cluster.wait_for_new_master(slot, redis.port, CLUSTER_SETTLES)?;
            }
            sleep_until(until, stop);
        }
        Fault::SlotMigrated => {
            let (cluster, slot) = targets.redis.cluster()?;
            // The masters agree on the slot's master before it moves (an earlier fault's
            // failover may still be under way).
            server()?;
            let to = cluster.migrate_slot(slot, Duration::from_millis(50))?;
            println!("[{}] slot {slot} now on {}", history.now(), to.address());
            sleep_until(until, stop);
        }
        Fault::DatabaseCut => {
            targets.database.cut(stop);
            sleep_until(until, stop);
            targets.database.restore();
        }
        Fault::CutOff(i) => {
            targets.proxies[i].cut();
            sleep_until(until, stop);
            targets.proxies[i].restore();
        }
        Fault::Stalled(i) => {
            targets.proxies[i].stall();
            sleep_until(until, stop);
            targets.proxies[i].restore();
        }
        Fault::BlackHoled(i) => {
            targets.proxies[i].black_hole();
            sleep_until(until, stop);
        }
        Fault::Killed(i) => {
            let instance = &targets.instances[i];
            instance.kill();
            sleep_until(until, stop);
            instance.start()?;
        }
        Fault::Terminated(i) => {
            let instance = &targets.instances[i];
            let started = Instant::now();
            if !instance.terminate(STOP_PATIENCE) {
                history.error(format!(
                    "instance {} did not stop within {STOP_PATIENCE:?} of SIGTERM (killed)",
                    instance.name
                ));
            } else if started.elapsed() > Duration::from_secs(2) {
                println!(
                    "[{}] instance {} took {:?} to stop on SIGTERM",
                    history.now(),
                    instance.name,
                    started.elapsed()
                );
            }
            sleep_until(until, stop);
            instance.start()?;
        }
    }
    Ok(())
}
