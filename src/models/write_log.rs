//! `cache_write_log`: who changed what, and when, for every write that invalidated the cache.

use diesel::prelude::*;

use crate::db::DbConn;
use crate::schema::cache_write_log;

/// Rows kept; the page shows the latest [`SHOWN`].
const KEPT: i32 = 100;
pub const SHOWN: i64 = 20;

#[derive(Debug, Clone, Queryable)]
pub struct LoggedWrite {
    pub id: i32,
    pub at_ms: i64,
    pub who: String,
    pub what: String,
}

/// Records a write; call inside the write's transaction, so the log and the data agree.
pub fn record(conn: &mut DbConn, who: &str, what: &str) -> QueryResult<()> {
    diesel::insert_into(cache_write_log::table)
        .values((
            cache_write_log::at_ms.eq(crate::cache::trust::now_ms() as i64),
            cache_write_log::who.eq(who),
            cache_write_log::what.eq(what),
        ))
        .execute(conn)?;
    // Ids only grow, so everything more than KEPT below the newest is older than the rest.
    let newest: Option<i32> = cache_write_log::table
        .select(diesel::dsl::max(cache_write_log::id))
        .first(conn)?;
    if let Some(newest) = newest {
        diesel::delete(cache_write_log::table.filter(cache_write_log::id.le(newest - KEPT)))
            .execute(conn)?;
    }
    Ok(())
}

/// The latest writes, newest first.
pub fn latest(conn: &mut DbConn) -> QueryResult<Vec<LoggedWrite>> {
    cache_write_log::table
        .order(cache_write_log::id.desc())
        .limit(SHOWN)
        .load(conn)
}
