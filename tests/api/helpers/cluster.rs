//! A Redis Cluster of the test's own (three masters, three replicas: [`RedisCluster`]) and
//! applications that find the cache's slot in it through `redis+cluster://`.

use std::sync::Arc;

use cachewithredis::db;
use cachewithredis::startup::Application;
use reqwest::redirect::Policy;
use tempfile::TempDir;
pub use testkit::RedisCluster;

use super::{test_settings, wait_for_lease, FaultProxy, TestApp, TestDatabase};

pub const PREFIX: &str = "test";

/// The slot every key of [`PREFIX`] is in.
pub fn app_slot(cluster: &RedisCluster) -> u16 {
    cluster
        .slot_of(&format!("{{{PREFIX}}}:generation"))
        .expect("CLUSTER KEYSLOT")
}

/// An application on `cluster` (through `redis_url`), with a database of its own, or sharing
/// `first`'s (a second instance). Returns once it holds its memory lease.
pub async fn spawn_app_on_cluster(
    cluster: &RedisCluster,
    redis_url: String,
    first: Option<&TestApp>,
) -> TestApp {
    let _ = env_logger::builder().is_test(true).try_init();
    let (dir, database, secret_key) = match first {
        Some(first) => (
            first._dir.clone(),
            first.database.clone(),
            first.secret_key.clone(),
        ),
        None => {
            let dir = Arc::new(TempDir::new().expect("temp dir"));
            let database = Arc::new(TestDatabase::create(&dir));
            (dir, database, format!("test-secret-{}", "k".repeat(40)))
        }
    };
    let settings = test_settings(&database, redis_url, PREFIX, &secret_key);
    let db = db::build_pool(&settings.database_url).expect("pool");
    let app = Application::build(settings).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let server = app.handle();
    tokio::spawn(app.run_until_stopped());
    let master = cluster
        .master_of(app_slot(cluster))
        .expect("the slot has a master")
        .clone();
    wait_for_lease(&[&master], PREFIX, i64::from(first.is_some())).await;
    TestApp {
        address,
        db,
        database,
        proxy: FaultProxy::start(master.port).await.expect("proxy"),
        redis: master,
        server,
        client: reqwest::Client::builder()
            .redirect(Policy::none())
            .cookie_store(true)
            .build()
            .expect("client"),
        prefix: PREFIX.to_owned(),
        secret_key,
        _dir: dir,
    }
}
