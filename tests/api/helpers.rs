//! What every test shares: a running application with its own SQLite file, its own
//! redis-server on a free port (behind a TCP proxy the test can cut), and an HTTP client with a
//! cookie jar.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachewithredis::config::{DatabaseUrl, Settings};
use cachewithredis::db::{self, DbPool};
use cachewithredis::models::staff::{hash_password, StaffUser};
use cachewithredis::models::{NewStudent, Student};
use cachewithredis::schema::students;
use cachewithredis::startup::Application;
use reqwest::redirect::Policy;
use tempfile::TempDir;
pub use testkit::{free_port, FaultProxy, PgDatabase, RedisServer};

pub mod cluster;
pub mod sentinel;
pub mod traffic;

pub const STAFF_USER: &str = "staff";
pub const STAFF_PASSWORD: &str = "correct horse battery staple";

/// The database of one test: an SQLite file in the test's temporary folder, or, with
/// `TEST_DATABASE=postgres`, a fresh PostgreSQL database dropped when the test ends.
pub struct TestDatabase {
    pub url: DatabaseUrl,
    _postgres: Option<PgDatabase>,
}

pub fn postgres_admin() -> diesel::PgConnection {
    testkit::postgres::admin_connection().expect("PostgreSQL for the tests")
}

impl TestDatabase {
    fn create(dir: &TempDir) -> TestDatabase {
        match std::env::var("TEST_DATABASE").as_deref() {
            Ok("postgres") => {
                let database = PgDatabase::create(&testkit::postgres::admin_url(), "cwr_test")
                    .expect("create test database");
                TestDatabase {
                    url: DatabaseUrl::Postgres(database.url.clone()),
                    _postgres: Some(database),
                }
            }
            Ok("sqlite") | Err(_) => TestDatabase {
                url: DatabaseUrl::Sqlite(dir.path().join("test.sqlite3").display().to_string()),
                _postgres: None,
            },
            Ok(other) => panic!("TEST_DATABASE={other}: use sqlite or postgres"),
        }
    }

    /// The URL as `DATABASE_URL` takes it.
    pub fn url_string(&self) -> String {
        match &self.url {
            DatabaseUrl::Postgres(url) | DatabaseUrl::Sqlite(url) => url.clone(),
        }
    }
}

/// A running application and everything it owns.
pub struct TestApp {
    pub address: String,
    pub db: DbPool,
    pub database: Arc<TestDatabase>,
    redis: Arc<RedisServer>,
    pub proxy: FaultProxy,
    /// Stops this instance's server: `server.stop(true)` is what SIGTERM does.
    pub server: actix_web::dev::ServerHandle,
    pub client: reqwest::Client,
    pub prefix: String,
    pub secret_key: String,
    _dir: Arc<TempDir>,
}

/// Options for [`spawn_app_with`].
#[derive(Default)]
pub struct AppOptions {
    pub ttl_secs: Option<u64>,
    /// `DEBUG=1`: the debug panel on HTML pages.
    pub debug: bool,
    /// `COOKIE_SECURE=1`.
    pub cookie_secure: bool,
    /// `SESSION_IDLE_SECS` and `SESSION_MAX_SECS`, when not the defaults.
    pub session_idle_secs: Option<u64>,
    pub session_max_secs: Option<u64>,
    /// `REDIS_TIMEOUT_MS`, when not 250.
    pub redis_timeout_ms: Option<u64>,
    /// Another app whose database and Redis this one shares (a second instance).
    pub share_with: Option<SharedBackends>,
    /// `TRUSTED_PROXIES`, when not the loopback addresses.
    pub trusted_proxies: Option<&'static str>,
    /// Another app whose Redis (and key prefix) only this one shares, with a database of its
    /// own: another deployment pointed at the same Redis.
    pub share_redis_with: Option<SharedBackends>,
    /// A Redis server of the test's own (started with odd options), instead of a new one.
    pub redis_server: Option<RedisServer>,
    /// `REDIS_URL` pointing somewhere else than the test's Redis (a fake server); the app is
    /// then not expected to take a memory lease.
    pub redis_url: Option<String>,
    /// The app cannot take a memory lease (its server refuses what that needs): start without
    /// waiting for one.
    pub no_memory_lease: bool,
}

