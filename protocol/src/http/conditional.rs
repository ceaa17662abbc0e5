//! Validators and conditional requests (RFC 9110 §8.8 and §13) for files: the `ETag` a file
//! gets, and what `If-None-Match`, `If-Modified-Since` and `If-Range` decide.

use super::date::parse_http_date;

/// A file's strong entity tag, `"SIZE-MTIME"` in hex (nanoseconds included), as nginx builds
/// it from the same two facts: any write that changes either changes the tag.
pub fn file_etag(size: u64, mtime_secs: u64, mtime_nanos: u32) -> String {
    if mtime_nanos == 0 {
        format!("\"{mtime_secs:x}-{size:x}\"")
    } else {
        format!("\"{mtime_secs:x}.{mtime_nanos:x}-{size:x}\"")
    }
}

/// Whether a `GET` or `HEAD` with these headers is answered 304 Not Modified (§13.1.2,
/// §13.1.3, evaluated in the order of §13.2.2): `If-None-Match` when present (weak
/// comparison, `*` matches any), otherwise `If-Modified-Since` against the last modification
/// (whole seconds; an unparsable date is ignored).
pub fn not_modified(
    if_none_match: Option<&[u8]>,
    if_modified_since: Option<&[u8]>,
    etag: &str,
    modified_secs: u64,
) -> bool {
    if let Some(list) = if_none_match {
        return weakly_named(list, etag);
    }
    match if_modified_since.and_then(parse_http_date) {
        Some(since) => modified_secs <= since,
        None => false,
    }
}

/// Whether a `Range` is honoured given `If-Range` (§13.1.5): yes without `If-Range`; with an
/// entity tag, only when it matches strongly; with a date, only when it is exactly the last
/// modification. Anything else sends the whole representation.
pub fn range_applies(if_range: Option<&[u8]>, etag: &str, modified_secs: u64) -> bool {
    let Some(value) = if_range else {
        return true;
    };
    let value = value.trim_ascii();
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        return !value.starts_with(b"W/") && value == etag.as_bytes();
    }
    parse_http_date(value) == Some(modified_secs)
}

/// Whether an `If-None-Match` list (`*`, or entity tags separated by commas) names `etag`
/// under the weak comparison (`W/` ignored on both sides).
fn weakly_named(list: &[u8], etag: &str) -> bool {
    let list = list.trim_ascii();
    if list == b"*" {
        return true;
    }
    let ours = opaque(etag.as_bytes());
    list.split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .any(|tag| !tag.is_empty() && opaque(tag) == ours)
}

/// The opaque part of an entity tag: without `W/`.
fn opaque(tag: &[u8]) -> &[u8] {
    tag.strip_prefix(b"W/").unwrap_or(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETAG: &str = "\"5f5e100-400\"";
    /// Sun, 06 Nov 1994 08:49:37 GMT.
    const MODIFIED: u64 = 784_111_777;

    #[test]
    fn the_tag_changes_with_size_and_time() {
        assert_eq!(file_etag(1024, 100_000_000, 0), "\"5f5e100-400\"");
        assert_eq!(file_etag(1024, 100_000_000, 5), "\"5f5e100.5-400\"");
        assert_ne!(
            file_etag(1025, 100_000_000, 0),
            file_etag(1024, 100_000_000, 0)
        );
    }

    #[test]
    fn if_none_match_wins_over_if_modified_since() {
        let later = b"Mon, 07 Nov 1994 08:49:37 GMT".as_slice();
        assert!(not_modified(Some(ETAG.as_bytes()), None, ETAG, MODIFIED));
        assert!(not_modified(Some(b"*"), None, ETAG, MODIFIED));
        assert!(not_modified(
            Some(b"\"x\", W/\"5f5e100-400\""),
            None,
            ETAG,
            MODIFIED
        ));
        assert!(!not_modified(Some(b"\"x\""), Some(later), ETAG, MODIFIED));
        assert!(!not_modified(Some(b""), None, ETAG, MODIFIED));
    }

    #[test]
    fn if_modified_since_compares_whole_seconds() {
        let at = b"Sun, 06 Nov 1994 08:49:37 GMT".as_slice();
        let before = b"Sun, 06 Nov 1994 08:49:36 GMT".as_slice();
        assert!(not_modified(None, Some(at), ETAG, MODIFIED));
        assert!(!not_modified(None, Some(before), ETAG, MODIFIED));
        assert!(!not_modified(None, Some(b"garbage"), ETAG, MODIFIED));
        assert!(!not_modified(None, None, ETAG, MODIFIED));
    }

    #[test]
    fn if_range_needs_a_strong_match_or_the_exact_date() {
        assert!(range_applies(None, ETAG, MODIFIED));
        assert!(range_applies(Some(ETAG.as_bytes()), ETAG, MODIFIED));
        assert!(!range_applies(Some(b"W/\"5f5e100-400\""), ETAG, MODIFIED));
        assert!(!range_applies(Some(b"\"other\""), ETAG, MODIFIED));
        assert!(range_applies(
            Some(b"Sun, 06 Nov 1994 08:49:37 GMT"),
            ETAG,
            MODIFIED
        ));
        assert!(!range_applies(
            Some(b"Sun, 06 Nov 1994 08:49:38 GMT"),
            ETAG,
            MODIFIED
        ));
        assert!(!range_applies(Some(b"nonsense"), ETAG, MODIFIED));
    }
}
