//! Redis behind Sentinel: the application follows a failover to the promoted replica without a
//! 5xx, a lost write or a stale read, and finds the master when some sentinels cannot help.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cachewithredis::cache::redis_pool::{build_checked_redis_pool, RedisTimeouts};
use cachewithredis::cache::redis_target::{RedisConnection, RedisTarget};
use cachewithredis::models::Student;
use tokio::task::JoinHandle;

use crate::helpers::sentinel::{self, spawn_app_through, SentinelCluster};
use crate::helpers::{free_port, header, TestApp};

/// How soon after the promotion the cache must hit again (the bound).
const HIT_AFTER_PROMOTION: Duration = Duration::from_secs(15);

struct Read {
    started: Instant,
    status: u16,
    count: Option<i64>,
    x_cache: String,
}

struct Write {
    answered: Instant,
    status: u16,
    name: String,
}

/// Readers on the API (and, when asked, one staff writer) until stopped.
struct Traffic {
    app: Arc<TestApp>,
    stop: Arc<AtomicBool>,
    readers: Vec<JoinHandle<Vec<Read>>>,
    writer: Option<JoinHandle<()>>,
    writes: Arc<Mutex<Vec<Write>>>,
}

impl Traffic {
    fn start(app: &Arc<TestApp>, with_writer: bool) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(Mutex::new(Vec::new()));
        let readers = (0..2)
            .map(|_| {
                let (app, stop) = (Arc::clone(app), Arc::clone(&stop));
                tokio::spawn(async move {
                    let mut reads = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        reads.push(read(&app).await);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    reads
                })
            })
            .collect();
        let writer = with_writer.then(|| {
            let (app, stop, writes) = (Arc::clone(app), Arc::clone(&stop), Arc::clone(&writes));
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    write(&app, &writes, &format!("Writer {n}")).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        });
        Traffic {
            app: Arc::clone(app),
            stop,
            readers,
            writer,
            writes,
        }
    }

    /// One staff write from the test itself, recorded with the others.
    async fn write(&self, name: &str) -> u16 {
        write(&self.app, &self.writes, name).await
    }

    async fn finish(self) -> (Vec<Read>, Vec<Write>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut reads = Vec::new();
        for reader in self.readers {
            reads.extend(reader.await.expect("reader"));
        }
        if let Some(writer) = self.writer {
            writer.await.expect("writer");
        }
        reads.sort_by_key(|r| r.started);
        let writes = std::mem::take(&mut *self.writes.lock().expect("writes"));
        (reads, writes)
    }
}

async fn read(app: &TestApp) -> Read {
    let started = Instant::now();
    let response = app.get("/api/students/average-age").await;
    let status = response.status().as_u16();
    let x_cache = header(&response, "x-cache");
    let json: Option<serde_json::Value> = response.json().await.ok();
    Read {
        started,
        status,
        count: json.and_then(|j| j["student_count"].as_i64()),
        x_cache,
    }
}

async fn write(app: &TestApp, writes: &Mutex<Vec<Write>>, name: &str) -> u16 {
    let status = app.add_student(name, "30").await.status().as_u16();
    writes.lock().expect("writes").push(Write {
        answered: Instant::now(),
        status,
        name: name.to_owned(),
    });
    status
}

/// Reads that started after some write had answered and still show a count from before it.
fn stale_reads(initial: i64, writes: &[Write], reads: &[Read]) -> Vec<String> {
    reads
        .iter()
        .filter_map(|r| {
            let answered_before = writes
                .iter()
                .filter(|w| w.status == 303 && w.answered < r.started)
                .count() as i64;
            let count = r.count?;
            (count < initial + answered_before).then(|| {
                format!(
                    "read ({}) showed {count} students, {} expected",
                    r.x_cache,
                    initial + answered_before
                )
            })
        })
        .collect()
}

async fn readyz_master(app: &TestApp) -> String {
    let (_, body) = app.get_text("/readyz").await;
    let json: serde_json::Value = serde_json::from_str(&body).expect("readyz json");
    json["redis_master"].as_str().unwrap_or_default().to_owned()
}

