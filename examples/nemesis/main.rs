//! The nemesis (issue 11): two instances on one database, each reaching one Redis through its
//! own fault proxy; staff writers and readers on both; a seeded schedule of faults; then a
//! checker. Run it with `scripts/nemesis [--seconds S] [--seed N] [--postgres] [--cluster]`.
//!
//! With `--cluster`, Redis is a Redis Cluster of three masters and three replicas that the
//! instances reach through `redis+cluster://`, and the Redis faults are a cluster's: the master
//! of the application's slot killed or frozen (its replica promoted), a manual failover, the
//! slot migrated to another master, and the flushes and evictions of a single server, on that
//! master. There are no proxies in front of a cluster's nodes (a node tells clients its own
//! address), so the network faults are left out.
//!
//! Its last line is `nemesis: R reads, W writes, F faults (seed N): S stale, E errors, L lost`,
//! and it exits 0 only when S, E and L are all 0.
//!
//! With `--outside-delay N` it runs no faults: it makes N changes outside the application (a
//! connection of its own to the database) and measures, on each instance, the time from each
//! commit to the end of the first read that shows it (RELIABILITY.md).

// A test harness that cannot set itself up should fail loudly, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod checker;
mod clients;
mod cluster;
mod faults;
mod outside_delay;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cachewithredis::config::DatabaseUrl;

use checker::History;
use clients::DatabaseLink;
use cluster::{Database, Instance};
use faults::{Backend, Targets};
use testkit::{FaultProxy as Proxy, RedisCluster, RedisServer as Redis};

/// `CACHE_KEY_PREFIX` of both instances.
const PREFIX: &str = "nemesis";
/// Students in the database before the first write.
const INITIAL_STUDENTS: u64 = 20;
/// After the faults stop: how long the outbox may take to drain and reads to be hits again.
const RECOVERY: Duration = Duration::from_secs(5);
/// How often the run says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

struct Options {
    seconds: u64,
    seed: u64,
    postgres: bool,
    /// Redis is a cluster of six nodes.
    cluster: bool,
    /// Measure the delay of N outside changes instead of running faults.
    outside_delay: Option<u64>,
    bin: PathBuf,
    dir: PathBuf,
}

fn options() -> anyhow::Result<Options> {
    let mut args = std::env::args().skip(1);
    let mut seconds = 60;
    let mut seed = rand::random::<u32>() as u64;
    let mut postgres = false;
    let mut cluster = false;
    let mut outside_delay = None;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .with_context(|| format!("{name} needs a value"))?
                .parse::<u64>()
                .with_context(|| format!("{name} takes a number"))
        };
        match arg.as_str() {
            "--seconds" => seconds = value("--seconds")?,
            "--seed" => seed = value("--seed")?,
            "--postgres" => postgres = true,
            "--cluster" => cluster = true,
            "--outside-delay" => outside_delay = Some(value("--outside-delay")?),
            other => bail!(
                "unknown argument {other:?}; usage: nemesis [--seconds S] [--seed N] [--postgres] \
                 [--cluster] [--outside-delay N]"
            ),
        }
    }
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let bin = std::env::var("NEMESIS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(&target).join("debug/cachewithredis"));
    // One folder per run, so that runs side by side (SQLite and PostgreSQL) keep apart.
    let dir = PathBuf::from(&target)
        .join("nemesis")
        .join(format!("run-{}", std::process::id()));
    Ok(Options {
        seconds,
        seed,
        postgres,
        cluster,
        outside_delay,
        bin: std::fs::canonicalize(&bin).with_context(|| format!("{} not built", bin.display()))?,
        dir,
    })
}

struct Summary {
    reads: usize,
    writes: usize,
    faults: usize,
    stale: usize,
    errors: usize,
    lost: usize,
}

