//! The HTTP/1.1 and WebSocket state machines driven over an in-memory transport: every split
//! point of a request or a frame, refusals, deadlines and backpressure, with exact bytes.

#![allow(clippy::unwrap_used, reason = "tests")]

mod harness;
mod http;
mod memory;
mod ws;
