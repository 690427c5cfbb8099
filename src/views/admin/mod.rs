//! The staff area under `/admin`.

pub mod auth;
pub mod password;
pub mod students;
