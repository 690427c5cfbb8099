//! The names of the keys in Redis (see the crate's documentation, "Keys").
//!
//! Every key starts with the prefix as a hash tag, `{prefix}:`, so all of them hash to one slot
//! of a Redis Cluster: the scripts touch several keys at once (a value, the generation and a
//! lease; the lease table and the acknowledgements), and a cluster refuses a script whose keys
//! are in different slots (`CROSSSLOT`). One slot is one master's: right for a handful of small
//! keys read mostly from each instance's memory, and what a cluster-mode managed Redis needs.
//! A pub/sub channel has no slot; scripts get it as an argument, not as a key.

/// The names of the keys every cached value shares. Each value has two of its own
/// ([`ValueKeys`]).
#[derive(Clone, Debug)]
pub struct Keys {
    /// `CACHE_KEY_PREFIX`, without the braces.
    prefix: String,
    /// `{prefix}`: what every key starts with.
    tagged: String,
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
    /// Hash of instance id → its published figures, for the staff page (see [`crate::history`]).
    pub stats: String,
}

/// The keys of one cached value: the value and its computing lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueKeys {
    pub value: String,
    pub lock: String,
}

impl Keys {
    /// The keys under `prefix` (`CACHE_KEY_PREFIX`, which holds no `{` or `}`: the braces are
    /// added here).
    pub fn new(prefix: &str) -> Self {
        let tagged = format!("{{{prefix}}}");
        Keys {
            prefix: prefix.to_owned(),
            generation: format!("{tagged}:generation"),
            channel: format!("{tagged}:invalidations"),
            instances: format!("{tagged}:instances"),
            acks: format!("{tagged}:acks"),
            server_met_prefix: format!("{tagged}:server_met"),
            owner: format!("{tagged}:database"),
            stats: format!("{tagged}:stats"),
            tagged,
        }
    }

    /// `CACHE_KEY_PREFIX`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// What every key starts with: `{prefix}`, the hash tag.
    pub fn tagged(&self) -> &str {
        &self.tagged
    }

    /// The keys of the value a query stores under `key` (see [`crate::CachedQuery::key`]).
    pub fn value(&self, key: &str) -> ValueKeys {
        let value = format!("{}:{key}", self.tagged);
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
    fn every_key_starts_with_the_prefix_as_a_hash_tag() {
        let keys = Keys::new("app");
        assert_eq!(keys.generation, "{app}:generation");
        assert_eq!(keys.channel, "{app}:invalidations");
        let value = keys.value("students:average_age");
        assert_eq!(value.value, "{app}:students:average_age");
        assert_eq!(value.lock, "{app}:students:average_age:lock");
        assert_eq!(keys.server_met("run", "repl"), "{app}:server_met:run:repl");
    }
}
