//! The `staff_users` table, password hashing, and the record of failed sign-ins.

use std::sync::OnceLock;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};
use diesel::prelude::*;

use crate::db::DbConn;
use crate::on_backend;
use crate::schema::{login_failures, staff_users};

/// A staff member who may sign in.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = staff_users)]
pub struct StaffUser {
    pub id: i32,
    pub username: String,
    pub password_hash: String,
}

#[derive(Insertable)]
#[diesel(table_name = staff_users)]
struct NewStaffUser<'a> {
    username: &'a str,
    password_hash: &'a str,
}

/// How many failures within [`THROTTLE_WINDOW_SECS`] lock a username or a client address out.
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

    /// Inserts a user whose password is already hashed; a taken username is a
    /// `DatabaseError(UniqueViolation)`.
    pub fn insert(
        conn: &mut DbConn,
        username: &str,
        password_hash: &str,
    ) -> QueryResult<StaffUser> {
        let new = NewStaffUser {
            username,
            password_hash,
        };
        on_backend!(conn, c => diesel::insert_into(staff_users::table)
            .values(&new)
            .returning(StaffUser::as_returning())
            .get_result(c))
    }
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
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let ok = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    ok && user.is_some()
}

/// Records one failed sign-in.
pub fn record_login_failure(
    conn: &mut DbConn,
    username: &str,
    client_addr: &str,
    now: i64,
) -> QueryResult<()> {
    diesel::insert_into(login_failures::table)
        .values((
            login_failures::username.eq(username),
            login_failures::client_addr.eq(client_addr),
            login_failures::failed_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Seconds until a sign-in for `username` from `client_addr` may be tried again, or `None` when
/// it may be tried now. Old records are pruned on the way.
pub fn login_retry_after(
    conn: &mut DbConn,
    username: &str,
    client_addr: &str,
    now: i64,
) -> QueryResult<Option<u64>> {
    let since = now - THROTTLE_WINDOW_SECS;
    diesel::delete(login_failures::table.filter(login_failures::failed_at.le(since)))
        .execute(conn)?;
    let mut retry_after = None;
    for by_username in [true, false] {
        let mut query = login_failures::table
            .filter(login_failures::failed_at.gt(since))
            .select(login_failures::failed_at)
            .order(login_failures::failed_at.desc())
            .into_boxed();
        query = if by_username {
            query.filter(login_failures::username.eq(username))
        } else {
            query.filter(login_failures::client_addr.eq(client_addr))
        };
        // The lock lasts until the MAX_FAILURES-th most recent failure leaves the window.
        let recent: Vec<i64> = query.limit(MAX_FAILURES).load(conn)?;
        if recent.len() as i64 >= MAX_FAILURES {
            let oldest = recent[recent.len() - 1];
            let wait = (oldest + THROTTLE_WINDOW_SECS - now).max(1) as u64;
            retry_after = Some(retry_after.map_or(wait, |w: u64| w.max(wait)));
        }
    }
    Ok(retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_own_password_only() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        let user = StaffUser {
            id: 1,
            username: "ada".into(),
            password_hash: hash,
        };
        assert!(verify_password(Some(&user), "correct horse"));
        assert!(!verify_password(Some(&user), "wrong"));
        assert!(!verify_password(None, "not a password"));
    }
}