/// What a second instance needs to share with the first.
#[derive(Clone)]
pub struct SharedBackends {
    database: Arc<TestDatabase>,
    redis: Arc<RedisServer>,
    dir: Arc<TempDir>,
    secret_key: String,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

/// Another instance of `first`'s application: same database, Redis and `SECRET_KEY`.
pub async fn spawn_second_instance(first: &TestApp) -> TestApp {
    spawn_app_with(AppOptions {
        share_with: Some(first.backends()),
        ..Default::default()
    })
    .await
}

/// The settings of a test's application: its database, its Redis, a fixed `SECRET_KEY`, port 0,
/// and the defaults of SPEC §5 otherwise.
pub fn test_settings(
    database: &TestDatabase,
    redis_url: String,
    prefix: &str,
    secret_key: &str,
) -> Settings {
    Settings {
        database_url: database.url.clone(),
        redis_url,
        redis_pool_size: 16,
        redis_timeout: Duration::from_millis(250),
        bind_addr: "127.0.0.1:0".parse().expect("addr"),
        cache_ttl: Duration::from_secs(300),
        cache_key_prefix: prefix.to_owned(),
        secret_key: Some(secret_key.to_owned()),
        cookie_secure: false,
        debug: false,
        session_idle: Duration::from_secs(3600),
        session_max: Duration::from_secs(1_209_600),
        static_dir: None,
        trusted_proxies: Default::default(),
        log_format: Default::default(),
        metrics_bind_addr: None,
        shutdown_drain: Duration::ZERO,
    }
}

pub async fn spawn_app_with(mut options: AppOptions) -> TestApp {
    let _ = env_logger::builder().is_test(true).try_init();
    let (dir, database, secret_key, redis) = match &options.share_with {
        Some(shared) => (
            shared.dir.clone(),
            shared.database.clone(),
            shared.secret_key.clone(),
            shared.redis.clone(),
        ),
        None => {
            let dir = Arc::new(TempDir::new().expect("temp dir"));
            let database = Arc::new(TestDatabase::create(&dir));
            let secret_key = format!("test-secret-{}", "k".repeat(40));
            let redis = match (&options.share_redis_with, options.redis_server.take()) {
                (Some(other), _) => other.redis.clone(),
                (None, Some(own)) => Arc::new(own),
                (None, None) => Arc::new(RedisServer::start().expect("redis-server")),
            };
            (dir, database, secret_key, redis)
        }
    };
    let proxy = FaultProxy::start(redis.port).await.expect("proxy");
    let prefix = "test".to_string();
    let settings = Settings {
        redis_timeout: Duration::from_millis(options.redis_timeout_ms.unwrap_or(250)),
        cache_ttl: Duration::from_secs(options.ttl_secs.unwrap_or(300)),
        cookie_secure: options.cookie_secure,
        debug: options.debug,
        session_idle: Duration::from_secs(options.session_idle_secs.unwrap_or(3600)),
        session_max: Duration::from_secs(options.session_max_secs.unwrap_or(1_209_600)),
        // The tests speak as the proxy on this host (deploy/nginx.conf) unless told otherwise.
        trusted_proxies: cachewithredis::config::TrustedProxies::parse(
            options.trusted_proxies.unwrap_or("127.0.0.1, ::1"),
        )
        .expect("trusted proxies"),
        ..test_settings(
            &database,
            options.redis_url.clone().unwrap_or_else(|| proxy.url()),
            &prefix,
            &secret_key,
        )
    };
    let db = db::build_pool(&settings.database_url).expect("pool");
    let app = Application::build(settings).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let server = app.handle();
    tokio::spawn(app.run_until_stopped());
    // Ready when this instance holds its lease, i.e. serves repeated reads from memory.
    let instances_before = match &options.share_with {
        Some(_) => 1,
        None => 0,
    };
    if options.redis_url.is_none() && !options.no_memory_lease {
        wait_for_lease(&[&redis], &prefix, instances_before).await;
    }
    let client = reqwest::Client::builder()
        .redirect(Policy::none())
        .cookie_store(true)
        .build()
        .expect("client");
    TestApp {
        address,
        db,
        database,
        redis,
        proxy,
        server,
        client,
        prefix,
        secret_key,
        _dir: dir,
    }
}

/// How many instances hold a memory lease in `server` under `prefix` (the lease table's
/// marker, scored +inf, is not one).
pub fn lease_holders(server: &RedisServer, prefix: &str) -> i64 {
    redis::cmd("ZCOUNT")
        .arg(format!("{{{prefix}}}:instances"))
        .arg("-inf")
        .arg("(+inf")
        .query(&mut server.connection().expect("redis answers"))
        .expect("ZCOUNT")
}

/// Waits (10 s at most) until more than `before` instances hold a lease on one of `servers`:
/// an app is ready when it serves repeated reads from memory.
pub async fn wait_for_lease(servers: &[&RedisServer], prefix: &str, before: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while servers.iter().all(|s| lease_holders(s, prefix) <= before) {
        assert!(Instant::now() < deadline, "the app never took its lease");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl TestApp {
    /// What a second instance must be given to share this one's database, Redis and key.
    pub fn backends(&self) -> SharedBackends {
        SharedBackends {
            database: self.database.clone(),
            redis: self.redis.clone(),
            dir: self._dir.clone(),
            secret_key: self.secret_key.clone(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    /// `path` once this instance serves it from memory (`X-Cache-Tier: memory`). The memory
    /// lease is taken within a renewal of the start, and a renewal that crosses a write's
    /// announcement is refused once (the copy is dropped, the lease taken back a renewal later):
    /// on a loaded machine either can fall between two requests of a test.
    pub async fn get_from_memory(&self, path: &str) -> reqwest::Response {
        self.get_from_memory_counted(path).await.0
    }

    /// [`TestApp::get_from_memory`], with how many requests it took (each one a hit).
    pub async fn get_from_memory_counted(&self, path: &str) -> (reqwest::Response, u32) {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut requests = 0;
        loop {
            let response = self.get(path).await;
            requests += 1;
            if header(&response, "x-cache-tier") == "memory" {
                return (response, requests);
            }
            assert!(Instant::now() < deadline, "{path} never served from memory");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn get_text(&self, path: &str) -> (reqwest::StatusCode, String) {
        let response = self.get(path).await;
        let status = response.status();
        (status, response.text().await.expect("body"))
    }

    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .form(fields)
            .send()
            .await
            .expect("request sent")
    }

    /// The JSON average, and the X-Cache header.
    pub async fn average(&self) -> (serde_json::Value, String) {
        let response = self.get("/api/students/average-age").await;
        assert_eq!(response.status(), 200);
        let x_cache = header(&response, "x-cache");
        (response.json().await.expect("json"), x_cache)
    }

    /// The name of one of this app's keys: `{prefix}:suffix`, the prefix as a hash tag.
    pub fn key(&self, suffix: &str) -> String {
        format!("{{{}}}:{suffix}", self.prefix)
    }

    pub fn value_key(&self) -> String {
        self.key("students:average_age")
    }

    /// The cached average as Redis holds it, if it is current: at the generation in Redis.
    /// (An invalidation raises the generation and leaves the old value to expire.)
    pub fn current_value(&self) -> Option<serde_json::Value> {
        let value: serde_json::Value =
            serde_json::from_str(&self.redis_get(&self.value_key())?).ok()?;
        let generation: u64 = self.redis_get(&self.generation_key())?.parse().ok()?;
        (value["generation"].as_u64() == Some(generation)).then_some(value)
    }

    /// The generation every cached value is checked against.
    pub fn generation_key(&self) -> String {
        self.key("generation")
    }

    pub fn redis_get(&self, key: &str) -> Option<String> {
        self.redis.get(key).expect("GET")
    }

    /// A connection to the Redis this app uses, not through the proxy.
    pub fn redis_direct(&self) -> redis::Connection {
        self.redis.connection().expect("redis answers")
    }

    /// Stops the redis-server process (its data is lost: nothing is persisted).
    pub fn stop_redis(&self) {
        self.redis.kill();
    }

    pub fn restart_redis(&self) {
        self.redis.restart().expect("redis restarts");
    }

    /// Snapshots Redis; the next restart comes back with this data (see [`RedisServer::save`]).
    pub fn save_redis(&self) {
        self.redis.save().expect("SAVE");
    }

    pub fn redis_url(&self) -> String {
        self.redis.url()
    }

    pub fn conn(&self) -> db::PooledConn {
        self.db.get().expect("db connection")
    }

    /// Inserts `ages.len()` students directly, as if another program had.
    pub fn insert_students(&self, ages: &[i32]) {
        let batch: Vec<NewStudent> = ages
            .iter()
            .enumerate()
            .map(|(i, &age)| NewStudent {
                name: format!("Student {i}"),
                age,
            })
            .collect();
        self.insert_plainly(&batch);
        self.await_mark_followed();
    }

    /// Inserts named students directly (as another program would) and waits until the cache
    /// follows.
    pub fn insert_named(&self, students: &[(&str, i32)]) {
        self.insert_plainly(&new_students(students));
        self.await_mark_followed();
    }

    /// Inserts named students through the application's bulk path (the import's and `seed`'s),
    /// and waits until the cache follows.
    pub fn insert_as_the_import(&self, students: &[(&str, i32)]) {
        Student::insert_recorded(&mut self.conn(), &new_students(students), "the import")
            .expect("bulk insert");
        self.await_mark_followed();
    }

    /// A plain multi-row INSERT, as another program writes: the database's own triggers count
    /// the rows and make their search keys, and nothing is written to the history.
    fn insert_plainly(&self, batch: &[NewStudent]) {
        use diesel::RunQueryDsl;
        let mut conn = self.conn();
        for chunk in batch.chunks(5_000) {
            cachewithredis::on_backend!(&mut *conn, c => diesel::insert_into(students::table)
                .values(chunk)
                .execute(c))
            .expect("insert");
        }
    }

    /// This database's identity, which every cached value carries.
    pub fn database_identity(&self) -> String {
        cachewithredis::cache::owner::database_identity(&mut self.conn()).expect("identity")
    }

    /// Waits (up to 3 s) until Redis' generation has reached the database's mark: a change
    /// made outside the application has then been invalidated by an instance's worker, and
    /// what a test does next does not race it. Returns at once when Redis cannot be read (a
    /// test that stopped it).
    pub fn await_mark_followed(&self) {
        let deadline = Instant::now() + Duration::from_secs(3);
        let generation_key = self.generation_key();
        while Instant::now() < deadline {
            let mark =
                cachewithredis::cache::generation::committed(&mut self.conn()).expect("mark");
            let Ok(mut conn) = self.redis.connection() else {
                return;
            };
            let found: Option<u64> = match redis::cmd("GET").arg(&generation_key).query(&mut conn) {
                Ok(found) => found,
                Err(_) => return,
            };
            if found.is_some_and(|found| found >= mark.get()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn student_count(&self) -> i64 {
        Student::count(&mut self.conn()).expect("count")
    }

    /// A staff user who is not a superuser.
    pub fn create_staff(&self, username: &str, password: &str) {
        let hash = hash_password(password).expect("hash");
        StaffUser::insert(&mut self.conn(), username, &hash, false).expect("insert staff");
    }

    pub fn create_superuser(&self, username: &str, password: &str) {
        let hash = hash_password(password).expect("hash");
        StaffUser::insert(&mut self.conn(), username, &hash, true).expect("insert staff");
    }

    /// The lowest student id: a row to edit or delete.
    pub fn first_student_id(&self) -> i32 {
        use cachewithredis::schema::students::dsl::*;
        use diesel::prelude::*;
        students
            .select(id)
            .order(id.asc())
            .first::<i32>(&mut *self.conn())
            .expect("a student")
    }

    /// Creates the staff user, a superuser, and signs in with this app's client.
    pub async fn sign_in(&self) {
        self.create_superuser(STAFF_USER, STAFF_PASSWORD);
        let response = self.try_sign_in(STAFF_USER, STAFF_PASSWORD, "").await;
        assert_eq!(response.status(), 303, "sign-in succeeds");
    }

    pub async fn try_sign_in(
        &self,
        username: &str,
        password: &str,
        next: &str,
    ) -> reqwest::Response {
        let token = self.csrf_token("/admin/login").await;
        self.post_form(
            "/admin/login",
            &[
                ("username", username),
                ("password", password),
                ("csrf_token", &token),
                ("next", next),
            ],
        )
        .await
    }

    /// The CSRF token in the form on `path`.
    pub async fn csrf_token(&self, path: &str) -> String {
        let (status, body) = self.get_text(path).await;
        assert_eq!(status, 200, "{path} shows a form");
        csrf_token_in(&body).unwrap_or_else(|| panic!("no csrf_token on {path}"))
    }

    /// Adds a student through the staff form; returns the response.
    pub async fn add_student(&self, name: &str, age: &str) -> reqwest::Response {
        let token = self.csrf_token("/admin/students/new").await;
        self.post_form(
            "/admin/students",
            &[("name", name), ("age", age), ("csrf_token", &token)],
        )
        .await
    }

    /// Writes over student `id` through the staff form.
    pub async fn edit_student(&self, id: i32, name: &str, age: &str) -> reqwest::Response {
        let token = self.csrf_token(&format!("/admin/students/{id}/edit")).await;
        self.post_form(
            &format!("/admin/students/{id}"),
            &[("name", name), ("age", age), ("csrf_token", &token)],
        )
        .await
    }

    /// A metric's value from `/metrics` (0 when absent).
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.get_text("/metrics").await;
        body.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Polls until `check` holds, for effects of background work; panics after `timeout`.
    pub async fn eventually<F, Fut>(&self, timeout: Duration, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        while !check().await {
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The `Set-Cookie` of the cookie `name` (all of it, attributes included), or "".
pub fn set_cookie(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_default()
        .to_owned()
}

/// The session cookie's `Set-Cookie`, or "".
pub fn session_cookie(response: &reqwest::Response) -> String {
    set_cookie(response, cachewithredis::security::SESSION_COOKIE)
}

pub fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

pub fn csrf_token_in(html: &str) -> Option<String> {
    let marker = r#"name="csrf_token" value=""#;
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

/// nginx from deploy/nginx.conf in front of some instances, stopped when dropped.
pub struct Nginx {
    pub address: String,
    child: Child,
    _dir: TempDir,
}

impl Nginx {
    pub fn start(upstream_ports: &[u16]) -> Nginx {
        let dir = TempDir::new().expect("temp dir");
        let port = free_port().expect("a free port");
        let template =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx.conf"))
                .expect("deploy/nginx.conf");
        let servers: String = upstream_ports
            .iter()
            .map(|p| format!("        server 127.0.0.1:{p};\n"))
            .collect();
        let config = template
            .replace("@RUN_DIR@", &dir.path().display().to_string())
            .replace("@LISTEN@", &format!("127.0.0.1:{port}"))
            .replace("@UPSTREAM_SERVERS@", &servers);
        let config_path = dir.path().join("nginx.conf");
        std::fs::write(&config_path, config).expect("write nginx.conf");
        let nginx = ["/usr/sbin/nginx", "nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("nginx");
        let child = Command::new(nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&config_path)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nginx is installed (scripts/install-deps --test installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {}",
                std::fs::read_to_string(dir.path().join("nginx-error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx {
            address: format!("http://127.0.0.1:{port}"),
            child,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: a killed master leaves its worker processes running.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test's database stops answering. SQLite: another process holds the write lock past
/// busy_timeout (reads go on). PostgreSQL: the database refuses new connections and every open
/// one is killed under the application.
pub enum DatabaseOutage {
    Sqlite(diesel::SqliteConnection),
    Postgres(diesel::PgConnection, String),
}

impl DatabaseOutage {
    pub fn start(app: &TestApp) -> DatabaseOutage {
        use diesel::connection::SimpleConnection;
        use diesel::Connection;
        let url = app.database.url_string();
        match &app.database.url {
            DatabaseUrl::Sqlite(_) => {
                let mut conn = diesel::SqliteConnection::establish(&url).expect("sqlite");
                conn.batch_execute("BEGIN IMMEDIATE").expect("lock");
                DatabaseOutage::Sqlite(conn)
            }
            DatabaseUrl::Postgres(_) => {
                let name = url.rsplit('/').next().expect("name").to_owned();
                let mut admin = postgres_admin();
                admin
                    .batch_execute(&format!(
                        "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
                         SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE datname = '{name}';"
                    ))
                    .expect("outage");
                DatabaseOutage::Postgres(admin, name)
            }
        }
    }

    pub fn end(self) {
        use diesel::connection::SimpleConnection;
        match self {
            DatabaseOutage::Sqlite(mut conn) => conn.batch_execute("ROLLBACK").expect("rollback"),
            DatabaseOutage::Postgres(mut admin, name) => admin
                .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
                .expect("end outage"),
        }
    }
}

fn new_students(students: &[(&str, i32)]) -> Vec<NewStudent> {
    students
        .iter()
        .map(|&(name, age)| NewStudent {
            name: name.to_owned(),
            age,
        })
        .collect()
}
