//! The command line, in the manner of Django's `manage.py`.

use std::io::{BufRead, IsTerminal};
use std::time::Instant;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::config::Settings;
use crate::models::staff::{hash_password, StaffChangeError, StaffUser};
use crate::models::{NewStudent, Student};
use crate::startup::{Application, Resources};

#[derive(Parser, Debug)]
#[command(
    name = "cachewithredis",
    version,
    about = "Students, their average age, and a Redis cache that stays correct."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Apply pending migrations and serve HTTP (the default).
    Serve,
    /// Apply pending migrations.
    Migrate,
    /// Insert N random students (ages 18–25) and invalidate the cache.
    Seed {
        #[arg(long)]
        count: u64,
        /// Seed of the random generator, for repeatable data.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Create a staff user; the password comes from STAFF_PASSWORD or standard input.
    CreateStaff {
        username: String,
        /// Also manages staff users (/admin/staff).
        #[arg(long)]
        superuser: bool,
    },
    /// Invalidate every cached value (the average, the pages of the list).
    CacheClear,
    /// Exit 0 when the instance on BIND_ADDR answers /healthz (for a container's HEALTHCHECK).
    Healthcheck,
    /// Manage staff accounts, as Django's admin and `manage.py changepassword` do.
    Staff {
        #[command(subcommand)]
        action: StaffCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum StaffCommand {
    /// List staff users and whether each may sign in.
    List,
    /// Set a user's password (from STAFF_PASSWORD or standard input); ends their sessions.
    SetPassword { username: String },
    /// Stop a user signing in; ends their sessions.
    Deactivate { username: String },
    /// Let a deactivated user sign in again.
    Activate { username: String },
    /// Delete a user; ends their sessions.
    Delete { username: String },
    /// Make a user a superuser, who also manages staff users (/admin/staff).
    Promote { username: String },
}

/// A command given something it cannot act on (no such user, a password too short): the
/// process exits with status 2 and this message, as for a bad configuration value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Who the staff cache page says made a write from the command line.
const COMMAND_LINE: &str = "command line";

/// Runs one command to completion.
pub fn run(cli: Cli, settings: Settings) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings),
        Command::Migrate => {
            Resources::open(&settings)?;
            println!("Migrations applied.");
            Ok(())
        }
        Command::Seed { count, seed } => seed_students(&settings, count, seed),
        Command::CreateStaff {
            username,
            superuser,
        } => create_staff(&settings, &username, superuser),
        Command::CacheClear => {
            let resources = Resources::open(&settings)?;
            let generation = resources
                .cache
                .clear()
                .map_err(|e| anyhow::anyhow!("could not reach Redis to clear the cache: {e}"))?;
            crate::models::write_log::record(
                &mut *resources.db.get()?,
                COMMAND_LINE,
                "cleared the cache",
            )?;
            println!(
                "Cache cleared: every value under {} is older than generation {generation}",
                resources.cache.keys().prefix()
            );
            Ok(())
        }
        Command::Staff { action } => manage_staff(&settings, action),
        Command::Healthcheck => {
            let addr = crate::healthcheck::probe_address(settings.bind_addr);
            // Exit 1, not the 2 of a usage error: container runtimes reserve 2.
            crate::healthcheck::check(addr).map_err(|why| anyhow::anyhow!(why))
        }
    }
}

/// The user named `username`, or a [`UsageError`] saying there is none.
fn find_staff(conn: &mut crate::db::DbConn, username: &str) -> anyhow::Result<StaffUser> {
    let username = &crate::usernames::normalize(username);
    StaffUser::find_by_username(conn, username)?.ok_or_else(|| {
        UsageError(format!(
            "no staff user named {username:?} (see `cachewithredis staff list`)"
        ))
        .into()
    })
}

fn manage_staff(settings: &Settings, action: StaffCommand) -> anyhow::Result<()> {
    let resources = Resources::open(settings)?;
    let mut conn = resources.db.get()?;
    match action {
        StaffCommand::List => {
            let users = StaffUser::all(&mut conn)?;
            if users.is_empty() {
                println!("No staff users yet (create one with `cachewithredis create-staff`).");
            }
            for user in users {
                let state = if user.is_active {
                    "active"
                } else {
                    "deactivated"
                };
                let role = if user.is_superuser { "\tsuperuser" } else { "" };
                println!("{}\t{state}{role}", user.username);
            }
        }
        StaffCommand::SetPassword { username } => {
            let user = find_staff(&mut conn, &username)?;
            let password = read_password()?;
            check_new_password(&username, &password)?;
            let hash = hash_password(&password)?;
            StaffUser::set_password(&mut conn, user.id, &hash)?;
            println!("Password of {username:?} changed; their sessions have ended.");
        }
        StaffCommand::Deactivate { username } => {
            let user = find_staff(&mut conn, &username)?;
            StaffUser::set_active(&mut conn, user.id, false).map_err(refused)?;
            println!("Staff user {username:?} deactivated; their sessions have ended.");
        }
        StaffCommand::Activate { username } => {
            let user = find_staff(&mut conn, &username)?;
            StaffUser::set_active(&mut conn, user.id, true).map_err(refused)?;
            println!("Staff user {username:?} may sign in again.");
        }
        StaffCommand::Delete { username } => {
            let user = find_staff(&mut conn, &username)?;
            StaffUser::delete(&mut conn, user.id).map_err(refused)?;
            println!("Staff user {username:?} deleted; their sessions have ended.");
        }
        StaffCommand::Promote { username } => {
            let user = find_staff(&mut conn, &username)?;
            StaffUser::promote(&mut conn, user.id)?;
            println!("Staff user {username:?} is a superuser: they also manage staff users.");
        }
    }
    Ok(())
}

