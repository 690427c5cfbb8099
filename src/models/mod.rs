//! Tables as Rust types, with their queries as methods.

pub mod age_distribution;
pub mod cached;
pub mod history;
pub mod name_grams;
pub mod staff;
pub mod student;
pub mod student_window;
pub mod write_log;

pub use age_distribution::AgeCounts;
pub use staff::StaffUser;
pub use student::{AverageAge, NewStudent, Student};
