//! The binary, run as a user would run it.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{spawn_app, RedisServer};
use tempfile::TempDir;

fn cachewithredis(dir: &TempDir, redis_url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cachewithredis"));
    command
        .args(args)
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", dir.path().join("cli.sqlite3"))
        .env("REDIS_URL", redis_url)
        .env("CACHE_KEY_PREFIX", "clitest")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

/// A connection to the SQLite file the commands in `dir` used.
fn cli_database(dir: &TempDir) -> cachewithredis::db::PooledConn {
    let path = dir.path().join("cli.sqlite3").display().to_string();
    cachewithredis::db::build_pool(&cachewithredis::config::DatabaseUrl::Sqlite(path))
        .unwrap()
        .get()
        .unwrap()
}

/// Makes `redis` the cache of the database the commands in `dir` use, as the first server to
/// meet it would (a command never claims a Redis: see `cache::owner`).
fn own_as_a_server_would(dir: &TempDir, redis: &RedisServer) {
    let out = cachewithredis(dir, &redis.url(), &["migrate"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let identity = cachewithredis::cache::owner::database_identity(&mut cli_database(dir)).unwrap();
    let _: () = redis::cmd("SET")
        .arg("{clitest}:database")
        .arg(identity)
        .query(&mut redis.connection().expect("redis answers"))
        .unwrap();
}

#[test]
fn a_bad_configuration_value_exits_non_zero_naming_the_variable() {
    let dir = TempDir::new().unwrap();
    let cases = [
        ("CACHE_TTL_SECS", "abc"),
        ("BIND_ADDR", "not-an-address"),
        ("REDIS_URL", "http://example"),
        ("CACHE_KEY_PREFIX", "has space"),
        ("SECRET_KEY", "short"),
        ("COOKIE_SECURE", "perhaps"),
        ("STATIC_DIR", "/no/such/directory"),
    ];
    for (variable, value) in cases {
        let out = cachewithredis(
            &dir,
            "redis://127.0.0.1:1/0",
            &["migrate"],
            &[(variable, value)],
        );
        assert_eq!(out.status.code(), Some(2), "{variable}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(variable), "{variable}: {stderr}");
        assert!(
            !dir.path().join("cli.sqlite3").exists(),
            "nothing done before the check"
        );
    }
}

#[test]
fn seed_adds_exactly_n_rows_and_invalidates_the_cache() {
    let dir = TempDir::new().unwrap();
    let redis = RedisServer::start().expect("redis-server");
    own_as_a_server_would(&dir, &redis);
    let mut conn = redis.connection().expect("redis answers");
    let generation = |conn: &mut redis::Connection| -> u64 {
        redis::cmd("GET")
            .arg("{clitest}:generation")
            .query::<Option<u64>>(conn)
            .unwrap()
            .unwrap_or(0)
    };
    let before = generation(&mut conn);
    for _ in 0..2 {
        let out = cachewithredis(
            &dir,
            &redis.url(),
            &["seed", "--count", "1234", "--seed", "7"],
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every value cached before carries an older generation: a miss for every reader.
    assert!(
        generation(&mut conn) > before,
        "seed moved the generation past every cached value"
    );
    let mut db = cli_database(&dir);
    assert_eq!(
        cachewithredis::models::Student::count(&mut db).unwrap(),
        2468
    );
    let stats = cachewithredis::models::Student::average_age(&mut db).unwrap();
    let average = stats.average_age.unwrap();
    assert!((18.0..=25.0).contains(&average), "ages 18–25: {average}");
    let logged: Vec<(String, String)> = cachewithredis::models::write_log::latest(&mut db)
        .unwrap()
        .into_iter()
        .map(|w| (w.who, w.what))
        .collect();
    let seeded = ("command line".to_owned(), "seeded 1234 students".to_owned());
    assert_eq!(logged, [seeded.clone(), seeded], "for the staff cache page");
}

/// `PRAGMA schema_version` and the counts the triggers keep, read through SQLite itself.
fn schema_and_counts(dir: &TempDir) -> (i64, i64, i64, i64) {
    use diesel::sql_types::BigInt;
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        schema: i64,
        #[diesel(sql_type = BigInt)]
        rows: i64,
        #[diesel(sql_type = BigInt)]
        by_age: i64,
        #[diesel(sql_type = BigInt)]
        by_block: i64,
    }
    let mut db = cli_database(dir);
    let cachewithredis::db::DbConn::Sqlite(c) = &mut *db else {
        unreachable!("the commands' database is a SQLite file")
    };
    let row: Row = diesel::sql_query(
        "SELECT (SELECT schema_version FROM pragma_schema_version) AS schema, \
         (SELECT COUNT(*) FROM students) AS rows, \
         (SELECT coalesce(SUM(students), 0) FROM student_age_counts) AS by_age, \
         (SELECT coalesce(SUM(students), 0) FROM student_id_blocks) AS by_block",
    )
    .get_result(c)
    .unwrap();
    (row.schema, row.rows, row.by_age, row.by_block)
}

/// A bulk insert skips SQLite's per-row triggers by a flag inside its own transaction, never by
/// dropping them: a schema change under live writers made their statements fail to prepare
/// ("no such table: students"), too rarely for a test to provoke, so this asserts the cause
/// away. The flag is cleared when the batch ends: a row written afterwards by anything else is
/// counted by the triggers again.
#[test]
fn a_seed_changes_no_schema_and_leaves_the_triggers_counting() {
    let dir = TempDir::new().unwrap();
    let redis = RedisServer::start().expect("redis-server");
    own_as_a_server_would(&dir, &redis);
    let (schema_before, ..) = schema_and_counts(&dir);
    let out = cachewithredis(&dir, &redis.url(), &["seed", "--count", "2500"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (schema_after, rows, by_age, by_block) = schema_and_counts(&dir);
    assert_eq!(schema_after, schema_before, "the seed changed the schema");
    assert_eq!((rows, by_age, by_block), (2500, 2500, 2500));

    let mut db = cli_database(&dir);
    cachewithredis::models::Student::insert(
        &mut db,
        &cachewithredis::models::NewStudent {
            name: "Written afterwards".to_owned(),
            age: 30,
        },
    )
    .unwrap();
    let (_, rows, by_age, by_block) = schema_and_counts(&dir);
    assert_eq!((rows, by_age, by_block), (2501, 2501, 2501));
}

#[test]
fn seed_with_redis_down_keeps_the_rows_and_leaves_the_invalidation_pending() {
    let dir = TempDir::new().unwrap();
    let out = cachewithredis(
        &dir,
        "redis://127.0.0.1:1/0",
        &["seed", "--count", "10"],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use diesel::prelude::*;
    let pending: i64 = cachewithredis::cache::schema::cache_invalidations::table
        .count()
        .get_result(&mut cli_database(&dir))
        .unwrap();
    assert_eq!(pending, 1);
}

#[test]
fn create_staff_reads_the_password_and_refuses_duplicates_and_bad_names() {
    let dir = TempDir::new().unwrap();
    let url = "redis://127.0.0.1:1/0";
    let ok = cachewithredis(
        &dir,
        url,
        &["create-staff", "ada"],
        &[("STAFF_PASSWORD", "ada-s3cret-pass")],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let again = cachewithredis(
        &dir,
        url,
        &["create-staff", "ada"],
        &[("STAFF_PASSWORD", "another-good-pass")],
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let bad = cachewithredis(
        &dir,
        url,
        &["create-staff", "bad name"],
        &[("STAFF_PASSWORD", "x")],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid username"));
    let empty = cachewithredis(&dir, url, &["create-staff", "bob"], &[]);
    assert!(!empty.status.success(), "no STAFF_PASSWORD and empty stdin");
}

#[test]
fn create_staff_reads_the_password_from_standard_input() {
    let dir = TempDir::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cachewithredis"))
        .args(["create-staff", "grace"])
        .current_dir(dir.path())
        .env_remove("STAFF_PASSWORD")
        .env("DATABASE_URL", dir.path().join("cli.sqlite3"))
        .env("REDIS_URL", "redis://127.0.0.1:1/0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from-stdin-at-length\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let user =
        cachewithredis::models::StaffUser::find_by_username(&mut cli_database(&dir), "grace")
            .unwrap()
            .unwrap();
    assert!(cachewithredis::models::staff::verify_password(
        Some(&user),
        "from-stdin-at-length"
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_staff_user_made_on_the_command_line_can_sign_in() {
    let app = spawn_app().await;
    let status = Command::new(env!("CARGO_BIN_EXE_cachewithredis"))
        .args(["create-staff", "cli_user"])
        .env("DATABASE_URL", app.database.url_string())
        .env("REDIS_URL", app.redis_url())
        .env("STAFF_PASSWORD", "pw-from-the-cli")
        .env("RUST_LOG", "warn")
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        app.try_sign_in("cli_user", "pw-from-the-cli", "")
            .await
            .status(),
        303
    );
}

#[test]
fn staff_commands_list_deactivate_activate_reset_and_delete_accounts() {
    let dir = TempDir::new().unwrap();
    let redis = "redis://127.0.0.1:1/0";
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = cachewithredis(&dir, redis, args, env);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{args:?}: {stderr}");
        stdout
    };
    run(
        &["create-staff", "grace"],
        &[("STAFF_PASSWORD", "first password")],
    );
    run(
        &["create-staff", "alan"],
        &[("STAFF_PASSWORD", "first password")],
    );
    assert_eq!(
        run(&["staff", "list"], &[]),
        "alan\tactive\ngrace\tactive\n"
    );
    assert!(run(&["staff", "deactivate", "grace"], &[]).contains("deactivated"));
    assert!(run(&["staff", "list"], &[]).contains("grace\tdeactivated"));
    assert!(run(&["staff", "activate", "grace"], &[]).contains("may sign in again"));
    assert!(run(&["staff", "list"], &[]).contains("grace\tactive"));
    let new_password = "a second, longer password";
    assert!(run(
        &["staff", "set-password", "grace"],
        &[("STAFF_PASSWORD", new_password)]
    )
    .contains("changed"));
    let user =
        cachewithredis::models::StaffUser::find_by_username(&mut cli_database(&dir), "grace")
            .unwrap()
            .unwrap();
    assert!(cachewithredis::models::staff::verify_password(
        Some(&user),
        new_password
    ));
    assert!(run(&["staff", "delete", "alan"], &[]).contains("deleted"));
    assert_eq!(run(&["staff", "list"], &[]), "grace\tactive\n");
}

#[test]
fn a_staff_command_on_a_name_that_does_not_exist_exits_2_saying_so() {
    let dir = TempDir::new().unwrap();
    for action in ["set-password", "deactivate", "activate", "delete"] {
        let out = cachewithredis(
            &dir,
            "redis://127.0.0.1:1/0",
            &["staff", action, "nobody"],
            &[("STAFF_PASSWORD", "a long enough password")],
        );
        assert_eq!(out.status.code(), Some(2), "{action}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("no staff user named \"nobody\""),
            "{action}: {stderr}"
        );
    }
    let out = cachewithredis(
        &dir,
        "redis://127.0.0.1:1/0",
        &["create-staff", "grace"],
        &[("STAFF_PASSWORD", "first password")],
    );
    assert!(out.status.success());
    let out = cachewithredis(
        &dir,
        "redis://127.0.0.1:1/0",
        &["staff", "set-password", "grace"],
        &[("STAFF_PASSWORD", "short")],
    );
    assert_eq!(out.status.code(), Some(2), "a password under 12 characters");
    // One no sign-in form would take (over 4096 bytes) is refused before it is stored.
    let long = "p".repeat(5_000);
    for command in [
        &["staff", "set-password", "grace"][..],
        &["create-staff", "alan"],
    ] {
        let out = cachewithredis(
            &dir,
            "redis://127.0.0.1:1/0",
            command,
            &[("STAFF_PASSWORD", &long)],
        );
        assert_eq!(
            out.status.code(),
            Some(2),
            "{command:?} with a 5,000-byte password"
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("at most 4096 bytes"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deactivating_a_signed_in_user_on_the_command_line_ends_their_session() {
    let app = spawn_app().await;
    app.sign_in().await;
    // Another superuser, so that this one is not the last (which stays).
    app.create_superuser("root", "a long enough password");
    assert_eq!(app.get("/admin/students").await.status(), 200);
    let out = Command::new(env!("CARGO_BIN_EXE_cachewithredis"))
        .args(["staff", "deactivate", crate::helpers::STAFF_USER])
        .env("DATABASE_URL", app.database.url_string())
        .env("REDIS_URL", app.redis_url())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(app.get("/admin/students").await.status(), 303);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_run_thirty_times_exits_cleanly_every_time() {
    // On PostgreSQL over TLS (the default on Debian), a connection still being opened in the
    // background when the process exits crashed it in OpenSSL's exit handler: about one
    // `staff list` in six ended in SIGSEGV after printing its answer.
    let app = spawn_app().await;
    app.create_staff("listed", "a long enough password");
    for run in 0..30 {
        let out = Command::new(env!("CARGO_BIN_EXE_cachewithredis"))
            .args(["staff", "list"])
            .env("DATABASE_URL", app.database.url_string())
            .env("REDIS_URL", app.redis_url())
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "run {run}: {:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("listed"));
    }
}

/// How many scripts the server has run: a write that need not wait out leases runs three.
fn scripts_run(redis: &RedisServer) -> u64 {
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut redis.connection().expect("redis answers"))
        .unwrap();
    stats
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
}

/// Runs `cache-clear`; returns how long it took and how many scripts it ran.
fn clear_counting_scripts(dir: &TempDir, redis: &RedisServer) -> (Duration, u64) {
    let before = scripts_run(redis);
    let started = Instant::now();
    let out = cachewithredis(dir, &redis.url(), &["cache-clear"], &[]);
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (took, scripts_run(redis) - before)
}

/// A write that waits out the leases of a server met less than a lease (2 s) ago takes at
/// least what is left of it; the bound leaves room for the meeting itself.
const WAITED_A_LEASE: Duration = Duration::from_millis(1_500);

#[test]
fn a_command_line_write_waits_out_earlier_leases_only_on_a_server_met_less_than_a_lease_ago() {
    let dir = TempDir::new().unwrap();
    let redis = RedisServer::start().expect("redis-server");
    own_as_a_server_would(&dir, &redis);
    // Nobody has met this server: a server before it may have granted leases it does not know.
    let (took, scripts) = clear_counting_scripts(&dir, &redis);
    assert!(
        took >= WAITED_A_LEASE,
        "the first write waited a lease: {took:?}"
    );
    // Polled every millisecond, that wait was about 1,500 scripts.
    assert!(
        scripts < 200,
        "the wait polled with pauses: {scripts} scripts"
    );
    // A lease has passed since that first meeting (the first write waited it out), so a new
    // process has nothing to wait for.
    let (took, scripts) = clear_counting_scripts(&dir, &redis);
    assert!(
        scripts < 15,
        "the second write did not wait: {scripts} scripts in {took:?}"
    );
}

/// `REPLICAOF host port` on `replica` (or `NO ONE` with `None`); then waits until the replica
/// has synchronised, and has `key` if one is named.
fn replicate(replica: &RedisServer, master: Option<&RedisServer>, key: Option<&str>) {
    let mut conn = replica.connection().expect("redis answers");
    let mut command = redis::cmd("REPLICAOF");
    match master {
        Some(master) => command.arg("127.0.0.1").arg(master.port),
        None => command.arg("NO").arg("ONE"),
    };
    command.query::<()>(&mut conn).unwrap();
    let in_sync = |conn: &mut redis::Connection| {
        let info: String = redis::cmd("INFO").arg("replication").query(conn).unwrap();
        info.contains("master_link_status:up")
            && key.is_none_or(|key| redis::cmd("EXISTS").arg(key).query(conn).unwrap())
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while master.is_some() && !in_sync(&mut conn) {
        assert!(Instant::now() < deadline, "never in sync ({key:?})");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn met_records(redis: &RedisServer) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("{clitest}:server_met:*")
        .query(&mut redis.connection().expect("redis answers"))
        .unwrap();
    keys.sort();
    keys
}

#[test]
fn a_master_failed_over_and_back_is_met_anew_though_it_keeps_its_run_id() {
    let dir = TempDir::new().unwrap();
    let (x, y) = (
        RedisServer::start().expect("redis-server"),
        RedisServer::start().expect("redis-server"),
    );
    own_as_a_server_would(&dir, &x);
    replicate(&y, Some(&x), None);
    clear_counting_scripts(&dir, &x);
    let [record] = &met_records(&x)[..] else {
        panic!("one record of the first meeting: {:?}", met_records(&x));
    };
    // Over to y and back to x: x keeps its run_id, and gets its old record back from y.
    replicate(&y, Some(&x), Some(record));
    replicate(&y, None, Some(record));
    replicate(&x, Some(&y), Some(record));
    replicate(&x, None, Some(record));
    replicate(&y, Some(&x), Some(record));
    assert_eq!(
        met_records(&x),
        std::slice::from_ref(record),
        "only the old record so far"
    );
    // Leases granted by y while it was master are unknown to x: a write must wait them out,
    // though x's old record is older than a lease.
    let (took, _) = clear_counting_scripts(&dir, &x);
    assert!(
        took >= WAITED_A_LEASE,
        "the write after the failback waited a lease: {took:?}"
    );
    let records = met_records(&x);
    assert_eq!(
        records.len(),
        2,
        "a new record for x as master again: {records:?}"
    );
    let run_id = |record: &str| record.split(':').nth(2).map(str::to_owned);
    assert_eq!(
        run_id(&records[0]),
        run_id(&records[1]),
        "same run_id: {records:?}"
    );
}

#[test]
fn a_new_sqlite_file_and_its_journal_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new().unwrap();
    let redis = RedisServer::start().expect("redis-server");
    let out = cachewithredis(&dir, &redis.url(), &["seed", "--count", "3"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut checked = 0;
    for name in ["cli.sqlite3", "cli.sqlite3-wal", "cli.sqlite3-shm"] {
        let Ok(meta) = std::fs::metadata(dir.path().join(name)) else {
            continue;
        };
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
        checked += 1;
    }
    assert!(checked >= 1);
}

#[test]
fn weak_passwords_are_refused_by_create_staff_and_set_password() {
    let dir = TempDir::new().unwrap();
    let url = "redis://127.0.0.1:1/0";
    for weak in [
        "x",
        "aaaaaaaaaaaa",
        "123456789012",
        "password1234",
        "Password1234",
    ] {
        let out = cachewithredis(
            &dir,
            url,
            &["create-staff", "ada"],
            &[("STAFF_PASSWORD", weak)],
        );
        assert_eq!(out.status.code(), Some(2), "{weak}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("password refused"),
            "{weak}"
        );
    }
    assert!(
        !dir.path().join("cli.sqlite3").exists()
            || cachewithredis::models::StaffUser::find_by_username(&mut cli_database(&dir), "ada")
                .unwrap()
                .is_none(),
        "no user made"
    );
    let made = cachewithredis(
        &dir,
        url,
        &["create-staff", "ada"],
        &[("STAFF_PASSWORD", "tawny-otter-breakfast")],
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let out = cachewithredis(
        &dir,
        url,
        &["staff", "set-password", "ada"],
        &[("STAFF_PASSWORD", "password1234")],
    );
    assert_eq!(out.status.code(), Some(2));
    let user = cachewithredis::models::StaffUser::find_by_username(&mut cli_database(&dir), "ada")
        .unwrap()
        .unwrap();
    assert!(cachewithredis::models::staff::verify_password(
        Some(&user),
        "tawny-otter-breakfast"
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_username_that_looks_like_another_is_refused_and_fullwidth_signs_in_as_itself() {
    let app = spawn_app().await;
    let create = |name: &str| {
        Command::new(env!("CARGO_BIN_EXE_cachewithredis"))
            .args(["create-staff", name])
            .env("DATABASE_URL", app.database.url_string())
            .env("REDIS_URL", app.redis_url())
            .env("STAFF_PASSWORD", "tawny-otter-breakfast")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    assert!(create("admin").status.success());
    for look_alike in ["Admin", "ADMIN", "\u{0430}dmin", "adm\u{0456}n"] {
        let out = create(look_alike);
        assert!(!out.status.success(), "{look_alike}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("looks like the existing staff user"),
            "{look_alike}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Fullwidth is the same name in NFKC: not a second user, but the first one's name.
    let out = create("\u{ff41}\u{ff44}\u{ff4d}\u{ff49}\u{ff4e}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let names: Vec<String> = cachewithredis::models::StaffUser::all(&mut app.conn())
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["admin"]);
    assert_eq!(
        app.try_sign_in(
            "\u{ff41}\u{ff44}\u{ff4d}\u{ff49}\u{ff4e}",
            "tawny-otter-breakfast",
            ""
        )
        .await
        .status(),
        303
    );
}

#[test]
fn a_flood_of_idle_connections_does_not_exhaust_the_servers_descriptors() {
    let dir = TempDir::new().unwrap();
    let redis = RedisServer::start().expect("redis-server");
    let out = cachewithredis(&dir, &redis.url(), &["seed", "--count", "50"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = crate::helpers::free_port().expect("a free port");
    let addr = format!("127.0.0.1:{port}");
    // A process allowed 256 descriptors, as a small container might be.
    let log_path = dir.path().join("serve.log");
    let mut server = Command::new("prlimit")
        .args(["--nofile=256:256", "--"])
        .arg(env!("CARGO_BIN_EXE_cachewithredis"))
        .arg("serve")
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", dir.path().join("cli.sqlite3"))
        .env("REDIS_URL", redis.url())
        .env("CACHE_KEY_PREFIX", "clitest")
        .env("BIND_ADDR", &addr)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "the server never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    // 400 connections that say nothing: more than the process has descriptors for.
    let flood: Vec<_> = (0..400)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    drop(flood);
    // Once they are gone, a new visitor is served.
    let status = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
        ])
        .arg(format!("http://{addr}/students"))
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert_eq!(
        String::from_utf8_lossy(&status.stdout),
        "200",
        "{log:.2000}"
    );
    // Accepting stopped at the bound instead of at the descriptor limit.
    assert!(!log.contains("Too many open files"), "{log:.2000}");
}
