//! What ringstream's fuzz targets share: how an input is cut into reads, how client frames are
//! built from fuzzer bytes, and a WebSocket session driven over a byte stream.
//!
//! The targets themselves live in `fuzz_targets/`, one file each; docs/FUZZING.md says how to
//! run them with the pinned stable toolchain and how to reproduce a crash.
//!
//! # Layout
//!
//! - [`cuts`]: read boundaries drawn from the input itself, so a split target cuts an input
//!   the same way every time and an artifact reproduces alone.
//! - [`client_frames`]: masked client frames built from short records, so the session targets
//!   reach fragments, UTF-8 and close payloads without first guessing a valid header.
//! - [`session_run`]: a [`Session`](ringstream_protocol::ws::session::Session) fed a stream
//!   the way the engine feeds it, checking every event against the session's promises and
//!   copying the payloads out for comparison.

pub mod client_frames;
pub mod cuts;
pub mod session_run;
