//! What the integration tests (`tests/api`) and the nemesis (`examples/nemesis`) start and
//! break, written once: a redis-server of their own on a free port (standalone, replica or
//! sentinel; killed, frozen, restarted empty or from a snapshot), a TCP proxy that cuts, stalls
//! or black-holes the path to it, a fake server that refuses what the cache needs, and a
//! PostgreSQL database of their own that is dropped at the end. Every process and database is gone when its owner is dropped, on a panic too.
//!
//! Errors are returned, not panicked on: a test says `.expect("why")`, the nemesis reports them.

pub mod fake_redis;
pub mod fault_proxy;
pub mod ports;
pub mod postgres;
pub mod redis_cluster;
pub mod redis_server;

pub use fake_redis::FakeRedis;
pub use fault_proxy::FaultProxy;
pub use ports::free_port;
pub use postgres::PgDatabase;
pub use redis_cluster::RedisCluster;
pub use redis_server::RedisServer;
