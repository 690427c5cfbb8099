//! Redis behind Sentinel: the application follows a failover to the promoted replica without a
//! 5xx, a lost write or a stale read, and finds the master when some sentinels cannot help.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cachewithredis::cache::redis_pool::{build_checked_redis_pool, RedisTimeouts};
use cachewithredis::cache::redis_target::{RedisConnection, RedisTarget};
use cachewithredis::cache::redis_value::ReadOutcome;
use cachewithredis::cache::Keys;
use cachewithredis::models::cached::AVERAGE_AGE_KEY;
use cachewithredis::models::AverageAge;
use cachewithredis::startup::Resources;

use crate::helpers::sentinel::{self, spawn_app_through, spawn_instance_through, SentinelCluster};
use crate::helpers::traffic::{
    assert_no_5xx_and_no_lost_write, readyz_master, stale_reads, wait_for_hit, Read, Traffic,
};
use crate::helpers::{free_port, spawn_app, test_settings, TestApp};

/// How soon after the promotion the cache must hit again (the bound).
const HIT_AFTER_PROMOTION: Duration = Duration::from_secs(15);

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

    assert_no_5xx_and_no_lost_write(app, &reads, &writes);
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
        RedisTarget::open(&cluster.url(), "{t}:k", timeouts.connect, timeouts.command)
            .expect("url"),
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

/// `min-replicas-to-write 1` on both servers, as the README's Sentinel recipe sets it.
fn refuse_writes_without_a_replica(cluster: &SentinelCluster) {
    for server in [&*cluster.master, &cluster.replica] {
        let mut conn = server.connection().expect("redis answers");
        for (name, value) in [
            ("min-replicas-to-write", "1"),
            ("min-replicas-max-lag", "10"),
        ] {
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg(name)
                .arg(value)
                .query(&mut conn)
                .expect("CONFIG SET");
        }
    }
}

/// What holds here: the old master refuses the cut-off instance's lease renewals
/// (`NOREPLICAS`), and its worker sees the database's mark ahead of the old master's generation
/// and cannot invalidate there, so it stops trusting Redis and serves from the database; the
/// next test covers the moment between two of its rounds.
#[tokio::test(flavor = "multi_thread")]
async fn in_a_partition_the_instance_left_with_the_old_master_serves_no_stale_read() {
    let cluster = SentinelCluster::start(false).await;
    refuse_writes_without_a_replica(&cluster);
    // One instance can reach only the first sentinel, which will stay with the old master;
    // the other only the two that will promote the replica.
    let left = format!(
        "redis+sentinel://{}/{}/0",
        cluster.sentinels[0].address(),
        sentinel::SERVICE
    );
    let cut_off = spawn_app_through(&cluster, left).await;
    let majority =
        cluster
            .url_with(&[])
            .replacen(&format!("{},", cluster.sentinels[0].address()), "", 1);
    let promoted = spawn_instance_through(&cluster, majority, Some(&cut_off)).await;
    cut_off.insert_students(&[20, 22]);
    for app in [&cut_off, &promoted] {
        assert_eq!(app.average().await.0["student_count"], 2);
        app.get_from_memory("/api/students/average-age").await;
    }
    cluster.wait_for_replica_in_sync().await;

    cluster.split_brain_by_hand();
    promoted.sign_in().await;
    assert_eq!(
        promoted.add_student("After the split", "30").await.status(),
        303
    );
    let answered = Instant::now();
    assert!(
        cluster
            .replica
            .get(&promoted.generation_key())
            .expect("GET")
            .is_some(),
        "the write was invalidated on the promoted replica"
    );
    // Neither side shows the count from before the write, from memory or from Redis: the old
    // master still holds the old value at the old generation, and says it is the master.
    let mut seen = Vec::new();
    while answered.elapsed() < Duration::from_secs(3) {
        for (side, app) in [("cut off", &cut_off), ("promoted", &promoted)] {
            let (json, x_cache) = app.average().await;
            let count = json["student_count"].as_i64().unwrap_or_default();
            assert_eq!(
                count, 3,
                "{side} instance read {count} ({x_cache}) after the write"
            );
            seen.push(format!("{side}: {x_cache}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        cluster.master.role(),
        "master",
        "the old master still says so"
    );
    assert!(
        seen.iter().any(|s| s == "cut off: BYPASS"),
        "the cut-off instance serves from the database: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_master_that_would_refuse_a_write_answers_a_cached_read_with_noreplicas_not_the_value() {
    // Between two rounds of its worker an instance cut off with an old master may still trust
    // it; the read script is declared as one that may write, so that a master which has lost
    // its replicas (under min-replicas-to-write) refuses even a hit.
    let app = spawn_app().await;
    app.insert_students(&[20, 22]);
    app.average().await;
    let settings = test_settings(&app.database, app.redis_url(), "test", &app.secret_key);
    let mut redis = app.redis_direct();
    tokio::task::spawn_blocking(move || {
        let resources = Resources::open(&settings).expect("resources");
        let keys = Keys::new("test").value(AVERAGE_AGE_KEY);
        let read = resources.cache.read_or_lease::<AverageAge>(&keys);
        assert!(matches!(read, Ok(ReadOutcome::Hit(_))), "{read:?}");
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("min-replicas-to-write")
            .arg(1)
            .query(&mut redis)
            .expect("CONFIG SET");
        let read = resources.cache.read_or_lease::<AverageAge>(&keys);
        let code = read
            .as_ref()
            .err()
            .and_then(|e| e.code().map(str::to_owned));
        assert_eq!(code.as_deref(), Some("NOREPLICAS"), "{read:?}");
    })
    .await
    .expect("reads");
}
