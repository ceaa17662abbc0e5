//! Messages compressed afresh (no window kept from the message before), with one compressor
//! per worker and window size: a topic's messages for the members that agreed
//! permessage-deflate, once per delivery and parameter set, never once per member; and the
//! echo route's replies on connections where the server keeps no context. Resetting a
//! compressor costs 3 µs where making one costs 15 (`cargo bench --bench ws_codec --
//! permessage_deflate`), and an idle connection holds none.
//!
//! What the server compresses depends only on its window (`server_max_window_bits`, 9 to 15)
//! and the level, since every broadcast message is compressed afresh, with no window kept from
//! the one before. A fresh message is valid whether or not the member agreed that the server
//! keeps its context: it refers to nothing earlier, and the broadcast route sends that member
//! no other compressed message. So a delivery keeps at most seven compressed frames, one per
//! window size present among its members, each made the first time a member needs it.
//!
//! A message that compression would not shrink (short or already compressed payloads) goes
//! out as it is: RFC 7692 lets the server decide message by message.

use bytes::{BufMut, Bytes, BytesMut};
use ringstream_protocol::ws::deflate::{DeflateParams, Deflater};
use ringstream_protocol::ws::frame::MAX_HEADER_LEN;
use ringstream_protocol::ws::{FrameHeader, OpCode};

use crate::config::DEFLATE_LEVEL;

/// The window sizes RFC 7692 allows the server (9 to 15 bits).
const WINDOWS: usize = 7;
const MIN_WINDOW_BITS: u8 = 9;
/// A scratch buffer larger than this is given back after its message.
const KEEP_SCRATCH: usize = 64 * 1024;

/// One worker's compressors, one per window size in use, kept between messages (a compressor
/// is reset between messages, not made anew).
#[derive(Debug, Default)]
pub struct FreshCompressors {
    deflaters: [Option<Box<Deflater>>; WINDOWS],
    scratch: Vec<u8>,
}

/// The frames of one delivery: the plain one, and the compressed ones made so far.
#[derive(Debug)]
pub struct FrameVariants<'a> {
    plain: &'a Bytes,
    compressed: [Option<Bytes>; WINDOWS],
}

impl<'a> FrameVariants<'a> {
    /// The variants of `plain`, a whole server frame as [`super::encode_frame`] makes it.
    pub fn new(plain: &'a Bytes) -> Self {
        Self {
            plain,
            compressed: Default::default(),
        }
    }

    /// The frame for a member that agreed a server window of `window_bits` (`None`: the
    /// member did not agree permessage-deflate), compressed by `compressors` on first need.
    pub fn for_member(
        &mut self,
        window_bits: Option<u8>,
        compressors: &mut FreshCompressors,
    ) -> Bytes {
        let Some(bits) = window_bits else {
            return self.plain.clone();
        };
        let slot = slot(bits);
        self.compressed[slot]
            .get_or_insert_with(|| compressors.compress(self.plain, slot))
            .clone()
    }
}

/// The slot of a server window of `window_bits`.
fn slot(window_bits: u8) -> usize {
    usize::from(window_bits.clamp(MIN_WINDOW_BITS, 15) - MIN_WINDOW_BITS)
}

