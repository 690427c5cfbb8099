//! A Redis server process of the caller's own (`redis-server`, or `valkey-server` with
//! `TEST_REDIS_SERVER`): a standalone server, a replica, or a sentinel.
//!
//! Nothing is persisted unless asked: `save` writes a snapshot that the next `restart` loads
//! (what a crash and an RDB restore, or a failover to a replica that stopped there, bring
//! back). The process is killed with SIGKILL when the value is dropped, so a test that panics
//! leaves no server behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tempfile::TempDir;

use crate::free_port;

/// How long a server may take to answer its first `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The server program: `TEST_REDIS_SERVER` (`valkey-server` runs the same tests on Valkey,
/// scripts/test does), else `redis-server`. Sentinels are the same program with `--sentinel`.
pub fn server_program() -> String {
    std::env::var("TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

pub struct RedisServer {
    pub port: u16,
    /// Where its snapshot (`dump-{port}.rdb`), its log and a sentinel's config live.
    dir: PathBuf,
    /// The folder, when this server owns it (removed with the server).
    _owned_dir: Option<TempDir>,
    /// The arguments after the port, kept so that a restart starts the same server.
    args: Vec<String>,
    /// `Mutex` so that a server shared between tasks can be killed and restarted through `&self`.
    child: Mutex<Option<Child>>,
}

impl RedisServer {
    /// A standalone server in a temporary folder of its own.
    pub fn start() -> anyhow::Result<RedisServer> {
        let dir = TempDir::new()?;
        let path = dir.path().to_owned();
        Self::spawn_new(path, Some(dir), Vec::new())
    }

    /// A standalone server in a temporary folder of its own, with `args` added to its command
    /// line (`--rename-command SUBSCRIBE ""`: a server that refuses a command).
    pub fn start_with(args: &[&str]) -> anyhow::Result<RedisServer> {
        let dir = TempDir::new()?;
        let path = dir.path().to_owned();
        let args = args.iter().map(|a| (*a).to_owned()).collect();
        Self::spawn_new(path, Some(dir), args)
    }

    /// A standalone server keeping its files in `dir`.
    pub fn start_in(dir: &Path) -> anyhow::Result<RedisServer> {
        std::fs::create_dir_all(dir)?;
        Self::spawn_new(dir.to_owned(), None, Vec::new())
    }

    /// A replica of the server at `master_port` on this host, keeping its files in `dir`.
    pub fn replica_of(dir: &Path, master_port: u16) -> anyhow::Result<RedisServer> {
        let args = vec![
            "--replicaof".into(),
            "127.0.0.1".into(),
            master_port.to_string(),
        ];
        Self::spawn_new(dir.to_owned(), None, args)
    }

    /// A sentinel whose configuration is `config` (the `sentinel monitor ...` lines); the port,
    /// the address and the folder are added. The file is in `dir`: a sentinel rewrites it.
    pub fn sentinel(dir: &Path, config: &str) -> anyhow::Result<RedisServer> {
        let port = free_port()?;
        let file = dir.join(format!("sentinel-{port}.conf"));
        std::fs::write(
            &file,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n{config}",
                dir.display()
            ),
        )?;
        let server = RedisServer {
            port,
            dir: dir.to_owned(),
            _owned_dir: None,
            args: vec![file.display().to_string(), "--sentinel".into()],
            child: Mutex::new(None),
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn_new(
        dir: PathBuf,
        owned: Option<TempDir>,
        extra: Vec<String>,
    ) -> anyhow::Result<RedisServer> {
        let port = free_port()?;
        let mut args: Vec<String> = ["--port", &port.to_string(), "--bind", "127.0.0.1"]
            .into_iter()
            .chain(["--save", "", "--appendonly", "no"])
            .chain(["--dbfilename", &format!("dump-{port}.rdb")])
            .map(String::from)
            .collect();
        args.extend(["--dir".into(), dir.display().to_string()]);
        args.extend([
            "--logfile".into(),
            dir.join(format!("redis-{port}.log")).display().to_string(),
        ]);
        args.extend(extra);
        let server = RedisServer {
            port,
            dir,
            _owned_dir: owned,
            args,
            child: Mutex::new(None),
        };
        server.spawn()?;
        Ok(server)
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn spawn(&self) -> anyhow::Result<()> {
        let program = server_program();
        let child = Command::new(&program)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("{program} is installed (scripts/install-deps --test)"))?;
        *self.child() = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while self.ping().is_err() {
            if Instant::now() > deadline {
                bail!("redis-server did not start on port {}", self.port);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// `host:port`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn client(&self) -> redis::RedisResult<redis::Client> {
        redis::Client::open(self.url())
    }

    /// A direct connection, with timeouts: a frozen server fails the call, not the test.
    pub fn connection(&self) -> redis::RedisResult<redis::Connection> {
        let conn = self
            .client()?
            .get_connection_with_timeout(Duration::from_secs(1))?;
        conn.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(conn)
    }

    fn ping(&self) -> redis::RedisResult<String> {
        redis::cmd("PING").query(&mut self.connection()?)
    }

    pub fn get(&self, key: &str) -> redis::RedisResult<Option<String>> {
        redis::cmd("GET").arg(key).query(&mut self.connection()?)
    }

    /// `ROLE`'s first element: "master", "slave" or "sentinel" (empty when unreachable).
    pub fn role(&self) -> String {
        self.connection()
            .and_then(|mut c| redis::cmd("ROLE").query::<Vec<redis::Value>>(&mut c))
            .ok()
            .and_then(|role| role.into_iter().next())
            .and_then(|first| redis::from_redis_value::<String>(first).ok())
            .unwrap_or_default()
    }

    /// SIGKILL: nothing is saved on the way out, no goodbye to replicas or sentinels.
    pub fn kill(&self) {
        if let Some(mut child) = self.child().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, with the data of the last [`Self::save`] if any.
    pub fn restart(&self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }

    /// Starts it again on the same port, empty.
    pub fn restart_empty(&self) -> anyhow::Result<()> {
        self.kill();
        match std::fs::remove_file(self.dump()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        self.spawn()
    }

    fn dump(&self) -> PathBuf {
        self.dir.join(format!("dump-{}.rdb", self.port))
    }

    /// `SAVE`: the next [`Self::restart`] comes back with the data as it is now.
    pub fn save(&self) -> redis::RedisResult<()> {
        redis::cmd("SAVE").query(&mut self.connection()?)
    }

    /// `SAVE`, and a copy of it that [`Self::restart_from`] can load later.
    pub fn snapshot(&self) -> anyhow::Result<PathBuf> {
        self.save()?;
        let copy = self.dir.join(format!("snapshot-{}.rdb", self.port));
        std::fs::copy(self.dump(), &copy)?;
        Ok(copy)
    }

    /// Starts it again on the same port with the data of `snapshot`.
    pub fn restart_from(&self, snapshot: &Path) -> anyhow::Result<()> {
        self.kill();
        std::fs::copy(snapshot, self.dump())?;
        self.spawn()
    }

    /// SIGSTOP: connections stay open and nothing answers.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// SIGCONT.
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(pid) = self.child().as_ref().map(Child::id) {
            let _ = Command::new("kill")
                .args([format!("-{signal}"), pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A frozen process would ignore nothing, but thawing first lets it die at once.
        self.thaw();
        self.kill();
    }
}
