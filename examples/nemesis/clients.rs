//! The users: staff writers (add, edit, delete through the forms, one write at a time,
//! alternating instances) and readers of the average page and API on both instances.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachewithredis::db::DbPool;
use cachewithredis::schema::students;
use diesel::prelude::*;
use rand::Rng;

use crate::checker::{History, Read};
use crate::cluster::Instance;

pub const STAFF_USER: &str = "nemesis";
pub const STAFF_PASSWORD: &str = "nemesis staff password";
/// A write slower than this is reported (not counted as an error).
const SLOW_WRITE: Duration = Duration::from_secs(2);

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

pub fn count_and_sum(rows: &BTreeMap<i32, (String, i32)>) -> (i64, i64) {
    (
        rows.len() as i64,
        rows.values().map(|(_, age)| i64::from(*age)).sum(),
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

/// One staff user writing until `stop`, alternating between instances.
pub async fn staff_writer(
    instances: Vec<Arc<Instance>>,
    db: DbPool,
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
        if !signed_in[i] {
            match sign_in(client, instance, &stop).await {
                Ok(()) => signed_in[i] = true,
                Err(e) => {
                    if !instance.overlapped_restart(mark) {
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
                if !instance.overlapped_restart(mark) {
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
            Ok(response) if response.status() == 303 => Some(Instant::now()),
            Ok(response) => {
                let status = response.status();
                if status.is_server_error() || !instance.overlapped_restart(mark) {
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
        let (count, sum) = count_and_sum(&after);
        history.write_ended(k, count, sum, answered);
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
    expected
}

/// The page's student count and average, from its HTML.
fn parse_page(html: &str) -> Option<(i64, Option<f64>)> {
    let between = |marker: &str| {
        let start = html.find(marker)? + marker.len();
        let end = html[start..].find('<')? + start;
        Some(html[start..end].trim().to_owned())
    };
    let count = between(r#"id="student-count">"#)?.parse().ok()?;
    let average = between(r#"id="average-age">"#).and_then(|a| a.parse().ok());
    Some((count, average))
}

/// Reads one route of one instance until `stop`.
pub async fn reader(
    instance: Arc<Instance>,
    route: &'static str,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
) {
    let client = client(Duration::from_secs(10));
    while !stop.load(Ordering::Acquire) {
        let mark = instance.restart_mark();
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
    let parsed = if route.starts_with("/api/") {
        serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|json| {
                Some((
                    json["student_count"].as_i64()?,
                    json["average_age"].as_f64(),
                ))
            })
    } else {
        parse_page(&body)
    };
    parsed
        .map(|(count, average)| (count, average, cache))
        .ok_or_else(|| ReadError::Other(format!("unreadable answer: {body:.200}")))
}
