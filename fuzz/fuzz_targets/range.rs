//! The `Range` header parser on any value, for a few representation sizes and range limits:
//! it never panics; a 206 answer lists non-empty ranges inside the representation, no more
//! than allowed, and written back out as a header gives itself again; whether the header is
//! ignored (200) depends on its syntax and the range count, never on the size; and allowing
//! more ranges never changes an answer that was not refused for having too many.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringstream_protocol::http::{RangeAnswer, content_range, parse_range, unsatisfied_range};

const SIZES: [u64; 6] = [0, 1, 10, 500, 10_000, u64::MAX];
/// Ascending, for the monotonicity check.
const MAX_RANGES: [usize; 3] = [1, 4, 100];

fuzz_target!(|value: &[u8]| {
    for max_ranges in MAX_RANGES {
        let ignored = parse_range(value, SIZES[0], max_ranges) == RangeAnswer::Full;
        for size in SIZES {
            let answer = parse_range(value, size, max_ranges);
            assert_eq!(answer == RangeAnswer::Full, ignored, "size {size}");
            match &answer {
                RangeAnswer::Partial(ranges) => check_partial(ranges, size, max_ranges),
                RangeAnswer::Unsatisfiable => {
                    assert_eq!(unsatisfied_range(size), format!("bytes */{size}"));
                }
                RangeAnswer::Full => {}
            }
            if answer != RangeAnswer::Full {
                for more in MAX_RANGES.into_iter().filter(|&m| m > max_ranges) {
                    assert_eq!(parse_range(value, size, more), answer, "max {more}");
                }
            }
        }
    }
});

fn check_partial(ranges: &[std::ops::Range<u64>], size: u64, max_ranges: usize) {
    assert!(!ranges.is_empty() && ranges.len() <= max_ranges);
    for range in ranges {
        assert!(
            range.start < range.end && range.end <= size,
            "{range:?} of {size}"
        );
        let (first, last) = (range.start, range.end - 1);
        assert_eq!(
            content_range(range, size),
            format!("bytes {first}-{last}/{size}")
        );
    }
    let canonical: Vec<String> = ranges
        .iter()
        .map(|r| format!("{}-{}", r.start, r.end - 1))
        .collect();
    let rewritten = format!("bytes={}", canonical.join(","));
    assert_eq!(
        parse_range(rewritten.as_bytes(), size, max_ranges),
        RangeAnswer::Partial(ranges.to_vec()),
        "{rewritten}"
    );
}
