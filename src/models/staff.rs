//! The `staff_users` table, password hashing, and the record of failed sign-ins.

use std::sync::OnceLock;

use std::cell::RefCell;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use diesel::prelude::*;
use subtle::ConstantTimeEq;

use crate::db::{self, DbConn, DbPool};
use crate::error::AppError;
use crate::forms::Credentials;
use crate::hashing;
use crate::on_backend;
use crate::schema::{login_failures, staff_users};

/// A staff member who may sign in.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = staff_users)]
pub struct StaffUser {
    pub id: i32,
    pub username: String,
    pub password_hash: String,
    pub is_active: bool,
    /// Also manages staff users.
    pub is_superuser: bool,
}

#[derive(Insertable)]
#[diesel(table_name = staff_users)]
struct NewStaffUser<'a> {
    username: &'a str,
    password_hash: &'a str,
    is_superuser: bool,
}

/// Why a change to the staff users was refused.
#[derive(Debug, thiserror::Error)]
pub enum StaffChangeError {
    #[error("{0} is the last active superuser: make another superuser first, so that someone can still manage staff users")]
    LastSuperuser(String),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

/// How many failures within [`THROTTLE_WINDOW_SECS`] lock a client address out.
pub const MAX_FAILURES: i64 = 5;
pub const THROTTLE_WINDOW_SECS: i64 = 15 * 60;

impl StaffUser {
    pub fn find_by_username(conn: &mut DbConn, username: &str) -> QueryResult<Option<StaffUser>> {
        staff_users::table
            .filter(staff_users::username.eq(username))
            .select(StaffUser::as_select())
            .first(conn)
            .optional()
    }

    /// Whether user `id` still exists and may sign in.
    pub fn is_active(conn: &mut DbConn, id: i32) -> QueryResult<bool> {
        let active = staff_users::table
            .find(id)
            .select(staff_users::is_active)
            .first::<bool>(conn)
            .optional()?;
        Ok(active == Some(true))
    }

    /// Sets a new (hashed) password and ends every session of the user, in one transaction.
    pub fn set_password(conn: &mut DbConn, id: i32, password_hash: &str) -> QueryResult<()> {
        conn.transaction(|conn| {
            diesel::update(staff_users::table.find(id))
                .set(staff_users::password_hash.eq(password_hash))
                .execute(conn)?;
            crate::session_store::end_sessions_of(conn, id)?;
            Ok(())
        })
    }

    /// Allows or stops sign-in; stopping it ends every session of the user. The last active
    /// superuser cannot be stopped.
    pub fn set_active(conn: &mut DbConn, id: i32, active: bool) -> Result<(), StaffChangeError> {
        with_staff_locked(conn, |conn| {
            if !active {
                keep_a_superuser(conn, id)?;
            }
            diesel::update(staff_users::table.find(id))
                .set(staff_users::is_active.eq(active))
                .execute(conn)?;
            if !active {
                crate::session_store::end_sessions_of(conn, id)?;
            }
            Ok(())
        })
    }

    /// Makes the user a superuser.
    pub fn promote(conn: &mut DbConn, id: i32) -> QueryResult<()> {
        diesel::update(staff_users::table.find(id))
            .set(staff_users::is_superuser.eq(true))
            .execute(conn)?;
        Ok(())
    }

    /// Deletes the user; their sessions go with them (ON DELETE CASCADE). The last active
    /// superuser cannot be deleted.
    pub fn delete(conn: &mut DbConn, id: i32) -> Result<(), StaffChangeError> {
        with_staff_locked(conn, |conn| {
            keep_a_superuser(conn, id)?;
            diesel::delete(staff_users::table.find(id)).execute(conn)?;
            Ok(())
        })
    }

    pub fn find(conn: &mut DbConn, id: i32) -> QueryResult<StaffUser> {
        staff_users::table
            .find(id)
            .select(StaffUser::as_select())
            .first(conn)
    }

    /// Every staff user, by username.
    /// The existing username that `username` equals or looks like (see [`crate::usernames`]).
    /// Staff are few: every name is compared.
    pub fn look_alike(conn: &mut DbConn, username: &str) -> QueryResult<Option<String>> {
        let key = crate::usernames::look_alike_key(username);
        let names: Vec<String> = staff_users::table
            .select(staff_users::username)
            .load(conn)?;
        Ok(names
            .into_iter()
            .find(|name| crate::usernames::look_alike_key(name) == key))
    }

    pub fn all(conn: &mut DbConn) -> QueryResult<Vec<StaffUser>> {
        staff_users::table
            .order(staff_users::username)
            .select(StaffUser::as_select())
            .load(conn)
    }

