//! A Redis Sentinel deployment of the test's own: a master, a replica and three sentinels on free
//! ports (`down-after-milliseconds` 1000), and an application that finds Redis through them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cachewithredis::db;
use cachewithredis::startup::Application;
use reqwest::redirect::Policy;
use tempfile::TempDir;

use super::{test_settings, wait_for_lease, FaultProxy, RedisServer, TestApp, TestDatabase};

pub const SERVICE: &str = "cache";
/// How long a sentinel waits without a reply before it calls the master down.
const DOWN_AFTER_MS: u64 = 1000;
/// Short, so that a failover that stalls is retried soon; it is also how long a sentinel
/// waits before pointing a replica that replicates from another address (the test's proxy)
/// back at the master, which [`SentinelCluster::route_replica_through_proxy`] undoes.
const FAILOVER_TIMEOUT_MS: u64 = 3000;

/// A sentinel watching [`SERVICE`] at `master_port`.
pub fn sentinel(dir: &TempDir, master_port: u16) -> RedisServer {
    RedisServer::sentinel(
        dir.path(),
        &format!(
            "sentinel monitor {SERVICE} 127.0.0.1 {master_port} 2\n\
             sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n\
             sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n\
             sentinel parallel-syncs {SERVICE} 1\n"
        ),
    )
    .expect("sentinel starts")
}

/// A master, its replica and three sentinels that agree on them.
pub struct SentinelCluster {
    pub master: Arc<RedisServer>,
    pub replica: RedisServer,
    pub sentinels: Vec<RedisServer>,
    /// Between the replica and the master, when asked for: freezing it makes the replica miss
    /// writes while everyone else still reaches the master.
    pub replica_link: Option<FaultProxy>,
    pub dir: TempDir,
}

impl SentinelCluster {
    pub async fn start(replica_behind_proxy: bool) -> SentinelCluster {
        let dir = TempDir::new().expect("temp dir");
        let master = Arc::new(RedisServer::start_in(dir.path()).expect("master starts"));
        let replica_link = match replica_behind_proxy {
            true => Some(FaultProxy::start(master.port).await.expect("proxy")),
            false => None,
        };
        let upstream = replica_link.as_ref().map_or(master.port, |p| p.port);
        let replica = RedisServer::replica_of(dir.path(), upstream).expect("replica starts");
        let cluster = SentinelCluster {
            sentinels: Vec::new(),
            master,
            replica,
            replica_link,
            dir,
        };
        cluster.wait_for_replica_in_sync().await;
        let sentinels = (0..3)
            .map(|_| sentinel(&cluster.dir, cluster.master.port))
            .collect();
        let cluster = SentinelCluster {
            sentinels,
            ..cluster
        };
        cluster.wait_until_sentinels_agree().await;
        cluster
    }

    /// `redis+sentinel://` with the three sentinels, after `before` (addresses asked first).
    pub fn url_with(&self, before: &[String]) -> String {
        let hosts: Vec<String> = before
            .iter()
            .cloned()
            .chain(self.sentinels.iter().map(RedisServer::address))
            .collect();
        format!("redis+sentinel://{}/{SERVICE}/0", hosts.join(","))
    }

    pub fn url(&self) -> String {
        self.url_with(&[])
    }

