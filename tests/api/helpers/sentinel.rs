//! A Redis Sentinel deployment of the test's own: a master, a replica and three sentinels on free
//! ports (`down-after-milliseconds` 1000), and an application that finds Redis through them.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cachewithredis::config::Settings;
use cachewithredis::db;
use cachewithredis::startup::Application;
use reqwest::redirect::Policy;
use tempfile::TempDir;

use super::{free_port, RedisServer, TcpProxy, TestApp, TestDatabase};

pub const SERVICE: &str = "cache";
/// How long a sentinel waits without a reply before it calls the master down.
const DOWN_AFTER_MS: u64 = 1000;
/// Short, so that a failover that stalls is retried soon; it is also how long a sentinel
/// waits before pointing a replica that replicates from another address (the test's proxy)
/// back at the master, which [`SentinelCluster::route_replica_through_proxy`] undoes.
const FAILOVER_TIMEOUT_MS: u64 = 3000;

/// A redis-server (as a server or as a sentinel), killed with SIGKILL when dropped.
pub struct RedisProcess {
    pub port: u16,
    child: Option<Child>,
}

impl RedisProcess {
    fn spawn(port: u16, args: &[String]) -> RedisProcess {
        let child = Command::new("redis-server")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/install-deps installs it)");
        let process = RedisProcess {
            port,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while process.try_connection().is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server on {port} did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        process
    }

    /// A data server (no persistence), optionally replicating from `master_port`; a replica
    /// keeps the snapshot it syncs from in `dir`.
    fn server(dir: &TempDir, replica_of: Option<u16>) -> RedisProcess {
        let port = free_port();
        let dir = dir.path().display().to_string();
        let mut args: Vec<String> = ["--port", &port.to_string(), "--bind", "127.0.0.1"]
            .into_iter()
            .chain(["--save", "", "--appendonly", "no", "--dir", &dir])
            .chain(["--dbfilename", &format!("dump-{port}.rdb")])
            .map(String::from)
            .collect();
        if let Some(master) = replica_of {
            args.extend(["--replicaof".into(), "127.0.0.1".into(), master.to_string()]);
        }
        RedisProcess::spawn(port, &args)
    }

    /// A sentinel watching `SERVICE` at `master_port`; its config file lives in `dir` (a
    /// sentinel rewrites it).
    pub fn sentinel(dir: &TempDir, master_port: u16) -> RedisProcess {
        let port = free_port();
        let config = dir.path().join(format!("sentinel-{port}.conf"));
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {SERVICE} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n\
                 sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n\
                 sentinel parallel-syncs {SERVICE} 1\n",
                dir = dir.path().display()
            ),
        )
        .expect("write sentinel.conf");
        RedisProcess::spawn(port, &[config.display().to_string(), "--sentinel".into()])
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn try_connection(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(format!("redis://{}", self.address()))?;
        let conn = client.get_connection_with_timeout(Duration::from_secs(1))?;
        conn.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(conn)
    }

    pub fn connection(&self) -> redis::Connection {
        self.try_connection().expect("redis answers")
    }

    /// SIGKILL: no goodbye to the replica or the sentinels.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `ROLE`'s first element: "master", "slave" or "sentinel" (empty when unreachable).
    pub fn role(&self) -> String {
        self.try_connection()
            .and_then(|mut c| redis::cmd("ROLE").query::<Vec<redis::Value>>(&mut c))
            .ok()
            .and_then(|role| role.into_iter().next())
            .and_then(|first| redis::from_redis_value::<String>(first).ok())
            .unwrap_or_default()
    }

    pub fn get(&self, key: &str) -> Option<String> {
        redis::cmd("GET")
            .arg(key)
            .query(&mut self.connection())
            .expect("GET")
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A master, its replica and three sentinels that agree on them.
pub struct SentinelCluster {
    pub master: RedisProcess,
    pub replica: RedisProcess,
    pub sentinels: Vec<RedisProcess>,
    /// Between the replica and the master, when asked for: freezing it makes the replica miss
    /// writes while everyone else still reaches the master.
    pub replica_link: Option<TcpProxy>,
    pub dir: TempDir,
}

impl SentinelCluster {
    pub async fn start(replica_behind_proxy: bool) -> SentinelCluster {
        let dir = TempDir::new().expect("temp dir");
        let master = RedisProcess::server(&dir, None);
        let replica_link = match replica_behind_proxy {
            true => Some(TcpProxy::start(master.port).await),
            false => None,
        };
        let upstream = replica_link.as_ref().map_or(master.port, |p| p.port);
        let replica = RedisProcess::server(&dir, Some(upstream));
        let cluster = SentinelCluster {
            sentinels: Vec::new(),
            master,
            replica,
            replica_link,
            dir,
        };
        cluster.wait_for_replica_in_sync().await;
        let sentinels = (0..3)
            .map(|_| RedisProcess::sentinel(&cluster.dir, cluster.master.port))
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
            .chain(self.sentinels.iter().map(RedisProcess::address))
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
                .query(&mut self.master.connection());
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
                let mut conn = s.connection();
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
            .query(&mut self.replica.connection())
            .expect("REPLICAOF");
        self.wait_for_replica_in_sync().await;
    }

    /// Promotes the replica and demotes the master without Sentinel (so the master's clients
    /// stay connected and get `READONLY`), then has every sentinel but the first watch the new
    /// master: the first still names the old one, now a replica.
    pub fn swap_roles_by_hand(&self) {
        let _: () = redis::cmd("REPLICAOF")
            .arg("NO")
            .arg("ONE")
            .query(&mut self.replica.connection())
            .expect("promote");
        let _: () = redis::cmd("REPLICAOF")
            .arg("127.0.0.1")
            .arg(self.replica.port)
            .query(&mut self.master.connection())
            .expect("demote");
        for sentinel in &self.sentinels[1..] {
            let mut conn = sentinel.connection();
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
    let _ = env_logger::builder().is_test(true).try_init();
    let dir = Arc::new(TempDir::new().expect("temp dir"));
    let database = Arc::new(TestDatabase::create(&dir));
    let secret_key = format!("test-secret-{}", "k".repeat(40));
    let prefix = "test".to_string();
    let settings = Settings {
        database_url: database.url.clone(),
        redis_url,
        redis_pool_size: 16,
        redis_timeout: Duration::from_millis(250),
        bind_addr: "127.0.0.1:0".parse().expect("addr"),
        cache_ttl: Duration::from_secs(300),
        cache_key_prefix: prefix.clone(),
        secret_key: Some(secret_key.clone()),
        cookie_secure: false,
        debug: false,
        session_idle: Duration::from_secs(3600),
        session_max: Duration::from_secs(1_209_600),
        static_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/static").into(),
        trusted_proxies: Default::default(),
    };
    let db = db::build_pool(&settings.database_url).expect("pool");
    let app = Application::build(settings).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let server = app.handle();
    tokio::spawn(app.run_until_stopped());
    let lease_key = format!("{prefix}:instances");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let holders: i64 = redis::cmd("ZCARD")
            .arg(&lease_key)
            .query(&mut cluster.master.connection())
            .expect("ZCARD");
        if holders > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the app never took its lease");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    TestApp {
        address,
        db,
        database,
        redis: Arc::new(Mutex::new(RedisServer {
            port: cluster.master.port,
            child: None,
            dir: TempDir::new().expect("temp dir"),
        })),
        proxy: TcpProxy::start(cluster.master.port).await,
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
