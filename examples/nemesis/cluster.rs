//! What the nemesis runs and breaks: one redis-server, one fault proxy per instance, the
//! instances (`cachewithredis serve`) and the database. Every process is killed when its owner
//! is dropped, on a panic too.

use std::io::{Read, Write};
use std::net::{TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub fn free_port() -> anyhow::Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Sends `signal` (`KILL`, `TERM`, `STOP`, `CONT`) to a process.
fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The one redis-server, restarted on the same port (empty, or from a snapshot file).
pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
}

impl Redis {
    pub fn start(dir: PathBuf) -> anyhow::Result<Redis> {
        std::fs::create_dir_all(&dir)?;
        let redis = Redis {
            port: free_port()?,
            dir,
            child: Mutex::new(None),
        };
        redis.spawn()?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn dump(&self) -> PathBuf {
        self.dir.join("dump.rdb")
    }

    fn spawn(&self) -> anyhow::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args([
                "--dbfilename",
                "dump.rdb",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("redis-server is installed (scripts/install-deps)")?;
        *lock(&self.child) = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.ping().is_err() {
            if Instant::now() > deadline {
                bail!("redis-server did not start on port {}", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// A direct connection (not through a proxy), with timeouts.
    pub fn connection(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(self.url())?;
        let conn = client.get_connection_with_timeout(Duration::from_secs(1))?;
        conn.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(conn)
    }

    fn ping(&self) -> redis::RedisResult<String> {
        redis::cmd("PING").query(&mut self.connection()?)
    }

    pub fn kill(&self) {
        if let Some(mut child) = lock(&self.child).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart_empty(&self) -> anyhow::Result<()> {
        self.kill();
        let _ = std::fs::remove_file(self.dump());
        self.spawn()
    }

    /// `SAVE`, and a copy of the dump to restart from later.
    pub fn snapshot(&self) -> anyhow::Result<PathBuf> {
        let _: String = redis::cmd("SAVE").query(&mut self.connection()?)?;
        let copy = self.dir.join("snapshot.rdb");
        std::fs::copy(self.dump(), &copy)?;
        Ok(copy)
    }

    pub fn restart_from(&self, snapshot: &Path) -> anyhow::Result<()> {
        self.kill();
        std::fs::copy(snapshot, self.dump())?;
        self.spawn()
    }

    fn pid(&self) -> Option<u32> {
        lock(&self.child).as_ref().map(Child::id)
    }

    pub fn freeze(&self) {
        if let Some(pid) = self.pid() {
            signal(pid, "STOP");
        }
    }

    pub fn thaw(&self) {
        if let Some(pid) = self.pid() {
            signal(pid, "CONT");
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.thaw();
        self.kill();
    }
}

const PASS: u8 = 0;
const CUT: u8 = 1;
const STALL: u8 = 2;

/// A TCP proxy between one instance and Redis: passes, refuses (cut), accepts and never
/// answers (stall), or silently stops forwarding on the connections already open, without a
/// FIN, as a NAT that forgot them (black hole).
pub struct Proxy {
    pub port: u16,
    mode: watch::Sender<u8>,
    hole: watch::Sender<u64>,
    stopped: watch::Sender<bool>,
}

enum Ended {
    Closed,
    Mode(u8),
    BlackHoled,
    Stopped,
}

impl Proxy {
    pub async fn start(upstream: u16) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (mode, _) = watch::channel(PASS);
        let (hole, _) = watch::channel(0u64);
        let (stopped, _) = watch::channel(false);
        let (mode_tx, hole_tx, stopped_tx) = (mode.clone(), hole.clone(), stopped.clone());
        tokio::spawn(async move {
            let mut stop = stopped_tx.subscribe();
            loop {
                let inbound = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((inbound, _)) => inbound,
                        Err(_) => continue,
                    },
                    _ = stop.wait_for(|s| *s) => return,
                };
                let (mut mode, hole, mut stop) = (
                    mode_tx.subscribe(),
                    hole_tx.subscribe(),
                    stopped_tx.subscribe(),
                );
                let current = *mode.borrow_and_update();
                match current {
                    CUT => drop(inbound),
                    STALL => {
                        tokio::spawn(async move {
                            tokio::select! {
                                _ = mode.wait_for(|m| *m != STALL) => {}
                                _ = stop.wait_for(|s| *s) => {}
                            }
                            drop(inbound);
                        });
                    }
                    _ => {
                        tokio::spawn(forward(inbound, upstream, mode, hole, stop));
                    }
                }
            }
        });
        Ok(Proxy {
            port,
            mode,
            hole,
            stopped,
        })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.mode.send_replace(CUT);
    }

    /// Freezes open connections and accepts new ones without answering.
    pub fn stall(&self) {
        self.mode.send_replace(STALL);
    }

    pub fn restore(&self) {
        self.mode.send_replace(PASS);
    }

    /// The connections open now go silent for good; new ones pass.
    pub fn black_hole(&self) {
        self.hole.send_modify(|epoch| *epoch += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stopped.send_replace(true);
    }
}

async fn forward(
    mut inbound: TcpStream,
    upstream: u16,
    mut mode: watch::Receiver<u8>,
    mut hole: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let epoch = *hole.borrow_and_update();
    let ended = tokio::select! {
        _ = copy_bidirectional(&mut inbound, &mut outbound) => Ended::Closed,
        changed = mode.wait_for(|m| *m != PASS) => Ended::Mode(changed.map(|m| *m).unwrap_or(CUT)),
        _ = hole.wait_for(|e| *e > epoch) => Ended::BlackHoled,
        _ = stop.wait_for(|s| *s) => Ended::Stopped,
    };
    match ended {
        // Held open, nothing forwarded, until the stall ends: then closed.
        Ended::Mode(STALL) => {
            tokio::select! {
                _ = mode.wait_for(|m| *m != STALL) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        }
        // Held open and silent until the proxy stops: no FIN ever reaches the instance.
        Ended::BlackHoled => {
            let _ = stop.wait_for(|s| *s).await;
        }
        Ended::Closed | Ended::Mode(_) | Ended::Stopped => {}
    }
}

/// One `cachewithredis serve` process, restarted on the same port.
pub struct Instance {
    pub name: &'static str,
    pub port: u16,
    bin: PathBuf,
    env: Vec<(String, String)>,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
    /// True from just before a stop until the restarted process answers.
    restarting: AtomicBool,
    /// Bumped at each stop and each start: a request that saw it change overlapped a restart.
    restarts: AtomicU64,
}

impl Instance {
    pub fn new(
        name: &'static str,
        bin: &Path,
        dir: &Path,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<Instance> {
        Ok(Instance {
            name,
            port: free_port()?,
            bin: bin.to_owned(),
            env,
            dir: dir.to_owned(),
            child: Mutex::new(None),
            restarting: AtomicBool::new(false),
            restarts: AtomicU64::new(0),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("instance-{}.log", self.name))
    }

    /// A mark to compare after a request: equal and not restarting means it never restarted.
    pub fn restart_mark(&self) -> (bool, u64) {
        (
            self.restarting.load(Ordering::Acquire),
            self.restarts.load(Ordering::Acquire),
        )
    }

    pub fn is_restarting(&self) -> bool {
        self.restarting.load(Ordering::Acquire)
    }

    /// Whether a request that started at `mark` may have met a stopped process.
    pub fn overlapped_restart(&self, mark: (bool, u64)) -> bool {
        mark.0 || self.restart_mark() != mark
    }

    pub fn start(&self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = Command::new(&self.bin)
            .arg("serve")
            .current_dir(&self.dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("BIND_ADDR", format!("127.0.0.1:{}", self.port))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        *lock(&self.child) = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.healthy() {
            if Instant::now() > deadline {
                bail!("instance {} did not answer /healthz within 30 s", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.restarts.fetch_add(1, Ordering::AcqRel);
        self.restarting.store(false, Ordering::Release);
        Ok(())
    }

    fn healthy(&self) -> bool {
        let Ok(mut stream) = StdStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = "GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n";
        let mut reply = String::new();
        stream.write_all(request.as_bytes()).is_ok()
            && stream.read_to_string(&mut reply).is_ok()
            && reply.split_whitespace().nth(1) == Some("200")
    }

    fn about_to_stop(&self) {
        self.restarting.store(true, Ordering::Release);
        self.restarts.fetch_add(1, Ordering::AcqRel);
    }

    pub fn kill(&self) {
        self.about_to_stop();
        if let Some(mut child) = lock(&self.child).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, as a rolling restart does; false if it had to be killed after `patience`.
    pub fn terminate(&self, patience: Duration) -> bool {
        self.about_to_stop();
        let Some(mut child) = lock(&self.child).take() else {
            return true;
        };
        signal(child.id(), "TERM");
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut child) = lock(&self.child).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The one database: an SQLite file in the run's folder, or a fresh PostgreSQL database that
/// is dropped at the end.
pub struct Database {
    pub url: String,
    postgres: Option<(String, String)>,
}

impl Database {
    pub fn create(dir: &Path, postgres_admin: Option<String>) -> anyhow::Result<Database> {
        use diesel::{Connection, RunQueryDsl};
        let Some(admin) = postgres_admin else {
            let path = dir.join("nemesis.sqlite3");
            return Ok(Database {
                url: path.to_string_lossy().into_owned(),
                postgres: None,
            });
        };
        let name = format!("nemesis_{}_{}", std::process::id(), rand::random::<u32>());
        let mut conn = diesel::PgConnection::establish(&admin)
            .with_context(|| format!("connecting to {admin}"))?;
        diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn)?;
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(base, _)| base);
        Ok(Database {
            url: format!("{base}/{name}"),
            postgres: Some((admin.clone(), name)),
        })
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// The port of the PostgreSQL server, from the URL (`postgres://user@host:port/name`).
    pub fn postgres_port(&self) -> Option<u16> {
        self.postgres.as_ref()?;
        let authority = self.url.split('@').nth(1)?.split('/').next()?;
        authority.rsplit_once(':')?.1.parse().ok()
    }

    /// The URL with the server's port replaced by `port` (a proxy's on the same host).
    pub fn url_through(&self, port: u16) -> String {
        match self.postgres_port() {
            Some(old) => self
                .url
                .replacen(&format!(":{old}/"), &format!(":{port}/"), 1),
            None => self.url.clone(),
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        use diesel::{Connection, RunQueryDsl};
        if let Some((admin, name)) = &self.postgres {
            let dropped = diesel::PgConnection::establish(admin)
                .map_err(|e| e.to_string())
                .and_then(|mut conn| {
                    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = dropped {
                eprintln!("could not drop the database {name}: {e}");
            }
        }
    }
}
