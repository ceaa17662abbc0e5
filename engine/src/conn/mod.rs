//! The connection state machines: HTTP/1.1 (reading heads and bodies, refusing, answering,
//! the upgrade) and WebSocket after the 101 (the frame loop, heartbeats, the idle timeout,
//! the close handshake). What a request asks of its route, and what a WebSocket connection
//! does with its messages, come from `routes`.
//!
//! May use: `server`, `protections`, `routes`.

pub(crate) mod access_entry;
pub mod http;
pub mod ws;

#[cfg(test)]
mod tests;
