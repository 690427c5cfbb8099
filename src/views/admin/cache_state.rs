//! What the staff cache page reads from Redis: the value, the generation, every instance's
//! lease, acknowledgement and published figures. One connection of its own, two pipelines.

use std::collections::HashMap;

use crate::cache::envelope::Envelope;
use crate::cache::history::{self, Minute, Published};
use crate::cache::trust::now_ms;
use crate::cache::Cache;
use crate::models::cached::AVERAGE_AGE_KEY;
use crate::models::AverageAge;

/// The value in Redis, as the page shows it.
pub struct CachedValue {
    pub average: String,
    pub count: i64,
    pub generation: u64,
    pub age: String,
    pub ttl_left: String,
}

pub struct InstanceRow {
    pub id: String,
    pub address: String,
    pub lease: String,
    pub acknowledged: String,
    pub from_memory: &'static str,
    pub this_one: bool,
}

/// What the page reads from Redis; `None` where Redis did not answer.
pub struct FromRedis {
    pub value: Option<CachedValue>,
    pub generation: u64,
    pub instances: Vec<InstanceRow>,
    /// Every other live instance's published minutes.
    pub others: Vec<Vec<Minute>>,
}

/// One connection, two pipelines: the value and the instances, then their published figures.
pub fn read(history: &history::History, cache: &Cache) -> redis::RedisResult<FromRedis> {
    let mut conn = history.target.connect()?;
    let keys = cache.keys();
    let average = keys.value(AVERAGE_AGE_KEY);
    #[allow(clippy::type_complexity)]
    let (value, pttl, generation, leases, acks, (secs, micros)): (
        Option<String>,
        i64,
        Option<u64>,
        Vec<(String, i64)>,
        HashMap<String, u64>,
        (i64, i64),
    ) = redis::pipe()
        .get(&average.value)
        .pttl(&average.value)
        .get(&keys.generation)
        // Without the marker scored +inf (see `unacknowledged.lua`).
        .zrangebyscore_withscores(&keys.instances, "-inf", "(+inf")
        .hgetall(&keys.acks)
        .cmd("TIME")
        .query(&mut conn)?;
    let redis_now = secs * 1000 + micros / 1000;
    let published: Vec<Option<String>> = if leases.is_empty() {
        Vec::new()
    } else {
        let ids: Vec<&String> = leases.iter().map(|(id, _)| id).collect();
        redis::cmd("HMGET")
            .arg(&keys.stats)
            .arg(ids)
            .query(&mut conn)?
    };
    let me = &cache.local().instance_id;
    let mut instances = Vec::new();
    let mut others = Vec::new();
    for ((id, lease_end), published) in leases.into_iter().zip(published) {
        let published: Option<Published> =
            published.and_then(|json| serde_json::from_str(&json).ok());
        let this_one = &id == me;
        let lease = if lease_end > redis_now {
            format!("ends in {}", span(lease_end - redis_now))
        } else {
            format!("expired {} ago", span(redis_now - lease_end))
        };
        instances.push(InstanceRow {
            address: published
                .as_ref()
                .map_or_else(|| "unknown".into(), |p| p.address.clone()),
            from_memory: match &published {
                _ if this_one && cache.local().is_serving() => "yes",
                _ if this_one => "no",
                Some(p) if p.serving_from_memory => "yes",
                Some(_) => "no",
                None => "unknown",
            },
            acknowledged: acks
                .get(&id)
                .map_or_else(|| "none".into(), |g| g.to_string()),
            lease,
            this_one,
            id,
        });
        if let (false, Some(p)) = (this_one, published) {
            others.push(p.minutes);
        }
    }
    Ok(FromRedis {
        value: value
            .and_then(|json| cached_value(&json, pttl))
            // Older than the generation: left to expire, never served.
            .filter(|v| Some(v.generation) == generation),
        generation: generation.unwrap_or(0),
        instances,
        others,
    })
}

fn cached_value(json: &str, pttl: i64) -> Option<CachedValue> {
    let stored = Envelope::<AverageAge>::open(json)?;
    let computed_at = stored.computed_at_ms as i64;
    Some(CachedValue {
        average: stored
            .payload
            .average_age
            .map_or_else(|| "none (no students)".into(), |a| format!("{a:.2}")),
        count: stored.payload.student_count,
        generation: stored.generation,
        age: if computed_at > 0 {
            span(now_ms() as i64 - computed_at)
        } else {
            "unknown".into()
        },
        ttl_left: span(pttl),
    })
}

/// `3.2 s`, `4 min 10 s`: how long ago, or how long left.
pub fn span(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 10_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 120_000 {
        format!("{} s", ms / 1000)
    } else {
        format!("{} min {} s", ms / 60_000, (ms / 1000) % 60)
    }
}
