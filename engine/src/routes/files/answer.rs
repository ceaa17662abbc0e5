//! Deciding a file response (RFC 9110 §13.2.2 order: validators, then `Range`) and writing
//! its head. No I/O: the file's size and modification time come in.

use std::ops::Range;

use ringstream_protocol::http::{
    HttpDate, RangeAnswer, attachment, content_range, file_etag, not_modified, parse_range,
    range_applies, unsatisfied_range, write_response_head,
};

use super::request::FileRequest;

/// What the file is, as far as the answer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFacts {
    /// Its size in bytes.
    pub size: u64,
    /// Last modification, whole seconds since the epoch.
    pub mtime_secs: u64,
    /// The nanoseconds of the last modification (in the entity tag only).
    pub mtime_nanos: u32,
}

/// The status and, for 200 and 206, the bytes to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// 304: the client's copy is current.
    NotModified,
    /// 200 (`Range` absent, unusable, or overridden by `If-Range`) or 206 with one range.
    Send {
        /// 206 when true.
        partial: bool,
        /// The bytes of the file to send.
        range: Range<u64>,
    },
    /// 416 with `Content-Range: bytes */SIZE`.
    Unsatisfiable,
}

/// Decides the answer to `request` for a file with `facts`; at most `max_ranges` ranges are
/// honoured (more, or several when only one may be sent, get the whole file).
pub fn decide(request: &FileRequest, facts: FileFacts, max_ranges: usize) -> Decision {
    let etag = file_etag(facts.size, facts.mtime_secs, facts.mtime_nanos);
    if not_modified(
        request.if_none_match.as_deref(),
        request.if_modified_since.as_deref(),
        &etag,
        facts.mtime_secs,
    ) {
        return Decision::NotModified;
    }
    let whole = Decision::Send {
        partial: false,
        range: 0..facts.size,
    };
    let Some(range) = &request.range else {
        return whole;
    };
    if !range_applies(request.if_range.as_deref(), &etag, facts.mtime_secs) {
        return whole;
    }
    match parse_range(range, facts.size, max_ranges) {
        RangeAnswer::Partial(ranges) if ranges.len() == 1 => Decision::Send {
            partial: true,
            range: ranges[0].clone(),
        },
        RangeAnswer::Partial(_) | RangeAnswer::Full => whole,
        RangeAnswer::Unsatisfiable => Decision::Unsatisfiable,
    }
}

/// How the head is written.
#[derive(Debug)]
pub struct HeadParts<'a> {
    /// `Content-Type`.
    pub content_type: &'a str,
    /// The name for `Content-Disposition: attachment`, if the file is sent as one.
    pub attachment: Option<&'a str>,
    /// Whether the response ends the connection.
    pub close: bool,
}

