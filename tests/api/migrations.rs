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
