//! The seeded fault schedule and its execution. Two independent slots, so one or two faults
//! are active at a time: one for Redis itself, one for an instance or its network path.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::checker::History;
use crate::cluster::{Instance, Proxy, Redis};

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
pub fn schedule(seed: u64, run: Duration, instances: usize) -> Vec<Vec<Planned>> {
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
            let fault = if slot == 0 {
                match rng.random_range(0..4) {
                    0 => Fault::RedisRestartedEmpty,
                    1 => Fault::RedisRestartedFromSnapshot,
                    2 => Fault::RedisFrozen,
                    _ => Fault::ForeignValue,
                }
            } else {
                let i = rng.random_range(0..instances);
                match rng.random_range(0..5) {
                    0 => Fault::CutOff(i),
                    1 => Fault::Stalled(i),
                    2 => Fault::BlackHoled(i),
                    3 => Fault::Killed(i),
                    _ => Fault::Terminated(i),
                }
            };
            planned.push(Planned { at, lasts, fault });
            at += lasts + seconds(&mut rng, 0.5, 3.0);
        }
        slots.push(planned);
    }
    slots
}

/// Everything a fault can act on.
pub struct Targets {
    pub redis: Arc<Redis>,
    pub proxies: Vec<Arc<Proxy>>,
    pub instances: Vec<Arc<Instance>>,
    pub value_key: String,
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

fn apply(
    p: Planned,
    targets: &Targets,
    history: &History,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let until = Instant::now() + p.lasts;
    let redis = &targets.redis;
    match p.fault {
        Fault::RedisRestartedEmpty => {
            redis.kill();
            sleep_until(until, stop);
            redis.restart_empty()?;
        }
        Fault::RedisRestartedFromSnapshot => {
            let snapshot = redis.snapshot()?;
            sleep_until(until, stop);
            redis.restart_from(&snapshot)?;
        }
        Fault::RedisFrozen => {
            redis.freeze();
            sleep_until(until, stop);
            redis.thaw();
        }
        Fault::ForeignValue => {
            let _: () = redis::cmd("SET")
                .arg(&targets.value_key)
                .arg(FOREIGN_VALUE)
                .query(&mut redis.connection()?)?;
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
