//! What an operator runs: the binary's log as one JSON object a line (`LOG_FORMAT=json`), each
//! line written while serving a request naming its `X-Request-Id`, and `/metrics` on a private
//! listener of its own (`METRICS_BIND_ADDR`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::helpers::{free_port, header, lease_holders, wait_for_lease, RedisServer};

const PREFIX: &str = "ops";

/// `cachewithredis serve`, its log going to a file; killed when dropped.
struct Served {
    child: Child,
    log: std::path::PathBuf,
    address: String,
    metrics: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn start(dir: &TempDir, redis: &RedisServer) -> Served {
        Self::start_with(dir, redis, &[])
    }

    /// Run in `dir`, which holds nothing but its database: no static/ beside it.
    fn start_with(dir: &TempDir, redis: &RedisServer, env: &[(&str, &str)]) -> Served {
        let (port, metrics_port) = (free_port().expect("port"), free_port().expect("port"));
        let log = dir.path().join("serve.log");
        let child = Command::new(env!("CARGO_BIN_EXE_cachewithredis"))
            .arg("serve")
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", dir.path().join("ops.sqlite3"))
            .env("REDIS_URL", redis.url())
            .env("CACHE_KEY_PREFIX", PREFIX)
            .env("SECRET_KEY", "operations-test-secret-0123456789-abcdefghij")
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("METRICS_BIND_ADDR", format!("127.0.0.1:{metrics_port}"))
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("the binary runs");
        Served {
            child,
            log,
            address: format!("http://127.0.0.1:{port}"),
            metrics: format!("http://127.0.0.1:{metrics_port}"),
        }
    }

    async fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(format!("{}/healthz", self.address))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "the server never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .expect("log")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
}

