//! Redis Cluster (`redis+cluster://`), on a cluster of three masters and three replicas that
//! each test starts: every key in the slot of one master, hits and invalidations across two
//! instances, one aggregate per stampede, and no 5xx, lost write or stale read while the
//! master of the application's slot is killed (its replica promoted) or the slot migrated to
//! another master (`ASK` while it moves, `MOVED` once it has).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cachewithredis::cache::redis_pool::{build_checked_redis_pool, RedisPool, RedisTimeouts};
use cachewithredis::cache::redis_target::RedisTarget;
use futures_util::future::join_all;

use crate::helpers::cluster::{app_slot, spawn_app_on_cluster, RedisCluster, PREFIX};
use crate::helpers::traffic::{
    assert_no_5xx_and_no_lost_write, readyz_master, stale_reads, wait_for_hit, Traffic,
};
use crate::helpers::{RedisServer, TestApp};

/// How soon after the promotion, or the end of a migration, the cache must hit again.
const HIT_AFTER_CHANGE: Duration = Duration::from_secs(15);

async fn start_cluster() -> Arc<RedisCluster> {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .expect("join")
        .expect("the cluster forms");
    Arc::new(cluster)
}

/// A URL naming only one master, not the one serving the application's slot: the application
/// must find that one itself.
fn url_through_another_master(cluster: &RedisCluster) -> String {
    let serving = cluster.master_of(app_slot(cluster)).expect("master").port;
    let other = cluster
        .nodes
        .iter()
        .find(|n| n.port != serving && n.role() == "master")
        .expect("another master");
    format!("redis+cluster://{}", other.address())
}

