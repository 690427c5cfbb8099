//! CacheWithRedis: a student list whose average-age aggregate is cached in Redis, in Django's
//! model-view-template shape (Diesel models, actix-web views, Askama templates).

/// The cache core, its own crate (`crates/cache`); re-exported so that `crate::cache` reads as
/// the other layers do.
pub use ::cache;
pub use ::cache::on_backend;
pub mod cli;
pub mod compression;
pub mod config;
pub mod csv_import;
pub mod db;
pub mod error;
pub mod forms;
pub mod hashing;
pub mod healthcheck;
pub mod logging;
pub mod metrics;
pub mod models;
pub mod on_answer;
pub mod only_when;
pub mod password_rules;
pub mod request_id;
pub mod request_limits;
pub mod schema;
pub mod security;
pub mod session;
pub mod session_store;
pub mod signin_token;
pub mod startup;
pub mod usernames;
pub mod views;
