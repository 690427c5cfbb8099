//! Whose cache the keys under the prefix are: the database identity that every value carries,
//! and the one key that says which database the keys belong to.
//!
//! Two deployments with different databases can meet in one Redis under one prefix: staging
//! and production sharing a managed Redis with the default prefix, or a command run with the
//! production `DATABASE_URL` and no `REDIS_URL`, which reaches whatever local Redis answers.
//! Generations do not tell their values apart (each database has its own mark, and they
//! overlap), so each database is given an identity once, by a migration (`cache_database`),
//! and:
//!
//! - `{prefix}:database` names the database whose cache the keys are. A server claims it when
//!   nobody does (the first server to meet a Redis, or the first after a flush); a command
//!   never claims, since a command is exactly what gets pointed at the wrong Redis by mistake.
//! - The outbox worker checks the owner every round (`inspect.lua`): a server that finds another
//!   database's stops using Redis (`X-Cache: BYPASS`, an error in the log every few seconds,
//!   no memory lease) until the owner is its own again. The invalidation script refuses such
//!   keys too, and keys nobody owns when run by a command: that write keeps its outbox row, for
//!   the instances that reach the right Redis, and the command says so.
//! - Every value records the identity it was computed from, and the read script counts one
//!   from another database as a miss (`cachewithredis_cache_foreign_values_total`): between an
//!   owner's change and the next round the read path does not look at the owner, the key can be
//!   lost and claimed by the other deployment, and an older release does not check it.

use std::sync::atomic::{AtomicBool, Ordering};

use diesel::prelude::*;

use crate::db::DbConn;
use crate::schema::cache_database;

/// This process' database, and whether it may claim keys nobody owns.
pub struct Owner {
    identity: String,
    claims: AtomicBool,
}

impl Owner {
    pub fn new(identity: String) -> Self {
        Owner {
            identity,
            claims: AtomicBool::new(false),
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Lets this process claim keys that nobody owns: servers, never commands.
    pub fn claim_unowned(&self) {
        self.claims.store(true, Ordering::Release);
    }

    /// The scripts' claim flag.
    pub fn claim_flag(&self) -> &'static str {
        if self.claims.load(Ordering::Acquire) {
            "1"
        } else {
            "0"
        }
    }
}

/// The identity the migration gave this database.
pub fn database_identity(conn: &mut DbConn) -> QueryResult<String> {
    cache_database::table
        .select(cache_database::identity)
        .first(conn)
}

/// The error a script's `{'not_ours', owner}` becomes: a failed call, like an unreachable
/// Redis, so the outbox row stays and the instance stops reading Redis.
pub fn not_ours(owner: &str) -> redis::RedisError {
    if owner.is_empty() {
        return redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "no server has used this cache yet",
            "a command does not claim the keys (is REDIS_URL the Redis the servers use?)"
                .to_owned(),
        ));
    }
    redis::RedisError::from((
        redis::ErrorKind::InvalidClientConfig,
        "redis holds another database's cache",
        format!(
            "the keys belong to another database ({owner}): another deployment shares this \
             Redis and CACHE_KEY_PREFIX"
        ),
    ))
}
