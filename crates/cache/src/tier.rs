//! Which tier served a cache hit: this process's memory or Redis.

/// Where a hit came from; a miss or a bypass has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// This instance's in-process copy (see `cache::local`): no Redis call was made.
    Memory,
    /// One round trip to Redis.
    Redis,
}

impl Tier {
    /// The `X-Cache-Tier` header value, the JSON `"tier"` and the `Server-Timing` description.
    pub fn label(self) -> &'static str {
        match self {
            Tier::Memory => "memory",
            Tier::Redis => "redis",
        }
    }
}
