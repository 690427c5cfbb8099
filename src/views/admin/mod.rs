//! The staff area under `/admin`.

pub mod auth;
pub mod cache;
pub mod cache_state;
pub mod export;
pub mod history;
pub mod import;
pub mod password;
pub mod staff;
pub mod students;
