//! Differential: a request head parsed in one piece against the same bytes arriving one at a
//! time, and in reads of random sizes. `parse_request` promises that the answer depends only
//! on the bytes: a buffer gets the answer its shortest prefix that is not `Ok(None)` gets. So
//! each prefix must say `Ok(None)` until the first one that answers, and that answer must be
//! the one-shot answer.
//!
//! An accepted head must be the same request; a refusal the same status. The variant is not
//! compared: with several 400 causes in the bytes it is a best guess for the log (as
//! `parse_request` documents), and a longer buffer can show a cause a shorter one could not
//! yet tell apart, e.g. `GET .1\r` is a bad request line until the next byte makes the CR bare.
//!
//! Byte by byte, a prefix is parsed in full each time (as the engine re-parses its buffer),
//! so that check stops `max_head_bytes + 1` bytes in, where the parser stops looking: the
//! small limits keep the quadratic cost low. The default limits get the random reads.
#![no_main]

use std::mem::MaybeUninit;

use libfuzzer_sys::fuzz_target;
use ringstream_fuzz::cuts::{cut_points, every_byte};
use ringstream_protocol::http::{HEADER_SLOTS, HeadLimits, RequestError, parse_request};

/// Limits under which the head limit, the target limit and the field count all bind within
/// a few hundred bytes, in different orders.
const SMALL: [HeadLimits; 3] = [
    HeadLimits {
        max_head_bytes: 64,
        max_headers: 2,
        max_uri_bytes: 16,
    },
    HeadLimits {
        max_head_bytes: 40,
        max_headers: 8,
        max_uri_bytes: 48,
    },
    HeadLimits {
        max_head_bytes: 512,
        max_headers: 6,
        max_uri_bytes: 128,
    },
];

/// Longest input checked byte by byte under the default limits.
const BYTEWISE_DEFAULT_MAX: usize = 1024;

fuzz_target!(|data: &[u8]| {
    for limits in SMALL {
        let seen = data.len().min(limits.max_head_bytes + 1);
        agree(data, &every_byte(seen), &limits);
    }
    let limits = HeadLimits::default();
    if data.len() <= BYTEWISE_DEFAULT_MAX {
        agree(data, &every_byte(data.len()), &limits);
    }
    agree(data, &cut_points(data, data.len()), &limits);
});

/// Parses `data` whole, then its prefixes ending at `cuts` in turn, as reads arriving: the
/// first prefix that is not `Ok(None)` must give the one-shot answer; if none does, the
/// one-shot answer must be `Ok(None)` too. The last cut is where the parser stops looking
/// (the end of `data`, or one byte past the head limit), so the whole buffer holds nothing
/// the last prefix did not.
fn agree(data: &[u8], cuts: &[usize], limits: &HeadLimits) {
    let mut whole_slots = [const { MaybeUninit::uninit() }; HEADER_SLOTS];
    let whole = parse_request(data, &mut whole_slots, limits);
    let mut slots = [const { MaybeUninit::uninit() }; HEADER_SLOTS];
    for &cut in cuts {
        match parse_request(&data[..cut], &mut slots, limits) {
            Ok(None) => continue,
            answer => {
                assert_eq!(
                    answer.as_ref().map_err(RequestError::status),
                    whole.as_ref().map_err(RequestError::status),
                    "a read ending at byte {cut} of {}: {answer:?} / {whole:?}",
                    data.len()
                );
                return;
            }
        }
    }
    assert_eq!(
        whole,
        Ok(None),
        "no prefix answered, so the whole buffer cannot"
    );
}
