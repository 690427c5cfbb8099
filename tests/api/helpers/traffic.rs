//! Traffic for failover tests: readers on the JSON API and a staff writer, recorded with their
//! times, and the check that no read started after an answered write showed a count from before
//! it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cachewithredis::models::Student;
use tokio::task::JoinHandle;

use super::{header, TestApp};

pub struct Read {
    pub started: Instant,
    pub status: u16,
    pub count: Option<i64>,
    pub x_cache: String,
}

pub struct Write {
    pub answered: Instant,
    pub status: u16,
    pub name: String,
}

/// Readers on the API (and, when asked, one staff writer) until stopped.
pub struct Traffic {
    app: Arc<TestApp>,
    stop: Arc<AtomicBool>,
    readers: Vec<JoinHandle<Vec<Read>>>,
    writer: Option<JoinHandle<()>>,
    writes: Arc<Mutex<Vec<Write>>>,
}

impl Traffic {
    pub fn start(app: &Arc<TestApp>, with_writer: bool) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(Mutex::new(Vec::new()));
        let readers = (0..2)
            .map(|_| {
                let (app, stop) = (Arc::clone(app), Arc::clone(&stop));
                tokio::spawn(async move {
                    let mut reads = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        reads.push(read(&app).await);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    reads
                })
            })
            .collect();
        let writer = with_writer.then(|| {
            let (app, stop, writes) = (Arc::clone(app), Arc::clone(&stop), Arc::clone(&writes));
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    write(&app, &writes, &format!("Writer {n}")).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        });
        Traffic {
            app: Arc::clone(app),
            stop,
            readers,
            writer,
            writes,
        }
    }

    /// One staff write from the test itself, recorded with the others.
    pub async fn write(&self, name: &str) -> u16 {
        write(&self.app, &self.writes, name).await
    }

    pub async fn finish(self) -> (Vec<Read>, Vec<Write>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut reads = Vec::new();
        for reader in self.readers {
            reads.extend(reader.await.expect("reader"));
        }
        if let Some(writer) = self.writer {
            writer.await.expect("writer");
        }
        reads.sort_by_key(|r| r.started);
        let writes = std::mem::take(&mut *self.writes.lock().expect("writes"));
        (reads, writes)
    }
}

pub async fn read(app: &TestApp) -> Read {
    let started = Instant::now();
    let response = app.get("/api/students/average-age").await;
    let status = response.status().as_u16();
    let x_cache = header(&response, "x-cache");
    let json: Option<serde_json::Value> = response.json().await.ok();
    Read {
        started,
        status,
        count: json.and_then(|j| j["student_count"].as_i64()),
        x_cache,
    }
}

pub async fn write(app: &TestApp, writes: &Mutex<Vec<Write>>, name: &str) -> u16 {
    let status = app.add_student(name, "30").await.status().as_u16();
    writes.lock().expect("writes").push(Write {
        answered: Instant::now(),
        status,
        name: name.to_owned(),
    });
    status
}

/// Reads that started after some write had answered and still show a count from before it.
pub fn stale_reads(initial: i64, writes: &[Write], reads: &[Read]) -> Vec<String> {
    reads
        .iter()
        .filter_map(|r| {
            let answered_before = writes
                .iter()
                .filter(|w| w.status == 303 && w.answered < r.started)
                .count() as i64;
            let count = r.count?;
            (count < initial + answered_before).then(|| {
                format!(
                    "read ({}) showed {count} students, {} expected",
                    r.x_cache,
                    initial + answered_before
                )
            })
        })
        .collect()
}

pub async fn readyz_master(app: &TestApp) -> String {
    let (_, body) = app.get_text("/readyz").await;
    let json: serde_json::Value = serde_json::from_str(&body).expect("readyz json");
    json["redis_master"].as_str().unwrap_or_default().to_owned()
}

/// A hit from the application, polled; returns when it came.
pub async fn wait_for_hit(app: &TestApp, since: Instant, within: Duration) -> Instant {
    loop {
        if read(app).await.x_cache == "HIT" {
            return Instant::now();
        }
        assert!(since.elapsed() < within, "no HIT within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// No answer was a 5xx, and every write was accepted (303) and is in the database.
pub fn assert_no_5xx_and_no_lost_write(app: &TestApp, reads: &[Read], writes: &[Write]) {
    let errors: Vec<String> = reads
        .iter()
        .map(|r| r.status)
        .chain(writes.iter().map(|w| w.status))
        .filter(|status| *status >= 500)
        .map(|status| status.to_string())
        .collect();
    assert!(errors.is_empty(), "5xx during the failover: {errors:?}");
    let unanswered: Vec<&str> = writes
        .iter()
        .filter(|w| w.status != 303)
        .map(|w| w.name.as_str())
        .collect();
    assert!(unanswered.is_empty(), "writes not accepted: {unanswered:?}");
    let in_db: Vec<String> = Student::page_rows(&mut app.conn(), 1, 100_000)
        .expect("students")
        .into_iter()
        .map(|s| s.name)
        .collect();
    for w in writes {
        assert!(in_db.contains(&w.name), "answered write {} is lost", w.name);
    }
}