/// The last superuser kept is a refusal of the command (exit 2), not a failure.
fn refused(e: StaffChangeError) -> anyhow::Error {
    match e {
        StaffChangeError::LastSuperuser(_) => UsageError(e.to_string()).into(),
        StaffChangeError::Database(e) => e.into(),
    }
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let (bind, metrics_bind) = (settings.bind_addr, settings.metrics_bind_addr);
        let app = Application::build(settings).await?;
        log::info!("listening on http://{bind} (port {})", app.port());
        if let (Some(addr), Some(port)) = (metrics_bind, app.metrics_port()) {
            log::info!("metrics on http://{}:{port}/metrics only", addr.ip());
        }
        let stopper = app.stopper();
        actix_web::rt::spawn(async move {
            stop_signal().await;
            stopper.stop().await;
        });
        app.run_until_stopped().await?;
        Ok(())
    })
}

/// SIGTERM (a supervisor's stop, a rolling restart) or SIGINT (Ctrl-C): both stop gracefully.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        log::error!("cannot listen for SIGTERM and SIGINT; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM received"),
        _ = int.recv() => log::info!("SIGINT received"),
    }
}

const FIRST_NAMES: &[&str] = &[
    "Aarav",
    "Abigail",
    "Aiden",
    "Amelia",
    "Ana",
    "Benjamin",
    "Carlos",
    "Charlotte",
    "Chen",
    "Chloe",
    "Daniel",
    "Elena",
    "Elijah",
    "Emma",
    "Ethan",
    "Fatima",
    "Gabriel",
    "Grace",
    "Hana",
    "Harper",
    "Hiroshi",
    "Isabella",
    "Ivan",
    "Jack",
    "James",
    "Julia",
    "Kenji",
    "Layla",
    "Leo",
    "Liam",
    "Lucas",
    "Lucia",
    "Maria",
    "Mateo",
    "Mia",
    "Mohammed",
    "Noah",
    "Olivia",
    "Omar",
    "Priya",
    "Rahul",
    "Sakura",
    "Samuel",
    "Sofia",
    "Sophia",
    "Thomas",
    "Wei",
    "Yusuf",
    "Zara",
    "Zoe",
];
const LAST_NAMES: &[&str] = &[
    "Ahmed",
    "Anderson",
    "Brown",
    "Chen",
    "Costa",
    "Davis",
    "Dubois",
    "Fernandez",
    "Garcia",
    "Gonzalez",
    "Gupta",
    "Hansen",
    "Hernandez",
    "Ivanov",
    "Jackson",
    "Johnson",
    "Jones",
    "Kim",
    "Kowalski",
    "Lee",
    "Lopez",
    "Martin",
    "Martinez",
    "Miller",
    "Moore",
    "Muller",
    "Nakamura",
    "Nguyen",
    "Novak",
    "OBrien",
    "Patel",
    "Perez",
    "Rossi",
    "Sanchez",
    "Santos",
    "Schmidt",
    "Silva",
    "Singh",
    "Smith",
    "Suzuki",
    "Tanaka",
    "Taylor",
    "Thomas",
    "Thompson",
    "Wang",
    "White",
    "Williams",
    "Wilson",
    "Yamamoto",
    "Zhang",
];

/// Rows per INSERT statement and transaction: two bound values each, under PostgreSQL's 65,535
/// (the bundled SQLite allows 250,000). Each commit rewrites every page of the name index that
/// the batch's random names touched, so fewer, larger batches: 10,000 made a million-row seed
/// take 22 s on SQLite, 30,000 with the larger page cache below 16 s.
const SEED_BATCH: usize = 30_000;

