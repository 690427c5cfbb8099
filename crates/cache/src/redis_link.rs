//! How this process talks to the Redis it caches in: the pool of checked connections, where
//! the server is (following Sentinel), the key names, the scripts, and the database identity
//! that every script checks. The protocol's decisions are elsewhere; these are its calls.

use std::sync::Arc;

use redis::RedisResult;

use crate::generation::Generation;
use crate::keys::Keys;
use crate::owner::{self, Owner};
use crate::redis_pool::{RedisManager, RedisPool};
use crate::redis_target::RedisTarget;
use crate::scripts::Scripts;
use crate::timings;

pub struct RedisLink {
    pub(crate) pool: RedisPool,
    /// Where Redis is, for connections outside the pool (the subscription, the staff page).
    pub(crate) target: Arc<RedisTarget>,
    pub(crate) keys: Keys,
    pub(crate) scripts: Scripts,
    /// This process' database identity (see [`owner`]).
    pub(crate) owner: Owner,
}

impl RedisLink {
    pub fn new(pool: RedisPool, target: Arc<RedisTarget>, keys: Keys, owner: Owner) -> Self {
        let bodies = Scripts::bodies();
        target.know_scripts(bodies.iter().map(|(sha, body)| (sha.as_str(), *body)));
        RedisLink {
            pool,
            target,
            keys,
            scripts: Scripts::default(),
            owner,
        }
    }

    pub(crate) fn connection(&self) -> RedisResult<r2d2::PooledConnection<RedisManager>> {
        self.pool.get().map_err(|e| {
            redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no redis connection: {e}"),
            ))
        })
    }

    /// The invalidation script at `mark`: the generation now, and the one before.
    pub(crate) fn invalidate_at(&self, mark: Generation) -> RedisResult<(Generation, Generation)> {
        let mut conn = self.connection()?;
        let reply: Vec<String> = timings::time_cache_call("EVALSHA invalidate", || {
            self.scripts
                .invalidate
                .key(&self.keys.generation)
                .key(&self.keys.owner)
                .arg(self.owner.identity())
                .arg(self.owner.claim_flag())
                .arg(mark)
                .arg(&self.keys.channel)
                .invoke(&mut *conn)
        })?;
        match owned_reply(&reply, "ok", "the invalidation script")? {
            [generation, before] => {
                Ok((Generation::parse(generation)?, Generation::parse(before)?))
            }
            _ => Err(unexpected("the invalidation script")),
        }
    }

    /// Whether the keys are this database's (claiming them if nobody's and this process may),
    /// and the generation in Redis (`None` when missing).
    pub(crate) fn inspect(&self) -> RedisResult<Option<Generation>> {
        let mut conn = self.connection()?;
        let reply: Vec<String> = timings::time_cache_call("EVALSHA inspect", || {
            self.scripts
                .inspect
                .key(&self.keys.generation)
                .key(&self.keys.owner)
                .arg(self.owner.identity())
                .arg(self.owner.claim_flag())
                .invoke(&mut *conn)
        })?;
        match owned_reply(&reply, "ours", "the inspection script")? {
            [generation] if generation == "-1" => Ok(None),
            [generation] => Generation::parse(generation).map(Some),
            _ => Err(unexpected("the inspection script")),
        }
    }

    /// The generation now in Redis.
    pub fn current_generation(&self) -> RedisResult<Generation> {
        let mut conn = self.connection()?;
        let generation: Option<String> = redis::cmd("GET")
            .arg(&self.keys.generation)
            .query(&mut *conn)?;
        generation
            .as_deref()
            .map_or(Ok(Generation::ZERO), Generation::parse)
    }

    pub fn ping(&self) -> RedisResult<()> {
        let mut conn = self.connection()?;
        timings::time_cache_call("PING", || redis::cmd("PING").query::<String>(&mut *conn))?;
        Ok(())
    }
}

/// The reply of a script that first checks who owns the keys (`inspect.lua`, `invalidate.lua`):
/// the fields after `ok_kind`, or the error for keys another database owns.
fn owned_reply<'a>(reply: &'a [String], ok_kind: &str, script: &str) -> RedisResult<&'a [String]> {
    match reply {
        [kind, rest @ ..] if kind == ok_kind => Ok(rest),
        [kind, owner] if kind == "not_ours" => Err(owner::not_ours(owner)),
        _ => Err(unexpected(script)),
    }
}

fn unexpected(script: &str) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "unexpected reply",
        script.to_owned(),
    ))
}
