//! What a request on a files route asks for, kept once the head's bytes are released.

use ringstream_protocol::http::{PathRefusal, Request, file_path, percent_decode};

use crate::config::{FilesConfig, Route};

/// The parts of a request head a file answer depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRequest {
    /// The path below the root (segments joined by `/`), or why there is none (404).
    pub path: Result<Vec<u8>, PathRefusal>,
    /// `Range`.
    pub range: Option<Vec<u8>>,
    /// `If-Range`.
    pub if_range: Option<Vec<u8>>,
    /// `If-None-Match`.
    pub if_none_match: Option<Vec<u8>>,
    /// `If-Modified-Since`.
    pub if_modified_since: Option<Vec<u8>>,
    /// `?download=NAME`, percent-decoded: send as an attachment under this name.
    pub download: Option<String>,
}

impl FileRequest {
    /// Captures what `request` asks of the files route `route`.
    pub fn capture(request: &Request<'_, '_>, route: &Route, files: &FilesConfig) -> Self {
        let owned = |name: &str| request.header(name).map(<[u8]>::to_vec);
        Self {
            path: file_path(
                request.path().as_bytes(),
                route.path.as_bytes(),
                files.allow_hidden,
            ),
            range: owned("range"),
            if_range: owned("if-range"),
            if_none_match: owned("if-none-match"),
            if_modified_since: owned("if-modified-since"),
            download: request.query().and_then(download_name),
        }
    }
}

/// The value of `download` in a query string, percent-decoded (`+` is a space), if it is a
/// usable file name: not empty, no `/`, `\` or control characters, valid UTF-8.
fn download_name(query: &str) -> Option<String> {
    let raw = query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == "download").then_some(value)
    })?;
    // In a query `+` is a space; `%2B` is the plus sign.
    let spaced: Vec<u8> = raw
        .bytes()
        .map(|b| if b == b'+' { b' ' } else { b })
        .collect();
    let name = String::from_utf8(percent_decode(&spaced)?).ok()?;
    let usable = !name.is_empty()
        && name.len() <= 255
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control());
    usable.then_some(name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn download_names_are_decoded_and_checked() {
        assert_eq!(
            download_name("download=report.pdf").as_deref(),
            Some("report.pdf")
        );
        assert_eq!(
            download_name("x=1&download=r%C3%A9sum%C3%A9+final.txt").as_deref(),
            Some("résumé final.txt")
        );
        for bad in [
            "download=",
            "download=a%2Fb",
            "download=%0a",
            "download=%zz",
            "downloads=x",
            "download=%FF",
        ] {
            assert_eq!(download_name(bad), None, "{bad}");
        }
    }
}
