//! The users: staff writers (add, edit, delete through the forms, one write at a time,
//! alternating instances; now and then the same change made outside the application, or a
//! `seed` run against another Redis) and readers of the average page and API on both instances.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cachewithredis::db::DbPool;
use cachewithredis::schema::students;
use diesel::prelude::*;
use rand::RngExt;

use crate::checker::{History, Read};
use crate::cluster::Instance;
use testkit::FaultProxy as Proxy;

pub const STAFF_USER: &str = "nemesis";
pub const STAFF_PASSWORD: &str = "nemesis staff password";
/// A write slower than this is reported (not counted as an error).
const SLOW_WRITE: Duration = Duration::from_secs(2);
/// How long after a change made outside the application every read must show it (SPEC §4:
/// each instance notices the database's mark within a second).
pub const OUTSIDE_ALLOWANCE: Duration = Duration::from_secs(1);

/// The instances' path to PostgreSQL (a proxy, which [`crate::faults::Fault::DatabaseCut`]
/// cuts), and the writes made past it, outside the application.
///
/// An instance cut off from the database cannot see what others write to it: cached pages go
/// on being served from the cache (SPEC §4), so a change made outside the application during a
/// cut, or less than [`OUTSIDE_ALLOWANCE`] before one, is not owed to any read until the cut
/// ends. The nemesis does not make such a change then, rather than teach the checker the
/// exception: an outside change waits while the link is cut (or was restored less than a
/// second ago, while the instances reconnect), and a cut waits for the allowance of the last
/// outside change.
pub struct DatabaseLink {
    proxy: Option<Arc<Proxy>>,
    coordination: Mutex<Coordination>,
    cut: AtomicBool,
    /// Bumped at each cut and each restore: a request that saw it change overlapped a cut.
    cuts: AtomicU64,
}

#[derive(Default)]
struct Coordination {
    last_outside: Option<Instant>,
    restored: Option<Instant>,
}

impl DatabaseLink {
    pub fn new(proxy: Option<Arc<Proxy>>) -> DatabaseLink {
        DatabaseLink {
            proxy,
            coordination: Mutex::new(Coordination::default()),
            cut: AtomicBool::new(false),
            cuts: AtomicU64::new(0),
        }
    }

    fn coordination(&self) -> std::sync::MutexGuard<'_, Coordination> {
        self.coordination
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Cuts the link once the last outside change's allowance has passed (or on `stop`).
    pub fn cut(&self, stop: &AtomicBool) {
        let Some(proxy) = &self.proxy else { return };
        while !stop.load(Ordering::Acquire) {
            let coordination = self.coordination();
            if coordination
                .last_outside
                .is_none_or(|at| at.elapsed() > OUTSIDE_ALLOWANCE)
            {
                self.cut.store(true, Ordering::Release);
                self.cuts.fetch_add(1, Ordering::AcqRel);
                proxy.cut();
                return;
            }
            drop(coordination);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn restore(&self) {
        let Some(proxy) = &self.proxy else { return };
        let mut coordination = self.coordination();
        proxy.restore();
        coordination.restored = Some(Instant::now());
        self.cuts.fetch_add(1, Ordering::AcqRel);
        self.cut.store(false, Ordering::Release);
    }

    /// A mark to compare after a request, as [`Instance::restart_mark`].
    pub fn mark(&self) -> (bool, u64) {
        (
            self.cut.load(Ordering::Acquire),
            self.cuts.load(Ordering::Acquire),
        )
    }

    /// Whether a request that started at `mark` may have met the database cut off.
    pub fn overlapped_cut(&self, mark: (bool, u64)) -> bool {
        mark.0 || self.mark() != mark
    }

    /// Runs `change`, made outside the application, unless the link is cut or was restored
    /// less than [`OUTSIDE_ALLOWANCE`] ago; returns its result and when it ended.
    fn outside<T>(&self, change: impl FnOnce() -> T) -> Option<(T, Instant)> {
        let mut coordination = self.coordination();
        let recently_restored = coordination
            .restored
            .is_some_and(|at| at.elapsed() < OUTSIDE_ALLOWANCE);
        if self.cut.load(Ordering::Acquire) || recently_restored {
            return None;
        }
        let result = change();
        let ended = Instant::now();
        coordination.last_outside = Some(ended);
        Some((result, ended))
    }
}

/// How to run the binary's `seed` against a Redis the instances do not use.
pub struct WrongRedisCommand {
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
}

impl WrongRedisCommand {
    /// Seeds one student; true when the command succeeded.
    fn seed_one(&self) -> anyhow::Result<()> {
        let output = std::process::Command::new(&self.bin)
            .args(["seed", "--count", "1"])
            .current_dir(&self.dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "off")
            .output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            anyhow::bail!("seed against another redis failed: {stderr}");
        }
        if !stderr.contains("left in the outbox") {
            anyhow::bail!(
                "seed against another redis did not say it left its invalidation: {stderr}"
            );
        }
        Ok(())
    }
}

pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .timeout(timeout)
        .build()
        .expect("an HTTP client")
}

