//! One integration-test binary: each test starts its own application, SQLite file and
//! redis-server, and talks to it over HTTP.

// A test that cannot set itself up should fail loudly: unwrap and expect are the point here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin_auth;
mod admin_cache;
mod admin_students;
mod age_distribution;
mod average_age_cache;
mod browser;
mod bulk_delete;
mod cache_faults;
mod cache_losses;
mod cache_races;
mod cache_tiers;
mod cache_writes;
mod cli;
mod consistency_monitor;
mod container;
mod cross_site;
mod csv_export;
mod csv_import;
mod deploy;
mod helpers;
mod history;
mod hostile_input;
mod http_caching;
mod list_cache;
mod list_search;
mod load_balancer;
mod migrations;
mod observability;
mod operations;
mod page_chrome;
mod public_pages;
mod redis_cluster;
mod resilience;
mod sentinel;
mod sign_in_throttle;
mod staff_list;
mod staff_sessions;
mod staff_users;
mod unsupported_servers;
