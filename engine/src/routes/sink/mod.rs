//! The sink route (telemetry in): messages are counted and, with a sink file, appended as JSON
//! lines by one writer thread per file.

pub mod file;
pub mod member;
