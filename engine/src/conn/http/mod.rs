//! The HTTP/1.1 connection state machine: heads, bodies, refusals, answers and the upgrade.

mod conn;
mod refuse;

pub use conn::serve;
pub use refuse::refuse_unread;
