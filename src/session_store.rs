//! Staff sessions stored in the database, behind actix-session's `SessionStore`.
//!
//! The cookie carries only a random key; the state lives in `staff_sessions`, which every
//! instance shares and which stays up when Redis is down. So ending a session is deleting its
//! row: a copy of the cookie stops working at once, on every instance.
//!
//! Lifetimes: a session expires `SESSION_IDLE_SECS` after its last request, and never later
//! than `SESSION_MAX_SECS` after it was created (a new key, hence a new row, is made at
//! sign-in, so that is the time of sign-in). Expired rows are ignored when loaded and purged
//! whenever a new session is created.
//!
//! The race it guards against: a request already under way when its session was ended (sign
//! out elsewhere, password changed) saves its state afterwards. Updating a row that is gone
//! does not bring the signed-in state back: the state is saved without the user, under a new
//! key, so the session stays ended.

use std::collections::HashMap;
use std::time::Duration;

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration as CookieDuration;
use base64::Engine;
use diesel::prelude::*;
use rand::Rng;

use crate::db::{self, DbConn, DbPool};
use crate::error::AppError;
use crate::models::staff::unix_now;
use crate::schema::staff_sessions;
use crate::session::{STAFF_ID, STAFF_USERNAME};

type State = HashMap<String, String>;

/// How long sessions last (`SESSION_IDLE_SECS`, `SESSION_MAX_SECS`).
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    pub idle: Duration,
    pub max: Duration,
}

impl Lifetimes {
    /// When a session created at `created_at` and used at `now` expires.
    fn expiry(&self, created_at: i64, now: i64) -> i64 {
        let idle = self.idle.as_secs() as i64;
        let max = self.max.as_secs() as i64;
        (now + idle).min(created_at + max)
    }

    /// How far the idle expiry must move before a request writes it: a minute for the default
    /// hour, so a busy session costs one write a minute, not one per request.
    fn slide_step(&self) -> i64 {
        (self.idle.as_secs() as i64 / 60).max(1)
    }
}

/// The `SessionStore` over the application's database pool.
#[derive(Clone)]
pub struct DbSessionStore {
    pool: DbPool,
    lifetimes: Lifetimes,
}

impl DbSessionStore {
    pub fn new(pool: DbPool, lifetimes: Lifetimes) -> Self {
        DbSessionStore { pool, lifetimes }
    }
}

/// 256 random bits, URL-safe.
fn new_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn staff_id_of(state: &State) -> Option<i32> {
    state.get(STAFF_ID)?.parse().ok()
}

/// The live session's state, its idle expiry moved forward.
fn load(
    conn: &mut DbConn,
    key: &str,
    lifetimes: Lifetimes,
    now: i64,
) -> QueryResult<Option<String>> {
    let row: Option<(String, i64, i64)> = staff_sessions::table
        .find(key)
        .filter(staff_sessions::expires_at.gt(now))
        .select((
            staff_sessions::state,
            staff_sessions::created_at,
            staff_sessions::expires_at,
        ))
        .first(conn)
        .optional()?;
    let Some((state, created_at, expires_at)) = row else {
        return Ok(None);
    };
    let expiry = lifetimes.expiry(created_at, now);
    if expiry - expires_at >= lifetimes.slide_step() {
        diesel::update(staff_sessions::table.find(key))
            .set(staff_sessions::expires_at.eq(expiry))
            .execute(conn)?;
    }
    Ok(Some(state))
}

/// Stores a new session and returns its key; purges expired ones on the way.
fn insert(
    conn: &mut DbConn,
    state: &State,
    lifetimes: Lifetimes,
    now: i64,
) -> anyhow::Result<String> {
    diesel::delete(staff_sessions::table.filter(staff_sessions::expires_at.le(now)))
        .execute(conn)?;
    let key = new_key();
    diesel::insert_into(staff_sessions::table)
        .values((
            staff_sessions::session_key.eq(&key),
            staff_sessions::staff_id.eq(staff_id_of(state)),
            staff_sessions::state.eq(serde_json::to_string(state)?),
            staff_sessions::created_at.eq(now),
            staff_sessions::expires_at.eq(lifetimes.expiry(now, now)),
        ))
        .execute(conn)?;
    Ok(key)
}

