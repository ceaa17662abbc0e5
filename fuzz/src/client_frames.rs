//! Client frames built from fuzzer bytes, so the session targets spend their time past the
//! header checks: in fragments, UTF-8 and close payloads.
//!
//! The input is a list of records `flags, length, payload`:
//!
//! - flags bit 7: FIN; bit 6: leave the frame unmasked; bit 5: set RSV1; bit 4: the length
//!   takes two bytes (big-endian) instead of one; bits 0-3: the opcode, reserved ones
//!   included.
//! - the payload is the next `length` bytes, cut short where the input ends; it is masked
//!   here, with a key that changes from frame to frame.
//!
//! Lengths are written in their shortest form, as a conforming client would.

use std::borrow::Cow;

/// The frame stream of a session target's input, after its control byte: the bytes as they
/// are when bit 0 of `control` is clear, else the frames they describe as records.
pub fn frame_stream(control: u8, input: &[u8]) -> Cow<'_, [u8]> {
    if control & 1 == 0 {
        Cow::Borrowed(input)
    } else {
        Cow::Owned(client_frames(input))
    }
}

/// The wire bytes of the frames `records` describe.
pub fn client_frames(records: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len() * 2);
    let mut rest = records;
    let mut index: u8 = 0;
    while let [flags, tail @ ..] = rest {
        let (len, tail) = match (flags & 0x10 != 0, tail) {
            (true, [hi, lo, tail @ ..]) => (usize::from(u16::from_be_bytes([*hi, *lo])), tail),
            (false, [len, tail @ ..]) => (usize::from(*len), tail),
            _ => (0, &[][..]),
        };
        let (payload, tail) = tail.split_at(len.min(tail.len()));
        let masked = flags & 0x40 == 0;
        let key = [0x37 ^ index, 0xfa, 0x21, 0x3d ^ index.rotate_left(3)];
        out.push((flags & 0x80) | ((flags & 0x20) << 1) | (flags & 0x0f));
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload.len() {
            // The shortest length encoding (RFC 6455 §5.2); `n` fits in the form chosen.
            n @ 0..=125 => out.push(mask_bit | n as u8),
            n @ 126..=0xffff => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            out.extend_from_slice(&key);
            out.extend(payload.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
        } else {
            out.extend_from_slice(payload);
        }
        rest = tail;
        index = index.wrapping_add(1);
    }
    out
}
