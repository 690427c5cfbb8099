//! The staff area under `/admin`.

pub mod auth;
pub mod cache;
pub mod students;
