//! `Range: bytes=...` (RFC 9110 §14): which part of a representation of known size to send.
//!
//! A header that does not parse, names another unit, or asks for more ranges than allowed is
//! ignored and the whole representation is sent (§14.2: a server MAY ignore it; nginx does
//! the same past `max_ranges`). Ranges that start past the end are dropped; when none is left
//! the answer is 416 with `Content-Range: bytes */SIZE`.

use std::ops::Range;

/// What to send for a request with a `Range` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeAnswer {
    /// 200 with the whole representation: no usable `Range` header.
    Full,
    /// 206 with these byte ranges (in request order, each non-empty and within the size).
    Partial(Vec<Range<u64>>),
    /// 416 with `Content-Range: bytes */SIZE`: no range overlaps the representation.
    Unsatisfiable,
}

/// Decides what a `Range` header value asks of a representation of `size` bytes, allowing
/// at most `max_ranges` ranges (more are answered with the whole representation).
pub fn parse_range(value: &[u8], size: u64, max_ranges: usize) -> RangeAnswer {
    let Some(specs) = strip_bytes_unit(value) else {
        return RangeAnswer::Full;
    };
    let mut ranges = Vec::new();
    let mut count = 0usize;
    for spec in specs.split(|&b| b == b',') {
        let spec = trim(spec);
        if spec.is_empty() {
            // RFC 9110 list syntax allows empty elements; they count for nothing.
            continue;
        }
        count += 1;
        if count > max_ranges {
            return RangeAnswer::Full;
        }
        match parse_spec(spec) {
            Some(spec) => {
                if let Some(range) = spec.within(size) {
                    ranges.push(range);
                }
            }
            None => return RangeAnswer::Full,
        }
    }
    if count == 0 {
        RangeAnswer::Full
    } else if ranges.is_empty() {
        RangeAnswer::Unsatisfiable
    } else {
        RangeAnswer::Partial(ranges)
    }
}

/// The `Content-Range` value of a 206 part: `bytes FIRST-LAST/SIZE`.
pub fn content_range(range: &Range<u64>, size: u64) -> String {
    format!(
        "bytes {}-{}/{size}",
        range.start,
        range.end.saturating_sub(1)
    )
}

/// The `Content-Range` value of a 416: `bytes */SIZE`.
pub fn unsatisfied_range(size: u64) -> String {
    format!("bytes */{size}")
}

/// One `range-spec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `first-` or `first-last`.
    From { first: u64, last: Option<u64> },
    /// `-length`: the last `length` bytes.
    Suffix(u64),
}

impl Spec {
    /// The bytes this spec selects from a representation of `size` bytes, if any.
    fn within(self, size: u64) -> Option<Range<u64>> {
        match self {
            Spec::From { first, last } => {
                if first >= size {
                    return None;
                }
                let end = last.map_or(size, |last| last.saturating_add(1).min(size));
                Some(first..end)
            }
            // A suffix of 0 bytes, or any suffix of an empty representation, selects nothing.
            Spec::Suffix(length) => {
                (size > 0 && length > 0).then(|| size.saturating_sub(length)..size)
            }
        }
    }
}

/// `bytes=` (the unit is case-insensitive, whitespace around `=` is not allowed) and the rest.
fn strip_bytes_unit(value: &[u8]) -> Option<&[u8]> {
    let value = trim(value);
    let (unit, rest) = value.split_at_checked(6)?;
    unit.eq_ignore_ascii_case(b"bytes=").then_some(rest)
}

fn parse_spec(spec: &[u8]) -> Option<Spec> {
    let dash = spec.iter().position(|&b| b == b'-')?;
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    if first.is_empty() {
        return Some(Spec::Suffix(digits(last)?));
    }
    let first = digits(first)?;
    if last.is_empty() {
        return Some(Spec::From { first, last: None });
    }
    let last = digits(last)?;
    // An invalid range-spec (last before first) makes the whole header invalid (§14.1.1).
    (last >= first).then_some(Spec::From {
        first,
        last: Some(last),
    })
}

/// A non-empty run of ASCII digits that fits in a u64.
fn digits(text: &[u8]) -> Option<u64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    text.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