    /// Inserts a user whose password is already hashed; a taken username is a
    /// `DatabaseError(UniqueViolation)`.
    pub fn insert(
        conn: &mut DbConn,
        username: &str,
        password_hash: &str,
        is_superuser: bool,
    ) -> QueryResult<StaffUser> {
        let new = NewStaffUser {
            username,
            password_hash,
            is_superuser,
        };
        on_backend!(conn, c => diesel::insert_into(staff_users::table)
            .values(&new)
            .returning(StaffUser::as_returning())
            .get_result(c))
    }
}

/// Runs `change` with the staff users locked against every other change to them: two
/// superusers deactivating each other at once must not both see the other still active. On
/// PostgreSQL a lock on the table (reads go on; a second writer waits); on SQLite an immediate
/// transaction (the database's write lock, taken before the first read).
fn with_staff_locked<T>(
    conn: &mut DbConn,
    change: impl FnOnce(&mut DbConn) -> Result<T, StaffChangeError>,
) -> Result<T, StaffChangeError> {
    use diesel::connection::SimpleConnection;
    crate::db::write_transaction(conn, |conn| {
        if matches!(conn, DbConn::Pg(_)) {
            conn.batch_execute("LOCK TABLE staff_users IN SHARE ROW EXCLUSIVE MODE")?;
        }
        change(conn)
    })
}

/// Refuses when user `id` is the only active superuser.
fn keep_a_superuser(conn: &mut DbConn, id: i32) -> Result<(), StaffChangeError> {
    let user = match StaffUser::find(conn, id) {
        Ok(user) => user,
        Err(diesel::result::Error::NotFound) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if !(user.is_superuser && user.is_active) {
        return Ok(());
    }
    let others: i64 = staff_users::table
        .filter(staff_users::is_superuser.eq(true))
        .filter(staff_users::is_active.eq(true))
        .filter(staff_users::id.ne(id))
        .count()
        .get_result(conn)?;
    if others == 0 {
        return Err(StaffChangeError::LastSuperuser(user.username));
    }
    Ok(())
}

/// Argon2id with the crate's default (OWASP-recommended) parameters, as a PHC string.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
}

/// Checks `password` against `user`'s hash. With no such user it checks against a fixed hash,
/// so that the answer takes as long whether or not the username exists.
pub fn verify_password(user: Option<&StaffUser>, password: &str) -> bool {
    static DUMMY_HASH: OnceLock<String> = OnceLock::new();
    let hash = match user {
        Some(user) => user.password_hash.as_str(),
        None => DUMMY_HASH.get_or_init(|| hash_password("not a password").unwrap_or_default()),
    };
    let ok = matches_hash(hash, password).unwrap_or(false);
    ok && user.is_some()
}

thread_local! {
    /// Argon2's working memory (19 MiB with the default parameters), kept by the thread for
    /// the next hash. Allocated and freed per hash, glibc's growing mmap threshold kept each
    /// freed block in the heap: a burst of 64 sign-ins peaked at 270 MiB with only two hashes
    /// running at a time. Owned per thread, it is allocated once per hashing thread.
    static ARGON2_MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Recomputes the PHC string's hash of `password` with the parameters it names, in this
/// thread's reused memory, and compares in constant time.
fn matches_hash(phc: &str, password: &str) -> Option<bool> {
    let parsed = PasswordHash::new(phc).ok()?;
    let params = Params::try_from(&parsed).ok()?;
    let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::default(),
    };
    let mut salt = [0u8; 64];
    let salt = parsed.salt?.decode_b64(&mut salt).ok()?;
    let expected = parsed.hash?;
    let mut out = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params.clone());
    ARGON2_MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        memory.resize(params.block_count(), Block::default());
        argon2
            .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..])
            .ok()
    })?;
    Some(bool::from(expected.as_bytes().ct_eq(&out)))
}

/// The outcome of asking to try a password.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// A slot was reserved (a failure recorded in advance, cleared on success): its row id.
    Reserved(i32),
    /// The username or the client address is locked out for this many more seconds.
    LockedOut { retry_after_secs: u64 },
}

/// Reserves one of the [`MAX_FAILURES`] attempts that `client_addr` has per window, for any
/// username, before any password is checked. `username` is recorded with it.
///
/// Why per address and not per username (django-axes' choice too): counted per username, five
/// wrong passwords from a stranger anywhere locked the real user out for the window, whatever
/// address they signed in from. Counted per address, a stranger locks out only themselves; a
/// guesser spread over many addresses gets five tries from each, which the password rules
/// (length, not common) and Argon2 are there for.
///
/// Why it holds under a burst: checking, hashing, then recording let 40 concurrent guesses
/// all pass the check before the first failure was written. Here the check and the insert of
/// the reservation are one transaction that excludes every other reservation (a table lock on
/// PostgreSQL, `BEGIN IMMEDIATE` on SQLite), so the sixth of any number of concurrent attempts
/// sees the first five rows and is refused. The slow part, hashing, runs after the lock is gone.
pub(crate) fn reserve_attempt(
    conn: &mut DbConn,
    username: &str,
    client_addr: &str,
    now: i64,
) -> QueryResult<Attempt> {
    let since = now - THROTTLE_WINDOW_SECS;
    // The same statements for both backends, compiled for each one's connection type.
    macro_rules! reserve {
        ($c:ident) => {{
            diesel::delete(login_failures::table.filter(login_failures::failed_at.le(since)))
                .execute($c)?;
            let by_address: Vec<i64> = login_failures::table
                .filter(login_failures::client_addr.eq(client_addr))
                .filter(login_failures::failed_at.gt(since))
                .select(login_failures::failed_at)
                .order(login_failures::failed_at.desc())
                .limit(MAX_FAILURES)
                .load($c)?;
            match lockout(&by_address, now) {
                Some(retry_after_secs) => Ok(Attempt::LockedOut { retry_after_secs }),
                None => diesel::insert_into(login_failures::table)
                    .values((
                        login_failures::username.eq(username),
                        login_failures::client_addr.eq(client_addr),
                        login_failures::failed_at.eq(now),
                    ))
                    .returning(login_failures::id)
                    .get_result($c)
                    .map(Attempt::Reserved),
            }
        }};
    }
    match conn {
        DbConn::Pg(c) => c.transaction(|c| {
            // SHARE ROW EXCLUSIVE conflicts with itself: one reservation at a time.
            diesel::sql_query("LOCK TABLE login_failures IN SHARE ROW EXCLUSIVE MODE")
                .execute(c)?;
            reserve!(c)
        }),
        DbConn::Sqlite(c) => c.immediate_transaction(|c| reserve!(c)),
    }
}

