//! The WebSocket session (fragment assembly, the size and fragment limits, UTF-8 validation,
//! close payloads) over an arbitrary frame stream. Every event is checked against the
//! session's promises (`session_run`), and the stream read whole, one byte per read and in
//! reads of random sizes must give the same events and the same end.
//!
//! Input: the first byte picks the limits (bits 1-2: `max_message_size`, bits 3-4:
//! `max_fragments`) and how the rest is read (bit 0 clear: raw bytes; set: records turned into
//! masked client frames, see `client_frames`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringstream_fuzz::client_frames::frame_stream;
use ringstream_fuzz::cuts::{cut_points, every_byte};
use ringstream_fuzz::session_run::run_session;
use ringstream_protocol::ws::session::SessionLimits;

/// Longest stream also read one byte per read (each read re-parses the pending frame).
const BYTEWISE_MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let limits = SessionLimits {
        max_message_size: [16, 125, 1000, 1 << 20][usize::from(control >> 1 & 3)],
        max_fragments: [1, 2, 5, 1000][usize::from(control >> 3 & 3)],
    };
    let stream = &*frame_stream(control, rest);
    let whole = run_session(limits, stream, &[stream.len()]);
    let random = run_session(limits, stream, &cut_points(stream, stream.len()));
    assert_eq!(random, whole, "reads of random sizes");
    if stream.len() <= BYTEWISE_MAX {
        let bytewise = run_session(limits, stream, &every_byte(stream.len()));
        assert_eq!(bytewise, whole, "one byte per read");
    }
});
