//! The WebSocket frame header parser on any bytes, frame after frame: it never panics, an
//! accepted header is re-encoded to exactly the bytes it came from (lengths are always in
//! their shortest form), every shorter prefix waits for more, a refusal closes with 1002,
//! and unmasking a payload in two pieces equals the byte-at-a-time reference.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringstream_protocol::ws::frame::{MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use ringstream_protocol::ws::mask::apply_mask_bytewise;
use ringstream_protocol::ws::{FrameError, FrameHeader, apply_mask};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    loop {
        let answer = FrameHeader::parse(rest);
        check_prefixes(rest, answer);
        let (header, header_len) = match answer {
            Ok(Some(parsed)) => parsed,
            Ok(None) => {
                assert!(rest.len() < MAX_HEADER_LEN, "a header is at most 14 bytes");
                return;
            }
            Err(error) => {
                assert_eq!(error.close_code(), 1002);
                return;
            }
        };
        check_header(&header, &rest[..header_len]);
        let payload_len = usize::try_from(header.payload_len).unwrap_or(usize::MAX);
        let payload = &rest[header_len..];
        if let Some(key) = header.mask {
            let payload = &payload[..payload.len().min(payload_len)];
            check_unmasking(payload, key);
        }
        let Some(next) = payload.get(payload_len..) else {
            return;
        };
        rest = next;
    }
});

/// The parser answers `Ok(None)` for every prefix until the first one that answers, and
/// that answer stays: it depends on the bytes, not on how many have arrived.
fn check_prefixes(bytes: &[u8], whole: Result<Option<(FrameHeader, usize)>, FrameError>) {
    let longest = bytes.len().min(MAX_HEADER_LEN);
    let first = (0..=longest)
        .map(|len| FrameHeader::parse(&bytes[..len]))
        .find(|answer| *answer != Ok(None))
        .unwrap_or(Ok(None));
    assert_eq!(first, whole);
}

/// An accepted header encodes back to its own bytes, and the client rules agree with it.
fn check_header(header: &FrameHeader, bytes: &[u8]) {
    let mut encoded = Vec::new();
    header.write(&mut encoded);
    assert_eq!(encoded, bytes, "{header:?}");
    assert!(header.payload_len >> 63 == 0 && header.rsv < 8);
    match header.validate_client() {
        Ok(()) => {
            assert!(header.rsv == 0 && header.mask.is_some());
            if header.opcode.is_control() {
                assert!(header.fin && header.payload_len <= MAX_CONTROL_PAYLOAD);
            }
        }
        Err(error) => assert_eq!(error.close_code(), 1002),
    }
}

/// Unmasking in two pieces (at an offset the payload picks) equals the reference, and
/// masking twice gives the payload back.
fn check_unmasking(payload: &[u8], key: [u8; 4]) {
    let cut = payload
        .first()
        .map_or(0, |&b| usize::from(b))
        .min(payload.len());
    let mut reference = payload.to_vec();
    apply_mask_bytewise(&mut reference, key, 0);
    let mut pieces = payload.to_vec();
    let (head, tail) = pieces.split_at_mut(cut);
    apply_mask(head, key, 0);
    apply_mask(tail, key, cut);
    assert_eq!(pieces, reference);
    apply_mask(&mut pieces, key, 0);
    assert_eq!(pieces, payload);
}