impl FreshCompressors {
    /// Appends to `out` one data frame (`opcode`, RSV1 set) carrying `message` compressed
    /// afresh with a window of `window_bits`.
    pub fn write_frame(
        &mut self,
        window_bits: u8,
        opcode: OpCode,
        message: &[u8],
        out: &mut Vec<u8>,
    ) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        self.deflater(slot(window_bits))
            .compress(message, &mut scratch);
        write_compressed_frame(opcode, &scratch, out);
        self.keep_scratch(scratch);
    }

    /// Keeps `scratch` for the next message unless it grew past [`KEEP_SCRATCH`].
    fn keep_scratch(&mut self, scratch: Vec<u8>) {
        if scratch.capacity() <= KEEP_SCRATCH {
            self.scratch = scratch;
        }
    }

    fn deflater(&mut self, slot: usize) -> &mut Deflater {
        self.deflaters[slot].get_or_insert_with(|| {
            let params = DeflateParams {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: MIN_WINDOW_BITS + slot as u8,
                client_max_window_bits: 15,
            };
            Box::new(Deflater::new(&params, DEFLATE_LEVEL))
        })
    }

    /// `plain` compressed with the window of `slot`, or `plain` itself when compressing does
    /// not make it shorter (or it is not a whole data frame).
    fn compress(&mut self, plain: &Bytes, slot: usize) -> Bytes {
        let Ok(Some((header, header_len))) = FrameHeader::parse(plain) else {
            return plain.clone();
        };
        if !header.fin || header.rsv != 0 || !header.opcode.is_data() {
            return plain.clone();
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        self.deflater(slot)
            .compress(&plain[header_len..], &mut scratch);
        let mut encoded = [0u8; MAX_HEADER_LEN];
        let encoded_len = FrameHeader {
            rsv: 0b100,
            payload_len: scratch.len() as u64,
            ..header
        }
        .encode(&mut encoded);
        let frame = if encoded_len + scratch.len() < plain.len() {
            let mut frame = BytesMut::with_capacity(encoded_len + scratch.len());
            frame.put_slice(&encoded[..encoded_len]);
            frame.put_slice(&scratch);
            frame.freeze()
        } else {
            plain.clone()
        };
        self.keep_scratch(scratch);
        frame
    }
}

/// Appends a server data frame (`opcode`, RSV1 set) carrying the compressed `payload`.
pub fn write_compressed_frame(opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    FrameHeader {
        fin: true,
        rsv: 0b100,
        opcode,
        mask: None,
        payload_len: payload.len() as u64,
    }
    .write(out);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::routes::broadcast::encode_frame;
    use ringstream_protocol::ws::deflate::Inflater;

    fn inflate(frame: &Bytes, bits: u8) -> (FrameHeader, Vec<u8>) {
        let (header, len) = FrameHeader::parse(frame).unwrap().unwrap();
        let params = DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 15,
            // The client's side: it inflates what the server compressed.
            client_max_window_bits: bits,
        };
        let mut out = Vec::new();
        Inflater::new(&params)
            .inflate(&frame[len..], 1 << 20, &mut out)
            .unwrap();
        (header, out)
    }

    #[test]
    fn each_window_size_is_compressed_once_and_shared_by_its_members() {
        let text = "{\"price\": 101.25, \"symbol\": \"RING\"} ".repeat(40);
        let plain = encode_frame(true, text.as_bytes());
        let mut compressors = FreshCompressors::default();
        let mut variants = FrameVariants::new(&plain);
        let a = variants.for_member(Some(15), &mut compressors);
        let b = variants.for_member(Some(15), &mut compressors);
        let small_window = variants.for_member(Some(9), &mut compressors);
        assert_eq!(a.as_ptr(), b.as_ptr(), "one compression for both members");
        assert_ne!(a.as_ptr(), small_window.as_ptr());
        assert!(a.len() < plain.len() / 4, "{} of {}", a.len(), plain.len());
        for (frame, bits) in [(&a, 15), (&small_window, 9)] {
            let (header, inflated) = inflate(frame, bits);
            assert_eq!((header.rsv, header.opcode), (0b100, OpCode::Text));
            assert_eq!(inflated, text.as_bytes());
        }
        let unagreed = variants.for_member(None, &mut compressors);
        assert_eq!(unagreed.as_ptr(), plain.as_ptr());
        // The next delivery starts afresh with the same compressor.
        let again = encode_frame(true, text.as_bytes());
        let next = FrameVariants::new(&again).for_member(Some(15), &mut compressors);
        assert_eq!(&next[..], &a[..]);
    }

    #[test]
    fn a_message_compression_would_not_shrink_goes_out_plain() {
        let mut compressors = FreshCompressors::default();
        for payload in [&b""[..], b"hi", &[0x8f, 0x13, 0x77, 0x02, 0xe1, 0x5c, 0x3a]] {
            let plain = encode_frame(false, payload);
            let frame = FrameVariants::new(&plain).for_member(Some(15), &mut compressors);
            assert_eq!(frame.as_ptr(), plain.as_ptr(), "{payload:?}");
        }
    }
}