/// Appends the head of `decision` for a file with `facts`.
pub fn write_head(
    out: &mut Vec<u8>,
    decision: &Decision,
    facts: FileFacts,
    parts: &HeadParts<'_>,
    date: &HttpDate,
) {
    let etag = file_etag(facts.size, facts.mtime_secs, facts.mtime_nanos);
    let modified = HttpDate::from_unix_secs(facts.mtime_secs);
    let disposition = parts.attachment.map(attachment);
    let mut headers: Vec<(&str, &[u8])> = vec![
        ("ETag", etag.as_bytes()),
        ("Last-Modified", modified.as_bytes()),
        ("Accept-Ranges", b"bytes"),
    ];
    match decision {
        Decision::NotModified => {
            write_response_head(out, 304, date, &headers, None, parts.close);
        }
        Decision::Unsatisfiable => {
            let range = unsatisfied_range(facts.size);
            headers.push(("Content-Range", range.as_bytes()));
            headers.push(("Content-Type", b"text/plain; charset=utf-8"));
            let body = b"416 Range Not Satisfiable\n";
            write_response_head(
                out,
                416,
                date,
                &headers,
                Some(body.len() as u64),
                parts.close,
            );
            out.extend_from_slice(body);
        }
        Decision::Send { partial, range } => {
            let content_range = partial.then(|| content_range(range, facts.size));
            headers.push(("Content-Type", parts.content_type.as_bytes()));
            if let Some(value) = &content_range {
                headers.push(("Content-Range", value.as_bytes()));
            }
            if let Some(value) = &disposition {
                headers.push(("Content-Disposition", value.as_bytes()));
            }
            let status = if *partial { 206 } else { 200 };
            let len = range.end - range.start;
            write_response_head(out, status, date, &headers, Some(len), parts.close);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    const FACTS: FileFacts = FileFacts {
        size: 1000,
        mtime_secs: 784_111_777,
        mtime_nanos: 0,
    };

    fn request(range: Option<&str>) -> FileRequest {
        FileRequest {
            path: Ok(b"a".to_vec()),
            range: range.map(|r| r.as_bytes().to_vec()),
            if_range: None,
            if_none_match: None,
            if_modified_since: None,
            download: None,
        }
    }

    #[test]
    fn ranges_validators_and_if_range() {
        let etag = file_etag(FACTS.size, FACTS.mtime_secs, 0);
        assert_eq!(
            decide(&request(None), FACTS, 1),
            Decision::Send {
                partial: false,
                range: 0..1000
            }
        );
        assert_eq!(
            decide(&request(Some("bytes=10-19")), FACTS, 1),
            Decision::Send {
                partial: true,
                range: 10..20
            }
        );
        assert_eq!(
            decide(&request(Some("bytes=-100")), FACTS, 1),
            Decision::Send {
                partial: true,
                range: 900..1000
            }
        );
        assert_eq!(
            decide(&request(Some("bytes=1000-")), FACTS, 1),
            Decision::Unsatisfiable
        );
        // Two ranges where one may be sent: the whole file.
        assert_eq!(
            decide(&request(Some("bytes=0-1,5-6")), FACTS, 1),
            Decision::Send {
                partial: false,
                range: 0..1000
            }
        );
        let mut stale = request(Some("bytes=0-9"));
        stale.if_range = Some(b"\"other\"".to_vec());
        assert_eq!(
            decide(&stale, FACTS, 1),
            Decision::Send {
                partial: false,
                range: 0..1000
            }
        );
        stale.if_range = Some(etag.clone().into_bytes());
        assert_eq!(
            decide(&stale, FACTS, 1),
            Decision::Send {
                partial: true,
                range: 0..10
            }
        );
        let mut cached = request(Some("bytes=0-9"));
        cached.if_none_match = Some(etag.into_bytes());
        assert_eq!(decide(&cached, FACTS, 1), Decision::NotModified);
        let mut by_date = request(None);
        by_date.if_modified_since = Some(b"Sun, 06 Nov 1994 08:49:37 GMT".to_vec());
        assert_eq!(decide(&by_date, FACTS, 1), Decision::NotModified);
    }

    #[test]
    fn heads_carry_the_validators_and_the_range() {
        let date = HttpDate::from_unix_secs(0);
        let parts = HeadParts {
            content_type: "application/pdf",
            attachment: Some("r.pdf"),
            close: false,
        };
        let mut out = Vec::new();
        write_head(
            &mut out,
            &Decision::Send {
                partial: true,
                range: 10..20,
            },
            FACTS,
            &parts,
            &date,
        );
        let head = String::from_utf8(out).unwrap();
        assert!(
            head.starts_with("HTTP/1.1 206 Partial Content\r\n"),
            "{head}"
        );
        for line in [
            "Content-Range: bytes 10-19/1000\r\n",
            "Content-Length: 10\r\n",
            "Accept-Ranges: bytes\r\n",
            "Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n",
            "Content-Type: application/pdf\r\n",
            "Content-Disposition: attachment; filename=\"r.pdf\"",
        ] {
            assert!(head.contains(line), "{line} in {head}");
        }
        let mut out = Vec::new();
        write_head(&mut out, &Decision::NotModified, FACTS, &parts, &date);
        let head = String::from_utf8(out).unwrap();
        assert!(head.starts_with("HTTP/1.1 304 Not Modified\r\n"));
        assert!(!head.contains("Content-Length"));
        let mut out = Vec::new();
        write_head(&mut out, &Decision::Unsatisfiable, FACTS, &parts, &date);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("Content-Range: bytes */1000\r\n")
        );
    }
}
