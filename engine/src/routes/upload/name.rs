//! From a request path below an upload route to the name the file is stored under.
//!
//! One path segment, percent-decoded once. Characters other than ASCII letters, digits,
//! `.`, `-` and `_` become `_`, and leading dots are dropped (no hidden or temporary
//! names); a segment that is empty, `.` or `..`, holds a `/` (encoded or not), or is longer
//! than 255 bytes names nothing (400).

use ringstream_protocol::http::percent_decode;

/// Longest stored name, in bytes (the usual file-system limit).
pub const MAX_NAME: usize = 255;

/// The stored name for `request_path` on a route with prefix `prefix`, if it names one.
pub fn upload_name(request_path: &str, prefix: &str) -> Option<String> {
    let segment = request_path.strip_prefix(prefix)?;
    let segment = segment.strip_prefix('/').unwrap_or(segment);
    if segment.is_empty() || segment.contains('/') {
        return None;
    }
    let decoded = percent_decode(segment.as_bytes())?;
    if decoded == b"." || decoded == b".." || decoded.contains(&b'/') || decoded.contains(&0) {
        return None;
    }
    let name: String = String::from_utf8_lossy(&decoded)
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => c,
            _ => '_',
        })
        .collect();
    let name = name.trim_start_matches('.');
    (!name.is_empty() && name.len() <= MAX_NAME).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_sanitized_segment() {
        let name = |path: &str| upload_name(path, "/upload/");
        assert_eq!(name("/upload/report.pdf").as_deref(), Some("report.pdf"));
        assert_eq!(name("/upload/a%20b%C3%A9.txt").as_deref(), Some("a_b_.txt"));
        assert_eq!(name("/upload/.env").as_deref(), Some("env"));
        assert_eq!(name("/upload/...x").as_deref(), Some("x"));
        for bad in [
            "/upload/",
            "/upload/a/b",
            "/upload/..",
            "/upload/%2e%2e",
            "/upload/.",
            "/upload/a%2fb",
            "/upload/%00",
            "/upload/%zz",
            "/other/x",
            "/upload/...",
        ] {
            assert_eq!(name(bad), None, "{bad}");
        }
        assert_eq!(name(&format!("/upload/{}", "x".repeat(256))), None);
    }
}
