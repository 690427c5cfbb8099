//! Tables as Rust types, with their queries as methods.

pub mod staff;
pub mod student;

pub use staff::StaffUser;
pub use student::{AverageAge, NewStudent, Student};