/// A hit from the application, polled; returns when it came.
async fn wait_for_hit(app: &TestApp, since: Instant, within: Duration) -> Instant {
    loop {
        if read(app).await.x_cache == "HIT" {
            return Instant::now();
        }
        assert!(since.elapsed() < within, "no HIT within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An application on a fresh cluster, signed in, with two students and a warm cache.
async fn warm_app(cluster: &SentinelCluster) -> Arc<TestApp> {
    let app = spawn_app_through(cluster, cluster.url()).await;
    app.insert_students(&[20, 22]);
    app.sign_in().await;
    assert_eq!(app.average().await.0["student_count"], 2);
    wait_for_hit(&app, Instant::now(), Duration::from_secs(10)).await;
    assert_eq!(readyz_master(&app).await, cluster.master.address());
    Arc::new(app)
}

/// Kills the master under `traffic`, waits for the promotion and for a hit from the new master,
/// lets the traffic run a moment longer, and checks everything the issue asks for.
async fn fail_over_and_check(
    cluster: &mut SentinelCluster,
    app: &Arc<TestApp>,
    traffic: Traffic,
    initial: i64,
    label: &str,
) {
    let killed = Instant::now();
    cluster.master.kill();
    let promotion = cluster.wait_for_promotion(killed).await;
    let promoted = killed + promotion;
    let hit = wait_for_hit(app, promoted, HIT_AFTER_PROMOTION).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (reads, writes) = traffic.finish().await;

    let errors: Vec<String> = reads
        .iter()
        .map(|r| r.status)
        .chain(writes.iter().map(|w| w.status))
        .filter(|status| *status >= 500)
        .map(|status| status.to_string())
        .collect();
    assert!(errors.is_empty(), "5xx during the failover: {errors:?}");
    let unanswered: Vec<&str> = writes
        .iter()
        .filter(|w| w.status != 303)
        .map(|w| w.name.as_str())
        .collect();
    assert!(unanswered.is_empty(), "writes not accepted: {unanswered:?}");
    let in_db: Vec<String> = Student::page_rows(&mut app.conn(), 1, 100_000)
        .expect("students")
        .into_iter()
        .map(|s| s.name)
        .collect();
    for w in &writes {
        assert!(in_db.contains(&w.name), "answered write {} is lost", w.name);
    }
    let stale = stale_reads(initial, &writes, &reads);
    assert_eq!(
        readyz_master(app).await,
        cluster.replica.address(),
        "the master in use is the promoted replica"
    );
    // The writer may have invalidated after the readers' last read: a read once the traffic
    // stopped caches the value again, wherever the application now writes.
    wait_for_hit(app, Instant::now(), HIT_AFTER_PROMOTION).await;
    assert!(
        cluster
            .replica
            .get(&app.value_key())
            .expect("GET")
            .is_some(),
        "the value is cached in the new master"
    );
    let during: Vec<&Read> = reads
        .iter()
        .filter(|r| r.started >= killed && r.started <= hit)
        .collect();
    eprintln!(
        "failover figures ({label}): promotion after {promotion:?}, HIT {:?} after the \
         promotion; {} reads and {} writes in all, {} reads from the kill to the HIT ({} BYPASS, \
         {} MISS, {} HIT); stale reads: {}",
        hit - promoted,
        reads.len(),
        writes.len(),
        during.len(),
        during.iter().filter(|r| r.x_cache == "BYPASS").count(),
        during.iter().filter(|r| r.x_cache == "MISS").count(),
        during.iter().filter(|r| r.x_cache == "HIT").count(),
        stale.len()
    );
    assert!(stale.is_empty(), "stale reads: {stale:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_master_killed_under_reads_and_writes_fails_over_with_no_5xx_no_lost_write_and_no_stale_read(
) {
    let mut cluster = SentinelCluster::start(false).await;
    let app = warm_app(&cluster).await;
    let traffic = Traffic::start(&app, true);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    fail_over_and_check(&mut cluster, &app, traffic, 2, "master killed under load").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_promoted_replica_that_missed_the_last_write_serves_no_stale_count() {
    let mut cluster = SentinelCluster::start(true).await;
    let app = warm_app(&cluster).await;
    let traffic = Traffic::start(&app, false);
    cluster.route_replica_through_proxy().await;
    cluster.replica_link.as_ref().expect("proxy").stall();
    assert_eq!(traffic.write("Missed by the replica").await, 303);
    let generation = app.generation_key();
    let on_replica: u64 = cluster
        .replica
        .get(&generation)
        .expect("GET")
        .map_or(0, |g| g.parse().unwrap_or(0));
    let on_master: u64 = cluster
        .master
        .get(&generation)
        .expect("GET")
        .map_or(0, |g| g.parse().unwrap_or(0));
    assert!(
        on_replica < on_master,
        "the replica missed the write's invalidation ({on_replica} < {on_master})"
    );
    fail_over_and_check(&mut cluster, &app, traffic, 2, "replica missed a write").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sentinel_that_is_down_or_names_an_unreachable_master_is_passed_over() {
    let cluster = SentinelCluster::start(false).await;
    let down = format!("127.0.0.1:{}", free_port().expect("a free port"));
    let misinformed = sentinel::sentinel(&cluster.dir, free_port().expect("a free port"));
    let url = cluster.url_with(&[down, misinformed.address()]);
    let app = spawn_app_through(&cluster, url).await;
    app.insert_students(&[20, 22]);
    assert_eq!(app.average().await.0["student_count"], 2);
    wait_for_hit(&app, Instant::now(), Duration::from_secs(10)).await;
    assert_eq!(readyz_master(&app).await, cluster.master.address());
    assert!(cluster.master.get(&app.value_key()).expect("GET").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_to_a_master_demoted_under_them_are_dropped_and_a_sentinel_still_naming_it_is_passed_over(
) {
    let cluster = SentinelCluster::start(false).await;
    let app = warm_app(&cluster).await;
    cluster.swap_roles_by_hand();
    // The invalidation meets READONLY on the old master's connections: recorded, then applied
    // on the new master once the app has asked the sentinels again.
    assert_eq!(app.add_student("After the swap", "30").await.status(), 303);
    let since = Instant::now();
    wait_for_hit(&app, since, HIT_AFTER_PROMOTION).await;
    assert_eq!(app.average().await.0["student_count"], 3);
    assert_eq!(readyz_master(&app).await, cluster.replica.address());
}

#[tokio::test(flavor = "multi_thread")]
async fn in_a_split_brain_the_master_is_the_one_most_sentinels_name_not_the_first_answer() {
    let cluster = SentinelCluster::start(false).await;
    cluster.split_brain_by_hand();
    assert_eq!(
        cluster.master.role(),
        "master",
        "the old master still says so"
    );
    // The URL asks the sentinel that still names the old master first.
    let app = spawn_app_through(&cluster, cluster.url()).await;
    app.insert_students(&[20, 22]);
    assert_eq!(app.average().await.0["student_count"], 2);
    assert_eq!(readyz_master(&app).await, cluster.replica.address());
    assert!(cluster
        .replica
        .get(&app.value_key())
        .expect("GET")
        .is_some());
    assert!(cluster.master.get(&app.value_key()).expect("GET").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn no_pooled_connection_to_a_replaced_master_is_used_once_the_sentinels_name_another() {
    let cluster = SentinelCluster::start(false).await;
    // Generous: a checkout that opens a connection asks two sentinels first.
    let timeouts = RedisTimeouts::from_setting(Duration::from_secs(1));
    let target = Arc::new(
        RedisTarget::open(&cluster.url(), timeouts.connect, timeouts.command).expect("url"),
    );
    let pool = build_checked_redis_pool(target, timeouts, 2, None);
    let role = |conn: &mut RedisConnection| -> redis::RedisResult<String> {
        let role: Vec<redis::Value> = redis::cmd("ROLE").query(conn)?;
        Ok(redis::from_redis_value(role[0].clone())?)
    };
    tokio::task::spawn_blocking(move || {
        // Two idle connections to the first master.
        let (mut a, mut b) = (pool.get().expect("a"), pool.get().expect("b"));
        assert_eq!(role(&mut a).unwrap(), "master");
        assert_eq!(role(&mut b).unwrap(), "master");
        drop((a, b));
        cluster.swap_roles_by_hand();
        // A write on one meets READONLY; a new connection then finds the new master while the
        // other old connection is checked out.
        let mut a = pool.get().expect("a");
        let written: redis::RedisResult<()> = redis::cmd("SET").arg("k").arg(1).query(&mut *a);
        assert!(written.is_err(), "the old master refuses writes");
        drop(a);
        let old = pool.get().expect("old");
        let mut new = pool.get().expect("new");
        assert_eq!(role(&mut new).unwrap(), "master");
        drop((old, new));
        // Neither connection now handed out is to the demoted server.
        let (mut a, mut b) = (pool.get().expect("a"), pool.get().expect("b"));
        let roles = [role(&mut a), role(&mut b)];
        assert!(
            roles
                .iter()
                .all(|r| r.as_deref().is_ok_and(|r| r == "master")),
            "{roles:?}"
        );
    })
    .await
    .expect("pool checks");
}
