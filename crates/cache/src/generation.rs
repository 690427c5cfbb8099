//! The generation: the number that tells a current cached value from an older one, and its
//! high-water mark in the database.
//!
//! Redis holds the live counter (`{prefix}:students:average_age:generation`), but Redis can
//! lose it: restarted from an older snapshot, or failed over to a replica that missed the last
//! writes, it comes back with a lower number, and a value or a lease computed before a write
//! would count as current again. So the database keeps the high-water mark in a one-row table,
//! `cache_generation`, incremented by every data change in its own transaction (with its outbox
//! row, [`super::outbox::record`]). Redis' generation only ever moves to the maximum of itself
//! and that mark (`scripts/invalidate.lua`, `scripts/resync.lua`), so every generation Redis
//! has ever held is at most the mark committed at that moment, and a server that lost data is
//! raised back above it before it is read (see [`super::resync`]).

use std::fmt;

use diesel::prelude::*;

use crate::db::DbConn;
use crate::schema::cache_generation;

/// A generation of the cached value. Parsed once from what Redis returns, never defaulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Generation(u64);

impl Generation {
    pub const ZERO: Generation = Generation(0);

    pub fn new(value: u64) -> Self {
        Generation(value)
    }

    pub fn get(self) -> u64 {
        self.0
    }

    /// Reads a generation as the scripts return it (decimal text).
    pub fn parse(text: &str) -> Result<Generation, redis::RedisError> {
        text.parse().map(Generation).map_err(|_| {
            redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "not a generation",
                text.to_owned(),
            ))
        })
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl redis::ToRedisArgs for Generation {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        self.0.write_redis_args(out)
    }
}

/// Increments the database's high-water mark; call inside the data change's transaction, so
/// the row lock orders the marks as the changes commit.
pub fn bump(conn: &mut DbConn) -> QueryResult<()> {
    diesel::update(cache_generation::table)
        .set(cache_generation::generation.eq(cache_generation::generation + 1))
        .execute(conn)
        .map(drop)
}

/// The high-water mark as committed now.
pub fn committed(conn: &mut DbConn) -> QueryResult<Generation> {
    let mark: i64 = cache_generation::table
        .select(cache_generation::generation)
        .first(conn)?;
    Ok(Generation(mark.max(0) as u64))
}

/// Raises the mark to at least `seen` (a Redis counter from before the mark existed, or from
/// an instance of an older release), then returns it.
pub fn raise_to(conn: &mut DbConn, seen: Generation) -> QueryResult<Generation> {
    let seen = i64::try_from(seen.0).unwrap_or(i64::MAX);
    diesel::update(cache_generation::table.filter(cache_generation::generation.lt(seen)))
        .set(cache_generation::generation.eq(seen))
        .execute(conn)?;
    committed(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generation_is_read_from_decimal_text_or_refused() {
        assert_eq!(Generation::parse("42").ok(), Some(Generation::new(42)));
        assert!(Generation::parse("\u{0}unparseable").is_err());
        assert!(Generation::parse("-1").is_err());
    }
}
