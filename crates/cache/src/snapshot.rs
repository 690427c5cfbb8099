//! Every cached query reads the database as of one instant.
//!
//! A query of several statements (the list's count, then its rows) run under PostgreSQL's
//! default, READ COMMITTED, takes a snapshot per statement: a write committing between them
//! gives a page that matches no state the database was ever in (the nemesis found one: the
//! count from before a delete, the rows from after it). Cached, such a page would be served
//! until the next write. So the cache runs each query in a transaction that reads from one
//! snapshot (REPEATABLE READ; SQLite's transactions read from one snapshot already), and the
//! consistency monitor does the same for its comparison.

use diesel::connection::SimpleConnection;
use diesel::{Connection, QueryResult};

use crate::db::DbConn;

/// Runs `read` in a transaction that sees one snapshot of the database.
pub fn read_in_one_snapshot<T>(
    conn: &mut DbConn,
    read: impl FnOnce(&mut DbConn) -> QueryResult<T>,
) -> QueryResult<T> {
    conn.transaction(|conn| {
        if matches!(conn, DbConn::Pg(_)) {
            conn.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
        }
        read(conn)
    })
}
