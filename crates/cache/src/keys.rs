//! The names of the keys in Redis (see the crate's documentation, "Keys").

/// The names of the keys every cached value shares. Each value has two of its own
/// ([`ValueKeys`]).
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
    pub generation: String,
    /// Pub/sub channel on which invalidations announce their generation.
    pub channel: String,
    /// Sorted set of instance ids scored by the end of their lease (Redis time, ms).
    pub instances: String,
    /// Hash of instance id → the last generation it acknowledged.
    pub acks: String,
    /// Prefix of the records of when each server was first met (see [`crate::resync::ServerMet`]).
    server_met_prefix: String,
    /// The identity of the database whose cache these keys are (see [`crate::owner`]).
    pub owner: String,
}

/// The keys of one cached value: the value and its computing lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueKeys {
    pub value: String,
    pub lock: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
            generation: format!("{prefix}:generation"),
            channel: format!("{prefix}:invalidations"),
            instances: format!("{prefix}:instances"),
            acks: format!("{prefix}:acks"),
            server_met_prefix: format!("{prefix}:server_met"),
            owner: format!("{prefix}:database"),
        }
    }

    /// `CACHE_KEY_PREFIX`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The keys of the value a query stores under `key` (see [`crate::CachedQuery::key`]).
    pub fn value(&self, key: &str) -> ValueKeys {
        let value = format!("{}:{key}", self.prefix);
        ValueKeys {
            lock: format!("{value}:lock"),
            value,
        }
    }

    /// The record of when the server with this `run_id` and replication id was first met.
    pub fn server_met(&self, run_id: &str, replication_id: &str) -> String {
        format!("{}:{run_id}:{replication_id}", self.server_met_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_prefix() {
        let keys = Keys::new("app");
        assert_eq!(keys.generation, "app:generation");
        assert_eq!(keys.channel, "app:invalidations");
        let value = keys.value("students:average_age");
        assert_eq!(value.value, "app:students:average_age");
        assert_eq!(value.lock, "app:students:average_age:lock");
    }
}