fn keys_on(node: &RedisServer) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut node.connection().expect("node answers"))
        .expect("KEYS");
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_cluster_every_key_is_on_the_master_of_one_slot_and_reads_hit_and_writes_invalidate() {
    let cluster = start_cluster().await;
    let app = spawn_app_on_cluster(&cluster, url_through_another_master(&cluster), None).await;
    app.insert_students(&[20, 22]);
    app.sign_in().await;
    assert_eq!(app.average().await.0["student_count"], 2);
    let (json, x_cache) = app.average().await;
    assert_eq!(
        (json["student_count"].as_i64(), x_cache.as_str()),
        (Some(2), "HIT")
    );

    let slot = app_slot(&cluster);
    let master = cluster.master_of(slot).expect("master");
    assert_eq!(readyz_master(&app).await, master.address());
    let (status, body) = app.get_text("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""cache":"ok""#), "{body}");
    let on_master = keys_on(master);
    assert!(on_master.contains(&app.value_key()), "{on_master:?}");
    assert!(on_master.contains(&app.generation_key()), "{on_master:?}");
    let tag = format!("{{{PREFIX}}}:");
    assert!(
        on_master.iter().all(|k| k.starts_with(&tag)),
        "{on_master:?}"
    );
    for node in cluster
        .nodes
        .iter()
        .filter(|n| n.port != master.port && n.role() == "master")
    {
        assert_eq!(
            keys_on(node),
            Vec::<String>::new(),
            "keys on {}",
            node.address()
        );
    }

    assert_eq!(app.add_student("Ada", "41").await.status(), 303);
    let (json, x_cache) = app.average().await;
    assert_eq!(
        (json["student_count"].as_i64(), x_cache.as_str()),
        (Some(3), "MISS")
    );
    assert_eq!(app.average().await.1, "HIT");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_on_a_cluster_run_one_aggregate_per_cold_burst_and_hear_each_others_writes() {
    let cluster = start_cluster().await;
    let app = spawn_app_on_cluster(&cluster, cluster.url(), None).await;
    let other = spawn_app_on_cluster(&cluster, cluster.url(), Some(&app)).await;
    let ages: Vec<i32> = (0..2_000).map(|i| 18 + (i % 8)).collect();
    app.insert_students(&ages);
    let answers = join_all((0..64).map(|i| {
        let target = if i % 2 == 0 { &app } else { &other };
        target.average()
    }))
    .await;
    for (json, x_cache) in &answers {
        assert_eq!(json["student_count"], 2_000, "{x_cache}");
        assert_ne!(x_cache, "BYPASS");
    }
    let queries = app
        .metric("cachewithredis_db_aggregate_queries_total")
        .await
        + other
            .metric("cachewithredis_db_aggregate_queries_total")
            .await;
    assert_eq!(queries, 1.0, "aggregate queries for one cold burst");

    // The other instance serves from its memory until the invalidation, published on the
    // cluster, reaches it.
    other.get_from_memory("/api/students/average-age").await;
    app.sign_in().await;
    assert_eq!(app.add_student("Heard", "40").await.status(), 303);
    let (json, x_cache) = other.average().await;
    assert_eq!(
        (json["student_count"].as_i64(), x_cache.as_str()),
        (Some(2_001), "MISS")
    );
}

/// An application with two students, signed in, a warm cache, and traffic on it.
async fn warm_app_under_traffic(cluster: &RedisCluster) -> (Arc<TestApp>, Traffic) {
    let app = spawn_app_on_cluster(cluster, cluster.url(), None).await;
    app.insert_students(&[20, 22]);
    app.sign_in().await;
    assert_eq!(app.average().await.0["student_count"], 2);
    wait_for_hit(&app, Instant::now(), Duration::from_secs(10)).await;
    let app = Arc::new(app);
    let traffic = Traffic::start(&app, true);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    (app, traffic)
}

/// Once the traffic ran past `changed`: no 5xx, no lost write, no stale read, and the value
/// cached on `now_serving`, which the application now names as its master.
async fn check_after_change(
    app: &Arc<TestApp>,
    traffic: Traffic,
    now_serving: &RedisServer,
    label: &str,
) {
    let hit = wait_for_hit(app, Instant::now(), HIT_AFTER_CHANGE).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (reads, writes) = traffic.finish().await;
    assert_no_5xx_and_no_lost_write(app, &reads, &writes);
    let stale = stale_reads(2, &writes, &reads);
    eprintln!(
        "cluster figures ({label}): {} reads ({} BYPASS), {} writes; HIT again {:?} after the \
         traffic started; stale reads: {}",
        reads.len(),
        reads.iter().filter(|r| r.x_cache == "BYPASS").count(),
        writes.len(),
        hit - reads.first().map_or(hit, |r| r.started),
        stale.len()
    );
    assert!(stale.is_empty(), "stale reads: {stale:#?}");
    assert_eq!(readyz_master(app).await, now_serving.address());
    wait_for_hit(app, Instant::now(), HIT_AFTER_CHANGE).await;
    assert!(
        now_serving.get(&app.value_key()).expect("GET").is_some(),
        "the value is cached on {}",
        now_serving.address()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_master_of_the_apps_slot_killed_under_reads_and_writes_fails_over_with_no_5xx_no_lost_write_and_no_stale_read(
) {
    let cluster = start_cluster().await;
    let (app, traffic) = warm_app_under_traffic(&cluster).await;
    let slot = app_slot(&cluster);
    let old = cluster.master_of(slot).expect("master").clone();
    let replica = cluster.replica_of(old.port).expect("replica").clone();
    old.kill();
    let promoted = {
        let cluster = Arc::clone(&cluster);
        tokio::task::spawn_blocking(move || {
            cluster
                .wait_for_new_master(slot, old.port, Duration::from_secs(20))
                .map(Arc::clone)
        })
        .await
        .expect("join")
        .expect("the replica is promoted")
    };
    assert_eq!(promoted.port, replica.port);
    check_after_change(&app, traffic, &promoted, "master killed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_apps_slot_migrated_to_another_master_under_reads_and_writes_is_followed_with_no_stale_read(
) {
    let cluster = start_cluster().await;
    let (app, traffic) = warm_app_under_traffic(&cluster).await;
    let slot = app_slot(&cluster);
    let to = {
        let cluster = Arc::clone(&cluster);
        tokio::task::spawn_blocking(move || {
            // Slowly enough that the application meets ASK (and TRYAGAIN) while the keys are
            // split between the two masters.
            cluster.migrate_slot(slot, Duration::from_millis(150))
        })
        .await
        .expect("join")
        .expect("the slot migrates")
    };
    check_after_change(&app, traffic, &to, "slot migrated").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pooled_connection_follows_ask_for_a_key_that_left_and_a_script_too_then_moved() {
    let cluster = start_cluster().await;
    let key = format!("{{{PREFIX}}}:moving");
    let timeouts = RedisTimeouts::from_setting(Duration::from_secs(1));
    let target = Arc::new(
        RedisTarget::open(&cluster.url(), &key, timeouts.connect, timeouts.command).expect("url"),
    );
    let pool = build_checked_redis_pool(Arc::clone(&target), timeouts, 2, None);
    // A script, as the cache's are: known to the target, run by EVALSHA.
    let body = "return redis.call('GET', KEYS[1])";
    let script = redis::Script::new(body);
    target.know_scripts([(script.get_hash(), body)]);
    tokio::task::spawn_blocking(move || {
        let get = |pool: &RedisPool| -> redis::RedisResult<Option<String>> {
            redis::cmd("GET")
                .arg(&key)
                .query(&mut *pool.get().expect("checkout"))
        };
        let run = |pool: &RedisPool| -> redis::RedisResult<Option<String>> {
            script.key(&key).invoke(&mut *pool.get().expect("checkout"))
        };
        let mut conn = pool.get().expect("checkout");
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg("v")
            .query(&mut *conn)
            .expect("SET");
        drop(conn);
        let slot = cluster.slot_of(&key).expect("slot");
        let from = cluster.master_of(slot).expect("master").clone();
        assert_eq!(target.master(), Some(from.address()));
        let to = cluster.begin_migration(slot).expect("migration begins");
        cluster.move_key(&from, &to, &key).expect("MIGRATE");
        // The key has left; the slot is still the old master's: ASK, followed, and the script
        // loaded on the node it names, which has never run it.
        assert_eq!(get(&pool).expect("GET through ASK"), Some("v".into()));
        assert_eq!(run(&pool).expect("EVALSHA through ASK"), Some("v".into()));
        assert_eq!(
            target.master(),
            Some(from.address()),
            "the master is unchanged"
        );
        cluster.end_migration(slot, &to).expect("migration ends");
        // MOVED: that connection is dropped and the next one is to the new master.
        assert!(get(&pool).is_err(), "MOVED fails the call that meets it");
        assert_eq!(get(&pool).expect("GET on the new master"), Some("v".into()));
        assert_eq!(target.master(), Some(to.address()));
    })
    .await
    .expect("pool checks");
}