    /// Waits until the replica has every write the master has.
    pub async fn wait_for_replica_in_sync(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let synced: redis::RedisResult<i64> = redis::cmd("WAIT")
                .arg(1)
                .arg(500)
                .query(&mut self.master.connection().expect("redis answers"));
            if synced.is_ok_and(|n| n >= 1) {
                return;
            }
            assert!(Instant::now() < deadline, "the replica never caught up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every sentinel sees the master, the replica and the two other sentinels, so that a
    /// failover can be agreed.
    async fn wait_until_sentinels_agree(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let agreed = self.sentinels.iter().all(|s| {
                let mut conn = s.connection().expect("redis answers");
                let others: Vec<redis::Value> = redis::cmd("SENTINEL")
                    .arg("SENTINELS")
                    .arg(SERVICE)
                    .query(&mut conn)
                    .unwrap_or_default();
                let replicas: Vec<redis::Value> = redis::cmd("SENTINEL")
                    .arg("REPLICAS")
                    .arg(SERVICE)
                    .query(&mut conn)
                    .unwrap_or_default();
                others.len() == 2 && replicas.len() == 1
            });
            if agreed {
                return;
            }
            assert!(Instant::now() < deadline, "the sentinels never agreed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Points the replica at the proxy again, in case a sentinel pointed it straight at the
    /// master ("+fix-slave-config"), and waits until it is in sync through it.
    pub async fn route_replica_through_proxy(&self) {
        let proxy = self.replica_link.as_ref().expect("a replica link proxy");
        let _: () = redis::cmd("REPLICAOF")
            .arg("127.0.0.1")
            .arg(proxy.port)
            .query(&mut self.replica.connection().expect("redis answers"))
            .expect("REPLICAOF");
        self.wait_for_replica_in_sync().await;
    }

    /// Promotes the replica and demotes the master without Sentinel (so the master's clients
    /// stay connected and get `READONLY`), then has every sentinel but the first watch the new
    /// master: the first still names the old one, now a replica.
    pub fn swap_roles_by_hand(&self) {
        self.promote_replica_by_hand(true);
    }

    /// A split brain: the replica promoted and named by every sentinel but the first, while
    /// the old master, cut off from them, still says it is the master and the first sentinel
    /// still names it.
    pub fn split_brain_by_hand(&self) {
        self.promote_replica_by_hand(false);
    }

    fn promote_replica_by_hand(&self, demote_master: bool) {
        let _: () = redis::cmd("REPLICAOF")
            .arg("NO")
            .arg("ONE")
            .query(&mut self.replica.connection().expect("redis answers"))
            .expect("promote");
        if demote_master {
            let _: () = redis::cmd("REPLICAOF")
                .arg("127.0.0.1")
                .arg(self.replica.port)
                .query(&mut self.master.connection().expect("redis answers"))
                .expect("demote");
        }
        for sentinel in &self.sentinels[1..] {
            let mut conn = sentinel.connection().expect("redis answers");
            let _: () = redis::cmd("SENTINEL")
                .arg("REMOVE")
                .arg(SERVICE)
                .query(&mut conn)
                .expect("SENTINEL REMOVE");
            let _: () = redis::cmd("SENTINEL")
                .arg("MONITOR")
                .arg(SERVICE)
                .arg("127.0.0.1")
                .arg(self.replica.port)
                .arg(2)
                .query(&mut conn)
                .expect("SENTINEL MONITOR");
        }
    }

    /// Waits until the replica says it is the master; returns how long that took.
    pub async fn wait_for_promotion(&self, since: Instant) -> Duration {
        let deadline = since + Duration::from_secs(30);
        while self.replica.role() != "master" {
            assert!(Instant::now() < deadline, "the replica was never promoted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        since.elapsed()
    }
}

/// An application whose `REDIS_URL` is `redis_url` (a `redis+sentinel://` URL), ready when it
/// holds its lease in the cluster's master. `TestApp::redis_direct` reaches the first master.
pub async fn spawn_app_through(cluster: &SentinelCluster, redis_url: String) -> TestApp {
    spawn_instance_through(cluster, redis_url, None).await
}

/// [`spawn_app_through`], sharing `first`'s database when given (a second instance).
pub async fn spawn_instance_through(
    cluster: &SentinelCluster,
    redis_url: String,
    first: Option<&TestApp>,
) -> TestApp {
    let _ = env_logger::builder().is_test(true).try_init();
    let (dir, database) = match first {
        Some(first) => (first._dir.clone(), first.database.clone()),
        None => {
            let dir = Arc::new(TempDir::new().expect("temp dir"));
            let database = Arc::new(TestDatabase::create(&dir));
            (dir, database)
        }
    };
    let secret_key = format!("test-secret-{}", "k".repeat(40));
    let prefix = "test".to_string();
    let settings = test_settings(&database, redis_url, &prefix, &secret_key);
    let db = db::build_pool(&settings.database_url).expect("pool");
    let app = Application::build(settings).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let server = app.handle();
    tokio::spawn(app.run_until_stopped());
    // On the master, or on the replica: a replica of it, or the master after a split brain.
    let servers: [&RedisServer; 2] = [&cluster.master, &cluster.replica];
    wait_for_lease(&servers, &prefix, i64::from(first.is_some())).await;
    TestApp {
        address,
        db,
        database,
        redis: cluster.master.clone(),
        proxy: FaultProxy::start(cluster.master.port).await.expect("proxy"),
        server,
        client: reqwest::Client::builder()
            .redirect(Policy::none())
            .cookie_store(true)
            .build()
            .expect("client"),
        prefix,
        secret_key,
        _dir: dir,
    }
}