/// Every student in the database: id → (name, age).
pub fn students_in(db: &DbPool) -> anyhow::Result<BTreeMap<i32, (String, i32)>> {
    let rows: Vec<(i32, String, i32)> = students::table
        .select((students::id, students::name, students::age))
        .load(&mut db.get()?)?;
    Ok(rows
        .into_iter()
        .map(|(id, name, age)| (id, (name, age)))
        .collect())
}

/// Students on a page of the list, as the application shows them.
pub const PER_PAGE: usize = 50;

/// The count, the sum of the ages, and the sum of the ages on the list's first page (the first
/// [`PER_PAGE`] ids): what the average pages and the list page each show of the table.
pub fn count_and_sum(rows: &BTreeMap<i32, (String, i32)>) -> (i64, i64, i64) {
    let ages = |rows: &mut dyn Iterator<Item = &(String, i32)>| -> i64 {
        rows.map(|(_, age)| i64::from(*age)).sum()
    };
    (
        rows.len() as i64,
        ages(&mut rows.values()),
        ages(&mut rows.values().take(PER_PAGE)),
    )
}

fn csrf_token_in(html: &str) -> Option<String> {
    let marker = r#"name="csrf_token" value=""#;
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

/// The CSRF token of the form on `path`.
async fn form_token(
    client: &reqwest::Client,
    instance: &Instance,
    path: &str,
) -> anyhow::Result<String> {
    let response = client.get(instance.url(path)).send().await?;
    let status = response.status();
    let body = response.text().await?;
    if status != 200 {
        anyhow::bail!("GET {path} answered {status}");
    }
    csrf_token_in(&body).ok_or_else(|| anyhow::anyhow!("no csrf_token on {path}"))
}

/// Signs `client` in on `instance`, retrying while it restarts, until `stop`. A client whose
/// session is still valid (sessions outlive restarts) is sent away from the sign-in page.
pub async fn sign_in(
    client: &reqwest::Client,
    instance: &Instance,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = async {
            let page = client.get(instance.url("/admin/login")).send().await?;
            if page.status() == 303 {
                return Ok(());
            }
            let body = page.text().await?;
            let token = csrf_token_in(&body)
                .ok_or_else(|| anyhow::anyhow!("no csrf_token on /admin/login"))?;
            let response = client
                .post(instance.url("/admin/login"))
                .form(&[
                    ("username", STAFF_USER),
                    ("password", STAFF_PASSWORD),
                    ("csrf_token", &token),
                    ("next", ""),
                ])
                .send()
                .await?;
            match response.status().as_u16() {
                303 => Ok(()),
                status => Err(anyhow::anyhow!("sign-in answered {status}")),
            }
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline || stop.load(Ordering::Acquire) => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// What a staff user does next.
enum Write {
    Add { name: String, age: i32 },
    Edit { id: i32, name: String, age: i32 },
    Delete { id: i32 },
}

/// Who makes the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// Staff, through the forms of one instance.
    Staff,
    /// A second database connection, not the application (`psql`, an ETL job).
    Outside,
    /// `seed --count 1` with another Redis in `REDIS_URL`.
    WrongRedisCommand,
}

impl Writer {
    fn choose() -> Writer {
        match rand::rng().random_range(0..20) {
            0..=2 => Writer::Outside,
            3 => Writer::WrongRedisCommand,
            _ => Writer::Staff,
        }
    }
}

/// Makes `write` over a connection of its own, as another program would.
fn write_outside(db: &DbPool, write: &Write) -> anyhow::Result<()> {
    let mut conn = db.get()?;
    match write {
        Write::Add { name, age } => diesel::insert_into(students::table)
            .values((students::name.eq(name), students::age.eq(age)))
            .execute(&mut conn)?,
        Write::Edit { id, age, .. } => diesel::update(students::table.find(id))
            .set(students::age.eq(age))
            .execute(&mut conn)?,
        Write::Delete { id } => diesel::delete(students::table.find(id)).execute(&mut conn)?,
    };
    Ok(())
}

impl Write {
    fn choose(rows: &BTreeMap<i32, (String, i32)>, serial: usize) -> Write {
        let mut rng = rand::rng();
        let age = rng.random_range(18..=60);
        let ids: Vec<&i32> = rows.keys().collect();
        let roll = rng.random_range(0..4);
        if ids.len() < 5 || roll < 2 {
            return Write::Add {
                name: format!("Nemesis {serial}"),
                age,
            };
        }
        let id = *ids[rng.random_range(0..ids.len())];
        if roll == 2 {
            let (name, old_age) = rows[&id].clone();
            // An edit that kept the age would leave the state as it was: no read could tell
            // a stale value from a fresh one.
            let age = if age == old_age { age % 60 + 18 } else { age };
            Write::Edit { id, name, age }
        } else {
            Write::Delete { id }
        }
    }

    fn form(&self) -> String {
        match self {
            Write::Add { .. } => "/admin/students/new".into(),
            Write::Edit { id, .. } => format!("/admin/students/{id}/edit"),
            Write::Delete { id } => format!("/admin/students/{id}/delete"),
        }
    }

    fn describe(&self) -> String {
        match self {
            Write::Add { name, age } => format!("add {name:?} aged {age}"),
            Write::Edit { id, age, .. } => format!("edit #{id} to age {age}"),
            Write::Delete { id } => format!("delete #{id}"),
        }
    }

    async fn send(
        &self,
        client: &reqwest::Client,
        instance: &Instance,
        token: &str,
    ) -> reqwest::Result<reqwest::Response> {
        let (path, fields) = match self {
            Write::Add { name, age } => (
                "/admin/students".to_string(),
                vec![("name", name.clone()), ("age", age.to_string())],
            ),
            Write::Edit { id, name, age } => (
                format!("/admin/students/{id}"),
                vec![("name", name.clone()), ("age", age.to_string())],
            ),
            Write::Delete { id } => (format!("/admin/students/{id}/delete"), vec![]),
        };
        let mut form = fields;
        form.push(("csrf_token", token.to_string()));
        client.post(instance.url(&path)).form(&form).send().await
    }
}

/// Mostly short; now and then long enough for a fault to strike between two writes, when no
/// failed invalidation is there to clean up after it (a Redis restored from a snapshot is only
/// noticed then).
fn pause_between_writes() -> Duration {
    let mut rng = rand::rng();
    if rng.random_range(0..10) == 0 {
        Duration::from_millis(rng.random_range(500..3000))
    } else {
        Duration::from_millis(rng.random_range(20..150))
    }
}

/// What the answered writes left in the database: id → age, or `None` for deleted. A write
/// that never answered makes its student unknown (removed from the map).
pub type Expected = BTreeMap<i32, Option<i32>>;

/// One staff user writing until `stop`, alternating between instances; now and then the change
/// is made outside the application instead.
pub async fn staff_writer(
    instances: Vec<Arc<Instance>>,
    db: DbPool,
    link: Arc<DatabaseLink>,
    command: WrongRedisCommand,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
) -> Expected {
    let clients: Vec<reqwest::Client> = instances
        .iter()
        .map(|_| client(Duration::from_secs(30)))
        .collect();
    let mut signed_in = vec![false; instances.len()];
    let mut expected = Expected::new();
    let mut serial = 0;
    let mut made: BTreeMap<&'static str, usize> = BTreeMap::new();
    while !stop.load(Ordering::Acquire) {
        serial += 1;
        let i = serial % instances.len();
        let (instance, client) = (&instances[i], &clients[i]);
        let pause = pause_between_writes();
        let rows = match tokio::task::block_in_place(|| students_in(&db)) {
            Ok(rows) => rows,
            Err(e) => {
                history.error(format!("reading the database: {e}"));
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let mark = instance.restart_mark();
        let link_mark = link.mark();
        let writer = Writer::choose();
        if writer != Writer::Staff {
            let write = match writer {
                Writer::Outside => Write::choose(&rows, serial),
                _ => Write::Add {
                    name: String::new(),
                    age: 0,
                },
            };
            let k = history.write_started();
            let made_outside = tokio::task::block_in_place(|| {
                link.outside(|| match writer {
                    Writer::Outside => write_outside(&db, &write),
                    _ => command.seed_one(),
                })
            });
            let answered = match made_outside {
                // Not made: the link is cut.
                None => None,
                Some((Err(e), _)) => {
                    history.error(format!("{writer:?} write S{k}: {e:#}"));
                    None
                }
                // The checker owes a change made outside to reads from a second after it; the
                // command's change, to reads from its end, like a staff write's answer.
                Some((Ok(()), ended)) if writer == Writer::Outside => {
                    Some(ended + OUTSIDE_ALLOWANCE)
                }
                Some((Ok(()), ended)) => Some(ended),
            };
            let after = match tokio::task::block_in_place(|| students_in(&db)) {
                Ok(after) => after,
                Err(e) => {
                    history.error(format!("reading the database after S{k}: {e}"));
                    BTreeMap::new()
                }
            };
            let (count, sum, first_page) = count_and_sum(&after);
            history.write_ended(k, count, sum, first_page, answered);
            if answered.is_some() {
                *made
                    .entry(match writer {
                        Writer::Outside => "outside the application",
                        _ => "by seed against another redis",
                    })
                    .or_default() += 1;
                match (&write, writer) {
                    (_, Writer::WrongRedisCommand) => {
                        for (id, (_, age)) in after.iter().filter(|(id, _)| !rows.contains_key(id))
                        {
                            expected.insert(*id, Some(*age));
                        }
                    }
                    (Write::Add { name, age }, _) => {
                        if let Some((id, _)) = after.iter().find(|(_, (n, _))| n == name) {
                            expected.insert(*id, Some(*age));
                        }
                    }
                    (Write::Edit { id, age, .. }, _) => {
                        expected.insert(*id, Some(*age));
                    }
                    (Write::Delete { id }, _) => {
                        expected.insert(*id, None);
                    }
                }
            }
            tokio::time::sleep(pause).await;
            continue;
        }
        if !signed_in[i] {
            match sign_in(client, instance, &stop).await {
                Ok(()) => signed_in[i] = true,
                Err(e) => {
                    if !instance.overlapped_restart(mark) && !link.overlapped_cut(link_mark) {
                        history.error(format!("instance {}: sign-in failed: {e}", instance.name));
                    }
                    tokio::time::sleep(pause).await;
                    continue;
                }
            }
        }
        let write = Write::choose(&rows, serial);
        let token = match form_token(client, instance, &write.form()).await {
            Ok(token) => token,
            Err(e) => {
                if !instance.overlapped_restart(mark) && !link.overlapped_cut(link_mark) {
                    history.error(format!(
                        "instance {}: form for {}: {e}",
                        instance.name,
                        write.describe()
                    ));
                }
                // Signing in again is harmless: a valid session skips the form.
                signed_in[i] = false;
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let k = history.write_started();
        let sending = Instant::now();
        let sent = write.send(client, instance, &token).await;
        if sending.elapsed() > SLOW_WRITE {
            println!(
                "[{}] slow write: S{k} ({}) on instance {} took {:.1}s",
                history.now(),
                write.describe(),
                instance.name,
                sending.elapsed().as_secs_f64()
            );
        }
        let answered = match &sent {
            Ok(response) if response.status() == 303 => {
                *made.entry("by staff").or_default() += 1;
                Some(Instant::now())
            }
            Ok(response) => {
                let status = response.status();
                // The database cut off: a write answers 503 at once, and changes nothing.
                let cut_off = status == 503 && link.overlapped_cut(link_mark);
                if !cut_off && (status.is_server_error() || !instance.overlapped_restart(mark)) {
                    history.error(format!(
                        "instance {}: write S{k} ({}) answered {status}",
                        instance.name,
                        write.describe()
                    ));
                }
                signed_in[i] = false;
                None
            }
            Err(e) => {
                if !instance.overlapped_restart(mark) {
                    history.error(format!(
                        "instance {}: write S{k} ({}) failed: {e}",
                        instance.name,
                        write.describe()
                    ));
                }
                None
            }
        };
        // The database after the write, whether or not it answered.
        let after = match tokio::task::block_in_place(|| students_in(&db)) {
            Ok(after) => after,
            Err(e) => {
                history.error(format!("reading the database after S{k}: {e}"));
                BTreeMap::new()
            }
        };
        let (count, sum, first_page) = count_and_sum(&after);
        history.write_ended(k, count, sum, first_page, answered);
        let id = match &write {
            Write::Add { name, .. } => after
                .iter()
                .find(|(_, (n, _))| n == name)
                .map(|(id, _)| *id),
            Write::Edit { id, .. } | Write::Delete { id } => Some(*id),
        };
        if let Some(id) = id {
            match (answered, &write) {
                (Some(_), Write::Add { age, .. } | Write::Edit { age, .. }) => {
                    expected.insert(id, Some(*age));
                }
                (Some(_), Write::Delete { .. }) => {
                    expected.insert(id, None);
                }
                (None, _) => {
                    expected.remove(&id);
                }
            }
        } else if answered.is_some() {
            history.error(format!(
                "write S{k} ({}) answered 303 but its student is not in the database",
                write.describe()
            ));
        }
        tokio::time::sleep(pause).await;
    }
    println!("[{}] writes made: {made:?}", history.now());
    expected
}

/// The page's student count and average, from its HTML.
/// The list's first page, read by the nemesis like the average pages.
pub const LIST_ROUTE: &str = "/students";

/// The list page's total, and the sum of the ages it shows (in the place of an average: the
/// checker compares it with the first page of each state).
fn parse_list(html: &str) -> Option<(i64, Option<f64>)> {
    let summary = html.find(r#"<p class="summary">"#)? + r#"<p class="summary">"#.len();
    // "1,234 students in total": the separators are for people.
    let count = html[summary..]
        .split_whitespace()
        .next()?
        .replace(',', "")
        .parse()
        .ok()?;
    let mut sum = 0i64;
    let mut rest = html;
    while let Some(at) = rest.find(r#"<td class="num">"#) {
        rest = &rest[at + r#"<td class="num">"#.len()..];
        sum += rest[..rest.find('<')?].trim().parse::<i64>().ok()?;
    }
    Some((count, Some(sum as f64)))
}

fn parse_page(html: &str) -> Option<(i64, Option<f64>)> {
    let between = |marker: &str| {
        let start = html.find(marker)? + marker.len();
        let end = html[start..].find('<')? + start;
        Some(html[start..end].trim().to_owned())
    };
    let count = between(r#"id="student-count">"#)?
        .replace(',', "")
        .parse()
        .ok()?;
    let average = between(r#"id="average-age">"#).and_then(|a| a.parse().ok());
    Some((count, average))
}

/// Reads one route of one instance until `stop`.
pub async fn reader(
    instance: Arc<Instance>,
    route: &'static str,
    link: Arc<DatabaseLink>,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
) {
    let client = client(Duration::from_secs(10));
    while !stop.load(Ordering::Acquire) {
        let mark = instance.restart_mark();
        let link_mark = link.mark();
        let started = Instant::now();
        let outcome = read_once(&client, &instance, route).await;
        let ended = Instant::now();
        match outcome {
            Ok((count, average, cache)) => history.read(Read {
                instance: instance.name,
                route,
                started,
                ended,
                count,
                average,
                cache,
            }),
            Err(ReadError::Status(status)) if status < 500 && instance.overlapped_restart(mark) => {
            }
            // A page the cache could not answer, with the database cut off.
            Err(ReadError::Status(503)) if link.overlapped_cut(link_mark) => {}
            Err(ReadError::Status(status)) => history.error(format!(
                "instance {} GET {route} answered {status} (started at {})",
                instance.name,
                history.at(started)
            )),
            Err(ReadError::Other(_)) if instance.overlapped_restart(mark) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(ReadError::Other(e)) => history.error(format!(
                "instance {} GET {route} failed after {:?}: {e}",
                instance.name,
                ended - started
            )),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub enum ReadError {
    Status(u16),
    Other(String),
}

pub async fn read_once(
    client: &reqwest::Client,
    instance: &Instance,
    route: &str,
) -> Result<(i64, Option<f64>, String), ReadError> {
    let other = |e: reqwest::Error| ReadError::Other(e.to_string());
    let response = client
        .get(instance.url(route))
        .send()
        .await
        .map_err(other)?;
    let status = response.status();
    let cache = response
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let body = response.text().await.map_err(other)?;
    if status != 200 {
        return Err(ReadError::Status(status.as_u16()));
    }
    let parsed = if route == LIST_ROUTE {
        parse_list(&body)
    } else if route.starts_with("/api/") {
        serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|json| {
                // The API rounds the average as the page does; its exact sum and count give
                // the average to the checker's precision, so that a one-year change among
                // thousands of students is still told apart.
                let count = json["student_count"].as_i64()?;
                let sum = json["age_sum"].as_u64()?;
                Some((count, (count > 0).then(|| sum as f64 / count as f64)))
            })
    } else {
        parse_page(&body)
    };
    parsed
        .map(|(count, average)| (count, average, cache))
        .ok_or_else(|| ReadError::Other(format!("unreadable answer: {body:.200}")))
}