fn trim(mut text: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = text {
        text = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = text {
        text = rest;
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::single_range_in_vec_init, reason = "lists of byte ranges")]
    use super::*;
    use proptest::prelude::*;

    fn answer(value: &str, size: u64) -> RangeAnswer {
        parse_range(value.as_bytes(), size, 8)
    }

    fn partial(ranges: &[Range<u64>]) -> RangeAnswer {
        RangeAnswer::Partial(ranges.to_vec())
    }

    #[test]
    fn the_examples_of_rfc_9110() {
        // §14.1.2, a representation of 10 000 bytes.
        assert_eq!(answer("bytes=0-499", 10_000), partial(&[0..500]));
        assert_eq!(answer("bytes=500-999", 10_000), partial(&[500..1000]));
        assert_eq!(answer("bytes=-500", 10_000), partial(&[9500..10_000]));
        assert_eq!(answer("bytes=9500-", 10_000), partial(&[9500..10_000]));
        assert_eq!(
            answer("bytes=0-0,-1", 10_000),
            partial(&[0..1, 9999..10_000])
        );
        assert_eq!(
            answer("bytes= 500-600 , 601-999", 10_000),
            partial(&[500..601, 601..1000])
        );
    }

    #[test]
    fn ends_past_the_size_are_cut_and_starts_past_it_are_unsatisfiable() {
        assert_eq!(answer("bytes=5-100", 10), partial(&[5..10]));
        assert_eq!(answer("bytes=-100", 10), partial(&[0..10]));
        assert_eq!(answer("bytes=10-", 10), RangeAnswer::Unsatisfiable);
        assert_eq!(answer("bytes=10-20,30-", 10), RangeAnswer::Unsatisfiable);
        assert_eq!(answer("bytes=10-20,2-3", 10), partial(&[2..4]));
        assert_eq!(answer("bytes=-0", 10), RangeAnswer::Unsatisfiable);
        assert_eq!(answer("bytes=0-", 0), RangeAnswer::Unsatisfiable);
        assert_eq!(answer("bytes=-5", 0), RangeAnswer::Unsatisfiable);
    }

    #[test]
    fn a_header_that_does_not_parse_is_ignored() {
        for value in [
            "bytes=5-4",
            "bytes=a-b",
            "bytes=1-2-3",
            "bytes=--1",
            "bytes=-",
            "bytes=",
            "bytes=,",
            "bytes=0-1,x",
            "items=0-1",
            "bytes 0-1",
            "bytes = 0-1",
            "bytes=+1-2",
            "bytes=99999999999999999999-",
            "",
        ] {
            assert_eq!(answer(value, 100), RangeAnswer::Full, "{value:?}");
        }
        assert_eq!(
            answer("BYTES=0-1", 100),
            partial(&[0..2]),
            "the unit is case-insensitive"
        );
    }

    #[test]
    fn more_ranges_than_allowed_get_the_whole_representation() {
        assert_eq!(parse_range(b"bytes=0-1", 100, 1), partial(&[0..2]));
        assert_eq!(parse_range(b"bytes=0-1,5-6", 100, 1), RangeAnswer::Full);
        assert_eq!(parse_range(b"bytes=0-1,,", 100, 1), partial(&[0..2]));
    }

    #[test]
    fn content_range_values() {
        assert_eq!(content_range(&(0..500), 10_000), "bytes 0-499/10000");
        assert_eq!(
            content_range(&(9999..10_000), 10_000),
            "bytes 9999-9999/10000"
        );
        assert_eq!(unsatisfied_range(10_000), "bytes */10000");
    }

    proptest! {
        #[test]
        fn no_input_panics_and_every_range_is_inside(value in proptest::collection::vec(any::<u8>(), 0..40), size in 0u64..1000) {
            if let RangeAnswer::Partial(ranges) = parse_range(&value, size, 4) {
                prop_assert!(!ranges.is_empty() && ranges.len() <= 4);
                for r in ranges {
                    prop_assert!(r.start < r.end && r.end <= size);
                }
            }
        }

        #[test]
        fn a_first_last_spec_selects_exactly_those_bytes(size in 1u64..10_000, a in 0u64..10_000, len in 0u64..10_000) {
            let b = a + len;
            let expected = if a >= size {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Partial(vec![a..(b + 1).min(size)])
            };
            prop_assert_eq!(answer(&format!("bytes={a}-{b}"), size), expected);
        }
    }
}