fn seed_students(settings: &Settings, count: u64, seed: Option<u64>) -> anyhow::Result<()> {
    let resources = Resources::open(settings)?;
    let mut conn = resources.db.get()?;
    // The index on names takes rows in random order: with SQLite's default 2 MiB page cache a
    // million of them reread index pages from the OS at every insert, most of the time in the
    // kernel. A cache that holds the index (about 30 MiB at a million); the cap is only reached
    // by a seed that large.
    if let crate::db::DbConn::Sqlite(sqlite) = &mut *conn {
        use diesel::connection::SimpleConnection;
        sqlite.batch_execute("PRAGMA cache_size = -131072")?;
    }
    let mut rng = match seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_rng(&mut rand::rng()),
    };
    let progress = ProgressBar::new(count).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} students ({per_sec}, {eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut outbox_ids = Vec::new();
    let mut remaining = count;
    let mut batch = Vec::with_capacity(SEED_BATCH);
    while remaining > 0 {
        let n = remaining.min(SEED_BATCH as u64);
        batch.clear();
        batch.extend((0..n).map(|_| NewStudent {
            name: format!(
                "{} {}",
                FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())],
                LAST_NAMES[rng.random_range(0..LAST_NAMES.len())]
            ),
            age: rng.random_range(18..=25),
        }));
        // Every batch's transaction records its own invalidation: a row of the outbox is
        // deleted once applied (here, or by any instance's worker), so a row recorded by an
        // earlier batch may already be gone when this command dies after a later one.
        // Immediate on SQLite: the batch reads before it writes (see `db::write_transaction`),
        // and an instance may be writing meanwhile.
        let outbox_id = crate::db::write_transaction(&mut conn, |conn| {
            Student::insert_recorded(conn, &batch, COMMAND_LINE)?;
            // The staff cache page's list of writes names the command once, not per batch.
            if outbox_ids.is_empty() {
                let what = format!("seeded {count} students");
                crate::models::write_log::record(conn, COMMAND_LINE, &what)?;
            }
            crate::cache::outbox::record(conn, crate::cache::outbox::ALL)
        })?;
        outbox_ids.push(outbox_id);
        remaining -= n;
        progress.inc(n);
    }
    progress.finish_and_clear();
    let total = Student::count(&mut conn)?;
    drop(conn);
    if let Some(e) = resources
        .cache
        .invalidate_committed(&resources.db, &outbox_ids)
    {
        // The rows stay in the outbox: every instance that reaches the right Redis applies them.
        eprintln!(
            "warning: the cache was not invalidated from here ({e}); the invalidation is left \
             in the outbox for the running instances"
        );
    }
    println!(
        "Inserted {count} students in {:.2}s (total now {total}).",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// 1–150 characters of letters, digits and `@.+-_`, as Django's username validator.
pub fn valid_username(username: &str) -> bool {
    crate::usernames::valid(username)
}

/// The password rules of the web form, for the commands: a refusal exits 2, as bad usage.
fn check_new_password(username: &str, password: &str) -> anyhow::Result<()> {
    crate::password_rules::check(username, password)
        .map_err(|why| UsageError(format!("password refused: {why}")).into())
}

fn create_staff(settings: &Settings, username: &str, superuser: bool) -> anyhow::Result<()> {
    let username = &crate::usernames::normalize(username);
    if !valid_username(username) {
        anyhow::bail!("invalid username {username:?}: use 1 to 150 letters, digits and @ . + - _");
    }
    let password = read_password()?;
    check_new_password(username, &password)?;
    let resources = Resources::open(settings)?;
    let mut conn = resources.db.get()?;
    if let Some(existing) = StaffUser::look_alike(&mut conn, username)? {
        if existing == *username {
            anyhow::bail!("a staff user named {username:?} already exists");
        }
        return Err(UsageError(format!(
            "{username:?} looks like the existing staff user {existing:?}: choose a name \
             nobody could take for another"
        ))
        .into());
    }
    let hash = hash_password(&password)?;
    StaffUser::insert(&mut conn, username, &hash, superuser)?;
    if superuser {
        println!("Superuser {username:?} created.");
    } else {
        println!("Staff user {username:?} created.");
    }
    Ok(())
}

/// `STAFF_PASSWORD`, else a line of standard input (without echo on a terminal); refused, as
/// the sign-in form would refuse it, when no one could ever sign in with it.
fn read_password() -> anyhow::Result<String> {
    let password = if let Ok(password) = std::env::var("STAFF_PASSWORD") {
        password
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Password: ")?
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    crate::forms::check_password_input(&password).map_err(|e| match e {
        crate::error::AppError::BadRequest(why) => UsageError(why),
        other => UsageError(other.to_string()),
    })?;
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_djangos_rules() {
        assert!(valid_username("ada.lovelace+staff@example"));
        assert!(valid_username("Zoë"));
        for bad in ["", "has space", "semi;colon", &"a".repeat(151)] {
            assert!(!valid_username(bad), "{bad:?}");
        }
    }
}