fn main() {
    let options = match options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("nemesis: {e:#}");
            std::process::exit(2);
        }
    };
    let seed = options.seed;
    let dir = options.dir.clone();
    // Everything the run started is dropped (killed) inside `run`, before the last line.
    let summary = match run(options) {
        Ok(summary) => summary,
        Err(e) => {
            println!("nemesis could not run: {e:#}");
            Summary {
                reads: 0,
                writes: 0,
                faults: 0,
                stale: 0,
                errors: 1,
                lost: 0,
            }
        }
    };
    println!(
        "nemesis: {} reads, {} writes, {} faults (seed {seed}): {} stale, {} errors, {} lost",
        summary.reads, summary.writes, summary.faults, summary.stale, summary.errors, summary.lost
    );
    let passed = summary.stale == 0 && summary.errors == 0 && summary.lost == 0;
    // A failed run keeps its logs for whoever reads the failure.
    if passed {
        let _ = std::fs::remove_dir_all(&dir);
    }
    std::process::exit(if passed { 0 } else { 1 });
}

/// Runs a command of the binary (migrate, create-staff, seed) to completion.
fn command(
    bin: &PathBuf,
    dir: &PathBuf,
    env: &[(String, String)],
    args: &[&str],
) -> anyhow::Result<()> {
    let output = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("STAFF_PASSWORD", clients::STAFF_PASSWORD)
        .output()?;
    if !output.status.success() {
        bail!(
            "{} {}: {}",
            bin.display(),
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn run(options: Options) -> anyhow::Result<Summary> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?;
    std::fs::create_dir_all(&options.dir)?;
    let dir = std::fs::canonicalize(&options.dir)?;
    let run_for = Duration::from_secs(options.seconds);
    let schedule = faults::schedule(options.seed, run_for, 2, options.postgres, options.cluster);
    println!(
        "nemesis: seed {}, {} s, {}, {}; logs in {}",
        options.seed,
        options.seconds,
        if options.postgres {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        if options.cluster {
            "a Redis Cluster"
        } else {
            "one Redis"
        },
        dir.display()
    );
    for (slot, planned) in schedule.iter().enumerate() {
        for p in planned {
            println!(
                "  plan slot {slot}: at {:>5.1}s {:?} for {:.1}s",
                p.at.as_secs_f64(),
                p.fault,
                p.lasts.as_secs_f64()
            );
        }
    }

    let postgres_admin = options.postgres.then(|| {
        std::env::var("TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    });
    let database = Database::create(&dir, postgres_admin)?;
    let backend = match options.cluster {
        true => {
            let cluster = Arc::new(RedisCluster::start()?);
            let slot = cluster.slot_of(&format!("{{{PREFIX}}}:generation"))?;
            Backend::Cluster { cluster, slot }
        }
        false => Backend::Standalone(Arc::new(Redis::start_in(&dir.join("redis"))?)),
    };
    // The Redis a command reaches when REDIS_URL is left unset on a box that has one.
    let wrong_redis = Redis::start_in(&dir.join("wrong-redis"))?;
    let env_with = |database_url: String, redis_url: String| {
        vec![
            ("DATABASE_URL".to_string(), database_url),
            ("REDIS_URL".to_string(), redis_url),
            ("CACHE_KEY_PREFIX".to_string(), PREFIX.to_string()),
            (
                "SECRET_KEY".to_string(),
                format!("nemesis-{}", "s".repeat(48)),
            ),
            ("RUST_LOG".to_string(), "warn".to_string()),
        ]
    };
    let cli_env = env_with(database.url().to_owned(), backend.url());
    command(&options.bin, &dir, &cli_env, &["migrate"])?;
    command(
        &options.bin,
        &dir,
        &cli_env,
        &["create-staff", clients::STAFF_USER],
    )?;
    command(
        &options.bin,
        &dir,
        &cli_env,
        &[
            "seed",
            "--count",
            &INITIAL_STUDENTS.to_string(),
            "--seed",
            &options.seed.to_string(),
        ],
    )?;
    let db_url = if database.is_postgres() {
        DatabaseUrl::Postgres(database.url().to_owned())
    } else {
        DatabaseUrl::Sqlite(database.url().to_owned())
    };
    let db = cachewithredis::db::build_pool(&db_url)?;

    let result = runtime.block_on(async {
        // On PostgreSQL the instances reach the database through a proxy that a fault cuts;
        // the nemesis' own connections (its checks, the outside writes) go direct.
        let (link, instance_database_url) = match database.postgres_port() {
            Some(port) => {
                let proxy = Arc::new(Proxy::start(port).await?);
                let url = database.url_through(proxy.port);
                (DatabaseLink::new(Some(proxy)), url)
            }
            None => (DatabaseLink::new(None), database.url().to_owned()),
        };
        let link = Arc::new(link);
        let command = clients::WrongRedisCommand {
            bin: options.bin.clone(),
            dir: dir.clone(),
            env: env_with(database.url().to_owned(), wrong_redis.url()),
        };
        let mut proxies = Vec::new();
        let mut instances = Vec::new();
        for name in ["A", "B"] {
            let redis_url = match &backend {
                Backend::Standalone(redis) => {
                    let proxy = Arc::new(Proxy::start(redis.port).await?);
                    let url = proxy.url();
                    proxies.push(proxy);
                    url
                }
                Backend::Cluster { .. } => backend.url(),
            };
            let instance = Arc::new(Instance::new(
                name,
                &options.bin,
                &dir,
                env_with(instance_database_url.clone(), redis_url),
            )?);
            instances.push(instance);
        }
        for instance in &instances {
            let instance = Arc::clone(instance);
            tokio::task::spawn_blocking(move || instance.start()).await??;
        }
        let targets = Arc::new(Targets {
            redis: backend.clone(),
            proxies: proxies.clone(),
            instances: instances.clone(),
            prefix: PREFIX.to_string(),
            database: Arc::clone(&link),
        });
        let summary = match options.outside_delay {
            Some(changes) => outside_delay::measure(&instances, &db, changes).await,
            None => exercise(&options, &db, schedule, targets, command).await,
        };
        // Stop the instances before their proxies and Redis go away.
        for instance in &instances {
            instance.kill();
        }
        summary
    });
    drop(runtime);
    result
}

async fn exercise(
    options: &Options,
    db: &cachewithredis::db::DbPool,
    schedule: Vec<Vec<faults::Planned>>,
    targets: Arc<Targets>,
    command: clients::WrongRedisCommand,
) -> anyhow::Result<Summary> {
    let initial = tokio::task::block_in_place(|| clients::students_in(db))?;
    let (count, sum, first_page) = clients::count_and_sum(&initial);
    let history = Arc::new(History::new(count, sum, first_page));
    let stop = Arc::new(AtomicBool::new(false));
    let stop_faults = Arc::new(AtomicBool::new(false));
    let applied = Arc::new(AtomicUsize::new(0));
    let instances = targets.instances.clone();

    let mut readers = Vec::new();
    for instance in &instances {
        for route in [
            "/api/students/average-age",
            "/students/average-age",
            clients::LIST_ROUTE,
        ] {
            readers.push(tokio::spawn(clients::reader(
                Arc::clone(instance),
                route,
                Arc::clone(&targets.database),
                Arc::clone(&history),
                Arc::clone(&stop),
            )));
        }
    }
    let writer = tokio::spawn(clients::staff_writer(
        instances.clone(),
        db.clone(),
        Arc::clone(&targets.database),
        command,
        Arc::clone(&history),
        Arc::clone(&stop),
    ));
    let slots: Vec<_> = schedule
        .into_iter()
        .map(|planned| {
            let (targets, history, stop, applied) = (
                Arc::clone(&targets),
                Arc::clone(&history),
                Arc::clone(&stop_faults),
                Arc::clone(&applied),
            );
            std::thread::spawn(move || faults::run_slot(planned, targets, history, stop, applied))
        })
        .collect();

    let end = tokio::time::Instant::now() + Duration::from_secs(options.seconds);
    let mut progress =
        tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(end) => break,
            _ = progress.tick() => {
                let (reads, writes) = history.counts();
                println!(
                    "[{}] progress: {reads} reads, {writes} writes, {} errors",
                    history.now(),
                    history.error_count()
                );
            }
            _ = tokio::signal::ctrl_c() => {
                history.error("interrupted".into());
                break;
            }
        }
    }
    stop_faults.store(true, Ordering::Release);
    tokio::task::block_in_place(|| {
        for slot in slots {
            let _ = slot.join();
        }
    });
    stop.store(true, Ordering::Release);
    for reader in readers {
        let _ = reader.await;
    }
    let expected = writer.await.unwrap_or_default();
    println!("[{}] faults stopped", history.now());

    // An instance whose restart failed gets one more chance; still down is an error.
    for instance in &instances {
        if instance.is_restarting() {
            let restarting = Arc::clone(instance);
            if let Err(e) = tokio::task::spawn_blocking(move || restarting.start()).await? {
                history.error(format!(
                    "instance {} down after the faults: {e:#}",
                    instance.name
                ));
            }
        }
    }
    recovery(&instances, db, &history).await;
    let inconsistencies = monitor_inconsistencies(&instances).await;
    let lost = lost_writes(db, &expected, &history)?;

    let (reads, writes) = history.counts();
    let stale = history.stale_reads() + inconsistencies;
    Ok(Summary {
        reads,
        writes,
        faults: applied.load(Ordering::Acquire),
        stale,
        errors: history.error_count(),
        lost,
    })
}

/// A metric of one instance, from /metrics.
async fn metric(instance: &Instance, series: &str) -> Option<f64> {
    let body = clients::client(Duration::from_secs(5))
        .get(instance.url("/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Once the faults stop: the outbox drains and reads are hits again within [`RECOVERY`].
async fn recovery(instances: &[Arc<Instance>], db: &cachewithredis::db::DbPool, history: &History) {
    use cachewithredis::cache::schema::cache_invalidations;
    use diesel::prelude::*;
    let started = Instant::now();
    let client = clients::client(Duration::from_secs(5));
    let mut missing = String::new();
    while started.elapsed() < RECOVERY {
        missing.clear();
        let outbox: i64 = tokio::task::block_in_place(|| {
            db.get()
                .map_err(anyhow::Error::from)
                .and_then(|mut c| Ok(cache_invalidations::table.count().get_result(&mut c)?))
        })
        .unwrap_or(-1);
        if outbox != 0 {
            missing += &format!(" outbox rows: {outbox};");
        }
        for instance in instances {
            let pending = metric(instance, "cachewithredis_cache_invalidations_pending").await;
            if pending != Some(0.0) {
                missing += &format!(" instance {} pending {pending:?};", instance.name);
            }
            let read = clients::read_once(&client, instance, "/api/students/average-age").await;
            match read {
                Ok((_, _, cache)) if cache == "HIT" => {}
                Ok((_, _, cache)) => {
                    missing += &format!(" instance {} X-Cache {cache};", instance.name)
                }
                Err(_) => missing += &format!(" instance {} read failed;", instance.name),
            }
        }
        if missing.is_empty() {
            println!(
                "[{}] recovered in {:.2}s: outbox empty, both instances HIT",
                history.now(),
                started.elapsed().as_secs_f64()
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    history.error(format!(
        "not recovered {RECOVERY:?} after the faults:{missing}"
    ));
}

/// The monitor's inconsistencies: from /metrics at the end, and from the logs (an instance
/// killed or restarted during the run took its counter with it; its log lines remain).
async fn monitor_inconsistencies(instances: &[Arc<Instance>]) -> usize {
    let mut from_metrics = 0.0;
    let mut checks = 0.0;
    let mut from_logs = 0;
    for instance in instances {
        from_metrics += metric(instance, "cachewithredis_cache_inconsistencies_total")
            .await
            .unwrap_or(0.0);
        checks += metric(instance, "cachewithredis_cache_consistency_checks_total")
            .await
            .unwrap_or(0.0);
        let log = std::fs::read_to_string(instance.log_path()).unwrap_or_default();
        for line in log.lines().filter(|l| l.contains("cache inconsistency")) {
            println!("MONITOR instance {}: {line}", instance.name);
            from_logs += 1;
        }
    }
    println!(
        "consistency monitor: {checks} checks and {from_metrics} inconsistencies since the last restarts, {from_logs} inconsistencies logged in the whole run"
    );
    from_logs.max(from_metrics as usize)
}

/// Answered writes whose effect is not in the database at the end.
fn lost_writes(
    db: &cachewithredis::db::DbPool,
    expected: &clients::Expected,
    history: &History,
) -> anyhow::Result<usize> {
    let rows = tokio::task::block_in_place(|| clients::students_in(db))?;
    let mut lost = 0;
    for (id, age) in expected {
        let actual = rows.get(id).map(|(_, age)| *age);
        if actual != *age {
            lost += 1;
            println!(
                "[{}] LOST student #{id}: answered writes left {age:?}, the database has {actual:?}",
                history.now()
            );
        }
    }
    Ok(lost)
}
