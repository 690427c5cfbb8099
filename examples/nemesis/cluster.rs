//! What the nemesis runs and breaks: the instances (`cachewithredis serve`) and the database;
//! the redis-server and the fault proxies are the test kit's (`crates/testkit`). Every process
//! is killed when its owner is dropped, on a panic too.

use std::io::{Read, Write};
use std::net::TcpStream as StdStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::bail;
use testkit::{free_port, PgDatabase};

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
pub enum Database {
    Sqlite(String),
    Postgres(PgDatabase),
}

impl Database {
    pub fn create(dir: &Path, postgres_admin: Option<String>) -> anyhow::Result<Database> {
        Ok(match postgres_admin {
            None => Database::Sqlite(dir.join("nemesis.sqlite3").to_string_lossy().into_owned()),
            Some(admin) => Database::Postgres(PgDatabase::create(&admin, "nemesis")?),
        })
    }

    pub fn url(&self) -> &str {
        match self {
            Database::Sqlite(url) => url,
            Database::Postgres(database) => &database.url,
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Database::Postgres(_))
    }

    /// The port of the PostgreSQL server.
    pub fn postgres_port(&self) -> Option<u16> {
        match self {
            Database::Sqlite(_) => None,
            Database::Postgres(database) => database.port(),
        }
    }

    /// The URL with the server's port replaced by `port` (a proxy's on the same host).
    pub fn url_through(&self, port: u16) -> String {
        match self {
            Database::Sqlite(url) => url.clone(),
            Database::Postgres(database) => database.url_through(port),
        }
    }
}
