//! From a request path to a path inside a file route's root, or a refusal (answered 404):
//! the first line of defence against traversal. The engine then opens the result beneath
//! the root without following symlinks out of it.
//!
//! Each segment is percent-decoded once. A segment that decodes to `.` or `..`, contains a
//! `/`, `\` or NUL byte (encoded or not), or is not valid percent-encoding is refused; so is a
//! hidden name (starting with `.`) unless the route allows them. Empty segments (`a//b`) are
//! skipped, as nginx merges slashes.

use super::chunked::hex_value;

/// Why a request path names no file of the route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRefusal {
    /// The path is not below the route's prefix.
    OutsideRoute,
    /// `.` or `..` after decoding.
    DotSegment,
    /// `/` or `\` encoded inside a segment, a raw `\`, or a NUL byte.
    Separator,
    /// A `%` not followed by two hex digits.
    BadEncoding,
    /// A name starting with `.`, on a route that hides them.
    Hidden,
}

/// The path below the route's root that `request_path` (without its query) names, as
/// segments joined by `/` (empty: the root itself). `prefix` is the route's path; names
/// starting with `.` are refused unless `allow_hidden`.
pub fn file_path(
    request_path: &[u8],
    prefix: &[u8],
    allow_hidden: bool,
) -> Result<Vec<u8>, PathRefusal> {
    let below = request_path
        .strip_prefix(prefix)
        .ok_or(PathRefusal::OutsideRoute)?;
    // "/files" must not match "/filesystem": the prefix ends at a segment boundary.
    if !prefix.ends_with(b"/") && !below.is_empty() && !below.starts_with(b"/") {
        return Err(PathRefusal::OutsideRoute);
    }
    let mut out = Vec::with_capacity(below.len());
    for segment in below.split(|&b| b == b'/') {
        if segment.is_empty() {
            continue;
        }
        let name = decode_segment(segment)?;
        if name == b"." || name == b".." {
            return Err(PathRefusal::DotSegment);
        }
        if name.starts_with(b".") && !allow_hidden {
            return Err(PathRefusal::Hidden);
        }
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(&name);
    }
    Ok(out)
}

/// One percent-decoded segment; separators and NUL refused, encoded or not.
fn decode_segment(segment: &[u8]) -> Result<Vec<u8>, PathRefusal> {
    let name = percent_decode(segment).ok_or(PathRefusal::BadEncoding)?;
    if name.iter().any(|b| matches!(b, b'/' | b'\\' | 0)) {
        return Err(PathRefusal::Separator);
    }
    Ok(name)
}

/// `input` with each `%XX` replaced by its byte, decoded once; `None` for a `%` not followed
/// by two hex digits.
pub fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut bytes = input.iter();
    while let Some(&b) = bytes.next() {
        out.push(if b == b'%' {
            let high = hex_value(*bytes.next()?)?;
            let low = hex_value(*bytes.next()?)?;
            high << 4 | low
        } else {
            b
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn resolve(path: &str) -> Result<String, PathRefusal> {
        file_path(path.as_bytes(), b"/files", false)
            .map(|p| String::from_utf8(p).unwrap_or_default())
    }

    #[test]
    fn ordinary_paths_resolve_below_the_root() {
        assert_eq!(resolve("/files/a.txt"), Ok("a.txt".into()));
        assert_eq!(resolve("/files/dir/b%20c.bin"), Ok("dir/b c.bin".into()));
        assert_eq!(resolve("/files//dir///b"), Ok("dir/b".into()));
        assert_eq!(resolve("/files"), Ok(String::new()));
        assert_eq!(resolve("/files/"), Ok(String::new()));
        assert_eq!(resolve("/files/caf%C3%A9"), Ok("café".into()));
        assert_eq!(
            file_path(b"/files/a", b"/files/", false),
            Ok(b"a".to_vec()),
            "a prefix ending in / works too"
        );
    }

    #[test]
    fn traversal_in_every_spelling_is_refused() {
        use PathRefusal::*;
        for (path, why) in [
            ("/files/../etc/passwd", DotSegment),
            ("/files/a/../../etc/passwd", DotSegment),
            ("/files/%2e%2e/etc/passwd", DotSegment),
            ("/files/%2E%2E/etc/passwd", DotSegment),
            ("/files/.%2e/x", DotSegment),
            ("/files/./a", DotSegment),
            ("/files/..%2fetc%2fpasswd", Separator),
            ("/files/a%2f..%2f..%2fb", Separator),
            ("/files/..%5c..%5cwindows", Separator),
            ("/files/a\\b", Separator),
            ("/files/a%00.txt", Separator),
            ("/files/%2", BadEncoding),
            ("/files/%zz", BadEncoding),
            ("/files/.env", Hidden),
            ("/files/.git/config", Hidden),
            ("/filesystem/a", OutsideRoute),
            ("/other/a", OutsideRoute),
        ] {
            assert_eq!(resolve(path), Err(why), "{path}");
        }
        // Decoded once only: "%252e" is the name "%2e", never "." (a file may be named so).
        assert_eq!(resolve("/files/%252e%252e/x"), Ok("%2e%2e/x".into()));
    }

    #[test]
    fn hidden_names_are_served_when_the_route_allows_them() {
        assert_eq!(
            file_path(b"/files/.well-known/x", b"/files", true),
            Ok(b".well-known/x".to_vec())
        );
        assert_eq!(
            file_path(b"/files/../x", b"/files", true),
            Err(PathRefusal::DotSegment)
        );
    }

    proptest! {
        #[test]
        fn no_result_climbs_out_or_holds_a_separator(tail in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut path = b"/files/".to_vec();
            path.extend_from_slice(&tail);
            if let Ok(resolved) = file_path(&path, b"/files", true) {
                prop_assert!(!resolved.contains(&0) && !resolved.contains(&b'\\'));
                prop_assert!(!resolved.starts_with(b"/"));
                for segment in resolved.split(|&b| b == b'/').filter(|_| !resolved.is_empty()) {
                    prop_assert!(!segment.is_empty() && segment != b"." && segment != b"..");
                }
            }
        }
    }
}
