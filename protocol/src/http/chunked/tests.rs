use crate::http::body::tests::feed;
use crate::http::{BodyDecoder, BodyError, BodyKind};

use super::*;

fn decode(bytes: &[u8], max_body: u64) -> Result<Vec<u8>, BodyError> {
    let mut decoder = BodyDecoder::new(BodyKind::Chunked, max_body);
    feed(&mut decoder, &[bytes]).map(|fed| fed.body)
}

fn refusal(bytes: &[u8]) -> BodyError {
    match decode(bytes, 1 << 20) {
        Err(e) => e,
        Ok(body) => panic!("{bytes:?} decoded to {body:?}"),
    }
}

#[test]
fn bad_chunk_sizes() {
    for bytes in [
        &b"g\r\n"[..],
        b"\r\n",
        b";ext\r\n",
        b" 4\r\n",
        b"4x\r\n",
        b"4 x\r\n",
        b"-4\r\n",
        b"+4\r\n",
        b"0x4\r\n",
        b"4 4\r\n",
        // 17 hex digits overflow u64.
        b"10000000000000000\r\n",
        b"ffffffffffffffff0\r\n",
    ] {
        assert_eq!(refusal(bytes), BodyError::InvalidChunkSize, "{bytes:?}");
        assert_eq!(refusal(bytes).status(), 400);
    }
}

#[test]
fn largest_chunk_size_is_checked_against_the_cap() {
    let mut decoder = BodyDecoder::new(BodyKind::Chunked, u64::MAX);
    let fed = feed(&mut decoder, &[b"ffffffffffffffff\r\nabc"]).expect("fits u64");
    assert_eq!(fed.body, b"abc");
    assert!(!fed.done);
    assert_eq!(refusal(b"ffffffffffffffff\r\n"), BodyError::TooLarge);
}

#[test]
fn missing_crlf() {
    for bytes in [
        &b"4\nWiki\r\n0\r\n\r\n"[..],
        b"4\rWiki",
        b"4\r\nWikiX\r\n",
        b"4\r\nWiki\n0\r\n\r\n",
        b"4\r\nWiki\rX",
        b"0\r\n\rX",
        b"0\r\nA: b\r\n\rX",
    ] {
        assert_eq!(refusal(bytes), BodyError::MissingCrlf, "{bytes:?}");
    }
}

#[test]
fn bad_extensions() {
    for bytes in [
        &b"4;a\nb\r\n"[..],
        b"4;a\x00\r\n",
        b"4;\x7f\r\n",
        b"4 ;a\x1b\r\n",
    ] {
        assert_eq!(
            refusal(bytes),
            BodyError::InvalidChunkExtension,
            "{bytes:?}"
        );
    }
}

#[test]
fn chunk_line_length_is_capped() {
    let line = |extension_len: usize| {
        let mut bytes = b"1;".to_vec();
        bytes.resize(2 + extension_len, b'a');
        bytes.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        bytes
    };
    assert_eq!(
        decode(&line(MAX_CHUNK_LINE_BYTES - 2), 10),
        Ok(b"x".to_vec())
    );
    assert_eq!(
        refusal(&line(MAX_CHUNK_LINE_BYTES - 1)),
        BodyError::ChunkLineTooLong
    );
    assert_eq!(BodyError::ChunkLineTooLong.status(), 400);
    // Endless leading zeros are a long line too.
    assert_eq!(
        refusal(&[b'0'; MAX_CHUNK_LINE_BYTES + 1]),
        BodyError::ChunkLineTooLong
    );
    // The cap is per line.
    let mut two = line(MAX_CHUNK_LINE_BYTES - 2);
    two.truncate(two.len() - 5);
    two.extend_from_slice(&line(MAX_CHUNK_LINE_BYTES - 2));
    assert_eq!(decode(&two, 10), Ok(b"xx".to_vec()));
}

#[test]
fn bad_trailers() {
    for bytes in [
        &b"0\r\nA: b\r\n c\r\n\r\n"[..],
        b"0\r\n\tA: b\r\n\r\n",
        b"0\r\nA: b\n\r\n",
        b"0\r\nA: b\rc\r\n\r\n",
        b"0\r\nA: \x00\r\n\r\n",
        b"0\r\n\n",
    ] {
        assert_eq!(refusal(bytes), BodyError::InvalidTrailer, "{bytes:?}");
    }
}

#[test]
fn trailer_section_is_capped() {
    let trailers = |value_len: usize| {
        let mut bytes = b"0\r\nX: ".to_vec();
        bytes.resize(6 + value_len, b'v');
        bytes.extend_from_slice(b"\r\n\r\n");
        bytes
    };
    // The section counts from "X" to the final CRLF: 3 + value + 4 bytes.
    assert_eq!(decode(&trailers(MAX_TRAILER_BYTES - 7), 0), Ok(Vec::new()));
    let refused = refusal(&trailers(MAX_TRAILER_BYTES - 6));
    assert_eq!(refused, BodyError::TrailerTooLarge);
    assert_eq!(refused.status(), 431);
}

#[test]
fn total_is_refused_when_announced() {
    // 4 + 5 > 8: refused at the second size line, before its data arrives.
    assert_eq!(decode(b"4\r\nWiki\r\n5\r\n", 8), Err(BodyError::TooLarge));
    assert_eq!(
        decode(b"4\r\nWiki\r\n4\r\nWiki\r\n0\r\n\r\n", 8),
        Ok(b"WikiWiki".to_vec())
    );
    assert_eq!(BodyError::TooLarge.status(), 413);
}

#[test]
fn hex_digits() {
    let digits: Vec<Option<u8>> = b"09afAFgG/:`@".iter().map(|&b| hex_value(b)).collect();
    assert_eq!(
        digits,
        [
            Some(0),
            Some(9),
            Some(10),
            Some(15),
            Some(10),
            Some(15),
            None,
            None,
            None,
            None,
            None,
            None
        ]
    );
}
