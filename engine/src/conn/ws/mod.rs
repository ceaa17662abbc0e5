//! The WebSocket state machine: deciding the upgrade, and serving the connection after the 101.

mod conn;
pub(crate) mod session_log;
pub mod tunnel;
mod upgrade;

pub use conn::serve;
pub use upgrade::{Accepted, decide, write_accepted};
