//! The chunked body decoder on any bytes, fed whole, one byte per read and in reads of random
//! sizes, as the engine feeds it (unconsumed bytes stay in its buffer and the next read is
//! appended). The three must agree: the same error, or the same body, the same end and the
//! same number of bytes consumed. Every call keeps `decode`'s promises on the way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringstream_fuzz::cuts::{cut_points, every_byte};
use ringstream_protocol::http::{BodyDecoder, BodyError, BodyKind};

/// A generous limit, and one that short inputs cross (413 on the chunk size).
const MAX_BODIES: [u64; 2] = [1 << 20, 24];

/// What one way of feeding the input produced.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    /// The body data, joined; not compared after an error, since a piece found in the same
    /// call as the error is dropped (and which call that is depends on the reads).
    body: Vec<u8>,
    /// Input bytes consumed; all of them unless the body ended or was refused.
    consumed: usize,
    /// The final CRLF was read.
    done: bool,
    /// The refusal, if any.
    error: Option<BodyError>,
}

fuzz_target!(|data: &[u8]| {
    for max_body in MAX_BODIES {
        let whole = decode(data, &[data.len()], max_body);
        let bytewise = decode(data, &every_byte(data.len()), max_body);
        let random = decode(data, &cut_points(data, data.len()), max_body);
        for split in [&bytewise, &random] {
            assert_eq!(split.error, whole.error);
            if whole.error.is_none() {
                assert_eq!(split, &whole);
            }
        }
        if let Some(error) = whole.error {
            assert!(matches!(error.status(), 400 | 413 | 431), "{error:?}");
        } else {
            assert!(whole.body.len() as u64 <= max_body);
            assert!(whole.done || whole.consumed == data.len());
        }
    }
});

/// Feeds `data` in reads ending at `cuts` to a fresh chunked decoder.
fn decode(data: &[u8], cuts: &[usize], max_body: u64) -> Outcome {
    let mut decoder = BodyDecoder::new(BodyKind::Chunked, max_body);
    let mut outcome = Outcome {
        body: Vec::new(),
        consumed: 0,
        done: false,
        error: None,
    };
    let mut buffered = 0;
    for &cut in cuts {
        buffered = cut;
        while outcome.consumed < buffered && !decoder.is_done() {
            let input = &data[outcome.consumed..buffered];
            let decoded = match decoder.decode(input) {
                Ok(decoded) => decoded,
                Err(error) => {
                    outcome.error = Some(error);
                    return outcome;
                }
            };
            // "Consumes at least one byte of any non-empty input until done."
            assert!(decoded.consumed >= 1 && decoded.consumed <= input.len());
            assert!(decoded.data.end <= decoded.consumed);
            assert_eq!(decoded.done, decoder.is_done());
            outcome.body.extend_from_slice(&input[decoded.data]);
            outcome.consumed += decoded.consumed;
        }
    }
    outcome.done = decoder.is_done();
    if outcome.done {
        // "... and then none."
        let after = decoder.decode(&data[outcome.consumed..buffered]);
        assert_eq!(
            after.map(|d| (d.consumed, d.data.is_empty(), d.done)),
            Ok((0, true, true))
        );
        assert!(data[..outcome.consumed].ends_with(b"\r\n"));
    }
    outcome
}
