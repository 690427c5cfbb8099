//! What the cache stores: any query whose result can be recomputed from the database.
//!
//! The cache knows a query by its key and nothing else of it: the scripts check the
//! [`super::envelope`] around the payload (generation, database), never the payload, and the
//! payload's own shape is checked by deserialising it (a value that does not parse is a miss).
//! Every query shares the one generation, so one invalidation covers all of them: a write
//! cannot name which cached queries it changes, and need not.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::db::DbConn;

/// A query the cache can serve: its key, how to compute it, and how to compare two results.
///
/// `compute` must read everything through the connection it is given, after the cache read the
/// generation: the stale-set argument (see [`super`]) holds for any query that starts after
/// that read, and for nothing computed earlier.
pub trait CachedQuery: Clone + Send + Sync + 'static {
    type Value: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// The key under the prefix (`students:average_age`): the same for the same result.
    fn key(&self) -> Cow<'static, str>;

    /// Runs the query.
    fn compute(&self, conn: &mut DbConn) -> diesel::QueryResult<Self::Value>;

    /// Whether the query runs more than one statement, and so must run in a transaction to read
    /// one snapshot (see [`super::snapshot`]). One statement reads one snapshot by itself, and
    /// the transaction would cost two round trips more per miss.
    fn several_statements(&self) -> bool {
        true
    }

    /// Whether a result is worth storing. A page past the end of the list is not: anyone may
    /// ask for any page number, and each would be a key.
    fn worth_storing(&self, _value: &Self::Value) -> bool {
        true
    }

    /// Whether a value served from the cache agrees with one computed now (the consistency
    /// monitor's comparison).
    fn agrees(&self, served: &Self::Value, fresh: &Self::Value) -> bool;

    /// A short description of a value, for the monitor's log line when it finds a difference.
    fn describe(&self, value: &Self::Value) -> String;
}
