//! The cache's tables have their own migrations (`crates/cache/migrations`), run with the
//! application's in version order. A database migrated before they were split out has run the
//! application's old migration that created `cache_database`; the cache's migration of that
//! table is then pending, and must neither fail nor give the database a new identity (which
//! would make every value in Redis another database's).

use diesel::prelude::*;
use diesel::sql_query;

use crate::helpers::spawn_app;
use cachewithredis::db;

#[tokio::test]
async fn a_database_from_before_the_split_keeps_its_identity() {
    let app = spawn_app().await;
    let identity = app.database_identity();
    let mut conn = app.conn();
    // As such a database stands: the table and its row are there, the cache's migration of it
    // has not run.
    let forgotten =
        sql_query("DELETE FROM __diesel_schema_migrations WHERE version = '20261202000100'")
            .execute(&mut *conn)
            .unwrap();
    assert_eq!(forgotten, 1, "the cache's migration of cache_database ran");

    db::run_migrations(&mut conn).expect("the pending migration runs over the existing table");

    assert_eq!(app.database_identity(), identity);
    let rows: i64 = cachewithredis::cache::schema::cache_database::table
        .count()
        .get_result(&mut *conn)
        .unwrap();
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn a_new_database_gets_the_cache_tables_and_the_triggers_that_feed_them() {
    let app = spawn_app().await;
    let mut conn = app.conn();
    let versions: Vec<String> = {
        #[derive(QueryableByName)]
        struct Version {
            #[diesel(sql_type = diesel::sql_types::Text)]
            version: String,
        }
        sql_query("SELECT version FROM __diesel_schema_migrations ORDER BY version")
            .load::<Version>(&mut *conn)
            .unwrap()
            .into_iter()
            .map(|v| v.version)
            .collect()
    };
    // The cache's and the application's, one history.
    for version in [
        "20261125000002",
        "20261202000100",
        "20261125000001",
        "20261202000101",
    ] {
        assert!(
            versions.iter().any(|v| v == version),
            "{version} in {versions:?}"
        );
    }
    // The application's trigger (its migration) raises the cache's mark (the cache's table).
    let mark = |conn: &mut db::DbConn| -> i64 {
        cachewithredis::cache::schema::cache_generation::table
            .select(cachewithredis::cache::schema::cache_generation::generation)
            .first(conn)
            .unwrap()
    };
    let before = mark(&mut conn);
    sql_query("INSERT INTO students (name, age) VALUES ('Ada', 36)")
        .execute(&mut *conn)
        .unwrap();
    assert!(mark(&mut conn) > before);
}

/// Six instances started at once on a new database, each applying migrations as `serve` does:
/// every one of them must start (without the lock, all but one fail on a table that exists).
fn six_instances_migrate_at_once(url: &cachewithredis::config::DatabaseUrl) {
    let start = std::sync::Arc::new(std::sync::Barrier::new(6));
    let instances: Vec<_> = (0..6)
        .map(|_| {
            let (url, start) = (url.clone(), start.clone());
            std::thread::spawn(move || {
                let pool = db::build_pool_of(&url, 1).expect("pool");
                let mut conn = pool.get().expect("connection");
                start.wait();
                db::run_migrations(&mut conn).map_err(|e| format!("{e:#}"))
            })
        })
        .collect();
    for instance in instances {
        instance
            .join()
            .expect("no panic")
            .expect("every instance migrates");
    }
    let pool = db::build_pool_of(url, 1).expect("pool");
    let mut conn = pool.get().expect("connection");
    let students: i64 = cachewithredis::schema::students::table
        .count()
        .get_result(&mut *conn)
        .expect("the students table is there");
    assert_eq!(students, 0);
}

#[test]
fn instances_starting_at_once_on_a_new_postgres_database_all_migrate() {
    let database = testkit::PgDatabase::create(&testkit::postgres::admin_url(), "cwr_migr")
        .expect("a database");
    six_instances_migrate_at_once(&cachewithredis::config::DatabaseUrl::Postgres(
        database.url.clone(),
    ));
}

#[test]
fn instances_starting_at_once_on_a_new_sqlite_file_all_migrate() {
    let dir = tempfile::TempDir::new().expect("dir");
    let file = dir.path().join("new.sqlite3").display().to_string();
    six_instances_migrate_at_once(&cachewithredis::config::DatabaseUrl::Sqlite(file));
}