/// Seconds until the lock-out ends, if `recent` (an address' latest failures, newest first,
/// at most [`MAX_FAILURES`]) locks it: until its [`MAX_FAILURES`]-th most recent failure
/// leaves the window.
fn lockout(recent: &[i64], now: i64) -> Option<u64> {
    if (recent.len() as i64) < MAX_FAILURES {
        return None;
    }
    recent
        .last()
        .map(|oldest| (oldest + THROTTLE_WINDOW_SECS - now).max(1) as u64)
}

/// Gives back a reserved attempt: the password was right.
pub(crate) fn release_attempt(conn: &mut DbConn, reservation: i32) -> QueryResult<()> {
    diesel::delete(login_failures::table.find(reservation)).execute(conn)?;
    Ok(())
}

/// Django's `authenticate`: the active user with this username and password, or `None`.
/// Throttled (429 once locked out) and hashed through the bounded gate (503 when it is full).
pub async fn authenticate(
    pool: &DbPool,
    credentials: Credentials,
    client_addr: String,
) -> Result<Option<StaffUser>, AppError> {
    let Credentials { username, password } = credentials;
    let name = username.clone();
    let (reservation, user) = db::with_conn(pool, move |conn| {
        let reservation = match reserve_attempt(conn, &name, &client_addr, unix_now())? {
            Attempt::Reserved(id) => id,
            Attempt::LockedOut { retry_after_secs } => {
                return Err(AppError::TooManyRequests { retry_after_secs })
            }
        };
        let user = StaffUser::find_by_username(conn, &name)?.filter(|u| u.is_active);
        Ok((reservation, user))
    })
    .await?;
    // Hashing takes the same time whether or not the user exists.
    let checked =
        hashing::run(move || verify_password(user.as_ref(), &password).then_some(user)).await;
    // A right password, or one never checked (the hashing queue was full: 503), gives its
    // reserved attempt back; only a wrong one keeps it.
    let user = match checked {
        Ok(user) => user.flatten(),
        Err(e) => {
            db::with_conn(pool, move |conn| Ok(release_attempt(conn, reservation)?)).await?;
            return Err(e);
        }
    };
    if user.is_some() {
        db::with_conn(pool, move |conn| Ok(release_attempt(conn, reservation)?)).await?;
    }
    Ok(user)
}

/// Changes user `id`'s password if `old_password` is right, and ends all of their sessions;
/// false when the old password is wrong. Both hashes go through the bounded gate.
pub async fn change_password(
    pool: &DbPool,
    id: i32,
    old_password: String,
    new_password: String,
) -> Result<bool, AppError> {
    let user = db::with_conn(pool, move |conn| {
        Ok(staff_users::table
            .find(id)
            .select(StaffUser::as_select())
            .first(conn)
            .optional()?)
    })
    .await?;
    let new_hash = hashing::run(move || {
        if !verify_password(user.as_ref(), &old_password) {
            return Ok(None);
        }
        hash_password(&new_password).map(Some)
    })
    .await?
    .map_err(AppError::Unexpected)?;
    let Some(new_hash) = new_hash else {
        return Ok(false);
    };
    db::with_conn(pool, move |conn| {
        Ok(StaffUser::set_password(conn, id, &new_hash)?)
    })
    .await?;
    Ok(true)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_locked_until_its_fifth_latest_failure_leaves_the_window() {
        let now = 10_000;
        assert_eq!(lockout(&[now; 4], now), None);
        let five = [now, now - 1, now - 2, now - 3, now - 100];
        assert_eq!(
            lockout(&five, now),
            Some((THROTTLE_WINDOW_SECS - 100) as u64)
        );
    }

    #[test]
    fn a_hash_verifies_its_own_password_only() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        let user = StaffUser {
            id: 1,
            username: "ada".into(),
            password_hash: hash,
            is_active: true,
            is_superuser: false,
        };
        assert!(verify_password(Some(&user), "correct horse"));
        assert!(!verify_password(Some(&user), "wrong"));
        assert!(!verify_password(None, "not a password"));
    }
}
