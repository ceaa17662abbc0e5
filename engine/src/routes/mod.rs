//! The route kinds, one folder each, with everything that kind does: `plain` (health, static
//! text), `observe` (stats, metrics), `echo`, `broadcast` (topics, the hub, members' queues,
//! publish), `sink`, `files`, `upload` and `handler` (the WebSocket handler API). `router`
//! matches a path to a route; `state` opens what routes share across workers at start-up.
//!
//! May use: `server`, `protections`, `config`, the protocol and policy crates.

pub mod ask;
pub mod auth;
pub mod broadcast;
pub mod echo;
pub mod files;
pub mod handler;
pub mod observe;
pub mod plain;
pub mod proxy;
pub mod role;
pub mod router;
pub mod sink;
pub mod state;
pub mod upload;

/// Extra headers a refusal must carry.
pub type RefusalHeaders = &'static [(&'static str, &'static [u8])];

/// A route's refusal of a request before its body is read: the status and the headers it
/// requires (`Allow` of a 405, `Retry-After` of a 429). The connection answers it and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// The status.
    pub status: u16,
    /// Headers the status requires.
    pub headers: RefusalHeaders,
}

impl Refused {
    /// A refusal with no extra header.
    pub const fn status(status: u16) -> Self {
        Self {
            status,
            headers: &[],
        }
    }

    /// A refusal with the headers its status requires.
    pub const fn with(status: u16, headers: RefusalHeaders) -> Self {
        Self { status, headers }
    }
}