async fn get(url: &str, request_id: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    if let Some(id) = request_id {
        request = request.header("x-request-id", id);
    }
    request.send().await.expect("request sent")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_log_line_is_json_and_those_written_for_a_request_name_its_id() {
    let dir = TempDir::new().expect("dir");
    let redis = RedisServer::start().expect("redis-server");
    let served = Served::start(&dir, &redis);
    served.wait_until_ready().await;
    // A value in Redis computed from another database: the read that meets it logs a warning,
    // from the blocking thread that serves the request.
    let generation = redis
        .get(&format!("{{{PREFIX}}}:generation"))
        .expect("GET")
        .expect("the server met Redis at start");
    let foreign =
        format!(r#"{{"generation":{generation},"database":"another-database","payload":{{}}}}"#);
    let _: () = redis::cmd("SET")
        .arg(format!("{{{PREFIX}}}:students:average_age"))
        .arg(foreign)
        .query(&mut redis.connection().expect("redis"))
        .expect("SET");

    let path = "/api/students/average-age";
    let response = get(&format!("{}{path}", served.address), Some("ops-test-1")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-request-id"), "ops-test-1");
    let replaced = get(
        &format!("{}/students", served.address),
        Some("not a usable id"),
    )
    .await;
    let new_id = header(&replaced, "x-request-id");
    assert_eq!(new_id.len(), 32, "{new_id}");
    assert!(new_id.bytes().all(|b| b.is_ascii_hexdigit()), "{new_id}");
    let _ = get(&format!("{}/healthz", served.address), None).await;

    // The log is written as the requests end; give it a moment to reach the file.
    let deadline = Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let lines = served.log_lines();
        let done = lines.iter().any(|l| l["request_id"] == new_id.as_str());
        if done || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for line in &lines {
        for field in ["time", "level", "target", "message"] {
            assert!(line[field].is_string(), "no {field}: {line}");
        }
    }
    let access = lines
        .iter()
        .find(|l| l["target"] == "cachewithredis::access" && l["request_id"] == "ops-test-1")
        .unwrap_or_else(|| panic!("no access line for the request: {lines:#?}"));
    assert_eq!(access["method"], "GET");
    assert_eq!(access["path"], path);
    assert_eq!(access["status"], 200);
    assert!(access["duration_ms"].is_number(), "{access}");
    let warning = lines.iter().find(|l| {
        l["request_id"] == "ops-test-1"
            && l["level"] == "WARN"
            && l["target"] != "cachewithredis::access"
    });
    assert!(
        warning.is_some_and(|w| w["message"]
            .as_str()
            .is_some_and(|m| m.contains("another database"))),
        "the cache's warning names the request: {lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["request_id"] == new_id.as_str() && l["path"] == "/students"),
        "the replaced id is the one logged"
    );
    // Lines written outside any request (start-up) carry no id.
    assert!(lines.iter().any(|l| l.get("request_id").is_none()));
}

#[tokio::test(flavor = "multi_thread")]
async fn with_metrics_bind_addr_the_metrics_are_served_only_on_that_listener() {
    let dir = TempDir::new().expect("dir");
    let redis = RedisServer::start().expect("redis-server");
    let served = Served::start(&dir, &redis);
    served.wait_until_ready().await;
    let _ = get(&format!("{}/students", served.address), None).await;
    let public = get(&format!("{}/metrics", served.address), None).await;
    assert_eq!(public.status(), 404);
    let private = get(&format!("{}/metrics", served.metrics), None).await;
    assert_eq!(private.status(), 200);
    let body = private.text().await.expect("body");
    assert!(
        body.contains(r#"cachewithredis_http_request_duration_seconds_count{method="GET",route="/students",status="200"}"#),
        "the public listener's requests are counted: {body}"
    );
    let other = get(&format!("{}/students", served.metrics), None).await;
    assert_eq!(other.status(), 404, "nothing else on the metrics listener");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_serves_its_stylesheet_from_an_empty_directory_and_static_dir_overrides_it() {
    let redis = RedisServer::start().expect("redis-server");
    let dir = TempDir::new().expect("dir");
    let served = Served::start(&dir, &redis);
    served.wait_until_ready().await;
    let css = format!("{}/static/css/site.css", served.address);
    let response = get(&css, None).await;
    assert_eq!(response.status(), 200);
    assert!(header(&response, "content-type").starts_with("text/css"));
    assert_eq!(header(&response, "cache-control"), "public, max-age=3600");
    let etag = header(&response, "etag");
    assert!(response.text().await.expect("css").contains(".badge-hit"));
    let revalidated = reqwest::Client::new()
        .get(&css)
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("request sent");
    assert_eq!(revalidated.status(), 304);
    let missing = get(&format!("{}/static/css/nope.css", served.address), None).await;
    assert_eq!(missing.status(), 404);
    drop(served);

    let other = TempDir::new().expect("dir");
    std::fs::create_dir_all(other.path().join("assets/css")).expect("dir");
    std::fs::write(
        other.path().join("assets/css/site.css"),
        "/* the operator's */",
    )
    .expect("css");
    let assets = other.path().join("assets");
    let served = Served::start_with(
        &other,
        &redis,
        &[("STATIC_DIR", assets.to_str().expect("path"))],
    );
    served.wait_until_ready().await;
    let css = get(&format!("{}/static/css/site.css", served.address), None).await;
    assert_eq!(css.text().await.expect("css"), "/* the operator's */");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_turns_readyz_to_503_while_pages_still_answer_then_stops_with_the_lease_withdrawn()
{
    let dir = TempDir::new().expect("dir");
    let redis = RedisServer::start().expect("redis-server");
    let mut served = Served::start_with(&dir, &redis, &[("SHUTDOWN_DRAIN_SECS", "2")]);
    served.wait_until_ready().await;
    wait_for_lease(&[&redis], PREFIX, 0).await;
    let ready = get(&format!("{}/readyz", served.address), None).await;
    assert_eq!(ready.status(), 200);

    let stopped_at = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    // From the first moment: not ready, yet still serving.
    let deadline = Instant::now() + Duration::from_secs(1);
    let draining = loop {
        let ready = get(&format!("{}/readyz", served.address), None).await;
        if ready.status() == 503 || Instant::now() > deadline {
            break ready;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(draining.status(), 503);
    let body: serde_json::Value = draining.json().await.expect("json");
    assert_eq!(body["stopping"], true, "{body}");
    let page = get(&format!("{}/students", served.address), None).await;
    assert_eq!(page.status(), 200, "pages are served while draining");
    assert!(
        stopped_at.elapsed() < Duration::from_secs(2),
        "still within the drain"
    );

    let exit = tokio::task::spawn_blocking(move || {
        let status = served.child.wait().expect("wait");
        (status, served)
    })
    .await
    .expect("join");
    assert!(exit.0.success(), "exit status {:?}", exit.0);
    assert!(
        stopped_at.elapsed() >= Duration::from_secs(2),
        "the drain was waited out"
    );
    assert_eq!(
        lease_holders(&redis, PREFIX),
        0,
        "the memory lease was withdrawn"
    );
    assert!(reqwest::get(format!("{}/healthz", exit.1.address))
        .await
        .is_err());
}

/// `cachewithredis healthcheck` with the environment a container gives it: only `BIND_ADDR`.
fn healthcheck(bind_addr: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cachewithredis"))
        .arg("healthcheck")
        .env_clear()
        .env("BIND_ADDR", bind_addr)
        .output()
        .expect("the binary runs")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_healthcheck_command_passes_on_a_serving_instance_and_fails_with_status_1_otherwise() {
    let redis = RedisServer::start().expect("redis-server");
    let dir = TempDir::new().expect("dir");
    let served = Served::start(&dir, &redis);
    served.wait_until_ready().await;
    let port = served.address.rsplit(':').next().expect("port").to_owned();
    // The container binds 0.0.0.0: the probe goes to loopback.
    let passed = healthcheck(&format!("0.0.0.0:{port}"));
    assert!(
        passed.status.success(),
        "{}",
        String::from_utf8_lossy(&passed.stderr)
    );

    // Something answers on the port, but not 200 to /healthz: the metrics listener 404s it.
    let metrics_port = served.metrics.rsplit(':').next().expect("port").to_owned();
    let not_ok = healthcheck(&format!("127.0.0.1:{metrics_port}"));
    assert_eq!(
        not_ok.status.code(),
        Some(1),
        "2 is reserved by container runtimes"
    );
    assert!(String::from_utf8_lossy(&not_ok.stderr).contains("404"));
    drop(served);

    let nobody = healthcheck(&format!("127.0.0.1:{port}"));
    assert_eq!(nobody.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("cannot connect"));
}
