//! File-path resolution and percent-decoding on any request path. A resolved path never holds
//! `..` or `.` as a segment, a NUL, a `\`, an empty segment, or a leading `/`; each of its
//! segments is exactly one non-empty segment of the request path decoded once (so no `/` came
//! through `%2f`); hidden names appear only when the route allows them; and joined to a root
//! it stays beneath it. `percent_decode` agrees with a plain reference and undoes encoding.
//!
//! Input: the first byte picks the route (bit 0: hidden names allowed; bits 1-2: the prefix),
//! the rest is the request path.
#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use ringstream_protocol::http::{PathRefusal, file_path, percent_decode};

const PREFIXES: [&[u8]; 4] = [b"/files", b"/files/", b"/", b"/d"];

fuzz_target!(|data: &[u8]| {
    let Some((&control, request_path)) = data.split_first() else {
        return;
    };
    let allow_hidden = control & 1 != 0;
    let prefix = PREFIXES[usize::from(control >> 1 & 3)];
    check_decoding(request_path);
    match file_path(request_path, prefix, allow_hidden) {
        Ok(resolved) => check_resolved(&resolved, request_path, prefix, allow_hidden),
        Err(refusal) => {
            if !request_path.starts_with(prefix) {
                assert_eq!(refusal, PathRefusal::OutsideRoute);
            }
        }
    }
});

fn check_resolved(resolved: &[u8], request_path: &[u8], prefix: &[u8], allow_hidden: bool) {
    assert!(!resolved.contains(&0) && !resolved.contains(&b'\\'));
    assert!(!resolved.starts_with(b"/") && !resolved.ends_with(b"/"));
    let below = &request_path[prefix.len()..];
    assert!(prefix.ends_with(b"/") || below.is_empty() || below.starts_with(b"/"));
    let raw: Vec<&[u8]> = below
        .split(|&b| b == b'/')
        .filter(|s| !s.is_empty())
        .collect();
    let segments: Vec<&[u8]> = if resolved.is_empty() {
        Vec::new()
    } else {
        resolved.split(|&b| b == b'/').collect()
    };
    assert_eq!(segments.len(), raw.len(), "one segment per request segment");
    for (segment, raw) in segments.iter().zip(&raw) {
        assert!(!segment.is_empty() && *segment != b"." && *segment != b"..");
        assert!(allow_hidden || !segment.starts_with(b"."));
        assert_eq!(Some(segment.to_vec()), percent_decode(raw), "decoded once");
    }
    let relative = Path::new(OsStr::from_bytes(resolved));
    assert!(
        relative
            .components()
            .all(|c| matches!(c, Component::Normal(_))),
        "{relative:?}"
    );
    let root = Path::new("/srv/root");
    assert!(root.join(relative).starts_with(root));
}

/// `percent_decode` against a byte-at-a-time reference, and encoding then decoding.
fn check_decoding(input: &[u8]) {
    assert_eq!(percent_decode(input), reference_decode(input));
    let encoded: String = input.iter().map(|b| format!("%{b:02X}")).collect();
    assert_eq!(percent_decode(encoded.as_bytes()).as_deref(), Some(input));
    let lower = encoded.to_ascii_lowercase();
    assert_eq!(percent_decode(lower.as_bytes()).as_deref(), Some(input));
}

/// RFC 3986 §2.1: `pct-encoded = "%" HEXDIG HEXDIG`; anything else is itself.
fn reference_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            let hex = input.get(i + 1..i + 3)?;
            let text = std::str::from_utf8(hex).ok()?;
            if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(text, 16).ok()?);
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    Some(out)
}