/// Saves the state of a live session; a session that has ended is saved as a new one without
/// its user (see the module's race note). Returns the key the state is now under.
fn update(
    conn: &mut DbConn,
    key: &str,
    mut state: State,
    lifetimes: Lifetimes,
    now: i64,
) -> anyhow::Result<String> {
    let updated = diesel::update(
        staff_sessions::table
            .find(key)
            .filter(staff_sessions::expires_at.gt(now)),
    )
    .set((
        staff_sessions::staff_id.eq(staff_id_of(&state)),
        staff_sessions::state.eq(serde_json::to_string(&state)?),
    ))
    .execute(conn)?;
    if updated == 1 {
        return Ok(key.to_owned());
    }
    state.remove(STAFF_ID);
    state.remove(STAFF_USERNAME);
    insert(conn, &state, lifetimes, now)
}

fn delete(conn: &mut DbConn, key: &str) -> QueryResult<()> {
    diesel::delete(staff_sessions::table.find(key)).execute(conn)?;
    Ok(())
}

/// Ends every session of one staff user; returns how many there were.
pub(crate) fn end_sessions_of(conn: &mut DbConn, staff_id: i32) -> QueryResult<usize> {
    diesel::delete(staff_sessions::table.filter(staff_sessions::staff_id.eq(staff_id)))
        .execute(conn)
}

impl DbSessionStore {
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut DbConn, Lifetimes, i64) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let lifetimes = self.lifetimes;
        db::with_conn(&self.pool, move |conn| {
            // A database error keeps its meaning (a closed connection is "unavailable").
            f(conn, lifetimes, unix_now()).map_err(|e| {
                match e.downcast::<diesel::result::Error>() {
                    Ok(db_error) => AppError::from(db_error),
                    Err(other) => AppError::Unexpected(other),
                }
            })
        })
        .await
        .map_err(anyhow::Error::from)
    }
}

impl SessionStore for DbSessionStore {
    async fn load(&self, session_key: &SessionKey) -> Result<Option<State>, LoadError> {
        let key = session_key.as_ref().to_owned();
        let json = self
            .run(move |conn, lifetimes, now| Ok(load(conn, &key, lifetimes, now)?))
            .await
            .map_err(LoadError::Other)?;
        json.map(|json| serde_json::from_str(&json))
            .transpose()
            .map_err(|e| LoadError::Deserialization(e.into()))
    }

    async fn save(&self, state: State, _ttl: &CookieDuration) -> Result<SessionKey, SaveError> {
        let key = self
            .run(move |conn, lifetimes, now| insert(conn, &state, lifetimes, now))
            .await
            .map_err(SaveError::Other)?;
        SessionKey::try_from(key).map_err(|e| SaveError::Other(e.into()))
    }

    async fn update(
        &self,
        session_key: SessionKey,
        state: State,
        _ttl: &CookieDuration,
    ) -> Result<SessionKey, UpdateError> {
        let key: String = session_key.into();
        let key = self
            .run(move |conn, lifetimes, now| update(conn, &key, state, lifetimes, now))
            .await
            .map_err(UpdateError::Other)?;
        SessionKey::try_from(key).map_err(|e| UpdateError::Other(e.into()))
    }

    async fn update_ttl(
        &self,
        _session_key: &SessionKey,
        _ttl: &CookieDuration,
    ) -> Result<(), anyhow::Error> {
        // The idle expiry moves in `load`, on every request that carries the cookie.
        Ok(())
    }

    async fn delete(&self, session_key: &SessionKey) -> Result<(), anyhow::Error> {
        let key = session_key.as_ref().to_owned();
        self.run(move |conn, _, _| Ok(delete(conn, &key)?)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_expires_at_its_idle_or_absolute_limit_whichever_is_first() {
        let lifetimes = Lifetimes {
            idle: Duration::from_secs(3600),
            max: Duration::from_secs(14 * 24 * 3600),
        };
        assert_eq!(lifetimes.expiry(0, 100), 3700);
        let late = 14 * 24 * 3600 - 10;
        assert_eq!(lifetimes.expiry(0, late), 14 * 24 * 3600);
    }
}
