//! Compressing and decompressing messages (RFC 7692 §7.2): raw DEFLATE, each message ended by
//! a sync flush whose last four bytes (`00 00 ff ff`) are left off on the wire and put back
//! before inflating.
//!
//! Inflation is capped: [`Inflater::inflate`] never holds more than the cap plus one byte of
//! output, and stops as soon as the message would pass it (a 10 MiB message of zeros is about
//! 10 KiB deflated: without the cap it would allocate 10 MiB).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::offer::DeflateParams;

/// The bytes a sync flush ends with, left off on the wire.
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Why a compressed message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates past the cap (close 1009).
    TooBig,
    /// It is not valid DEFLATE (close 1007).
    Corrupt,
}

/// The server's compressor of one connection (or of one parameter set, for broadcast).
#[derive(Debug)]
pub struct Deflater {
    compress: Compress,
    reset_each_message: bool,
}

impl Deflater {
    /// A compressor for `params`' server side, at `level` (0 to 9).
    pub fn new(params: &DeflateParams, level: u32) -> Self {
        Self {
            compress: Compress::new_with_window_bits(
                Compression::new(level.min(9)),
                false,
                params.server_max_window_bits,
            ),
            reset_each_message: params.server_no_context_takeover,
        }
    }

    /// Appends `message`, compressed as one permessage-deflate message, to `out`.
    pub fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) {
        if message.is_empty() {
            // An empty stored block, its four last bytes left off (§7.2.3.6): zlib emits
            // nothing for a flush without new input. The stream is byte-aligned after every
            // message's flush, so the block is this one byte.
            out.push(0x00);
            return;
        }
        let start_in = self.compress.total_in();
        let consumed = |c: &Compress| usize::try_from(c.total_in() - start_in).unwrap_or(0);
        loop {
            out.reserve(((message.len() - consumed(&self.compress)) / 2).max(64));
            let room = out.capacity() - out.len();
            let before_out = self.compress.total_out();
            // A sync flush into memory cannot fail: only a misuse of the stream would.
            let _ = self.compress.compress_vec(
                &message[consumed(&self.compress)..],
                out,
                FlushCompress::Sync,
            );
            let produced = usize::try_from(self.compress.total_out() - before_out).unwrap_or(0);
            // The flush is complete once all the input is in and the output did not fill up.
            if consumed(&self.compress) == message.len() && produced < room {
                break;
            }
        }
        if out.ends_with(&TRAILER) {
            out.truncate(out.len() - TRAILER.len());
        }
        if self.reset_each_message {
            self.compress.reset();
        }
    }
}

/// The server's decompressor of one connection's messages.
#[derive(Debug)]
pub struct Inflater {
    decompress: Decompress,
    reset_each_message: bool,
    /// The last message ended the client's DEFLATE stream.
    stream_ended: bool,
}

impl Inflater {
    /// A decompressor for `params`' client side.
    pub fn new(params: &DeflateParams) -> Self {
        // A client told 8 bits may still compress with 9 (zlib raises 8 to 9).
        let bits = params.client_max_window_bits.max(9);
        Self {
            decompress: Decompress::new_with_window_bits(false, bits),
            reset_each_message: params.client_no_context_takeover,
            stream_ended: false,
        }
    }

    /// Appends the message whose compressed payload (every frame's, in order) is `compressed`
    /// to `out`, or refuses it as soon as it inflates past `max` bytes.
    pub fn inflate(
        &mut self,
        compressed: &[u8],
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        if compressed.is_empty() {
            // Nothing to inflate: the trailer alone would leave the stream mid-block.
            return Ok(());
        }
        let start = out.len();
        let result = self
            .feed(compressed, max, start, out)
            .and_then(|()| self.feed(&TRAILER, max, start, out));
        if self.reset_each_message || result.is_err() || self.stream_ended {
            self.decompress.reset(false);
            self.stream_ended = false;
        }
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn feed(
        &mut self,
        mut input: &[u8],
        max: usize,
        start: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        loop {
            let written = out.len() - start;
            // Room for at most one byte past the cap (enough to know it was passed), growing
            // with what came out so far.
            let room = (max + 1 - written).min(written.max(input.len() * 4).max(1024));
            out.reserve_exact(room);
            out.resize(start + written + room, 0);
            let (before_in, before_out) = (self.decompress.total_in(), self.decompress.total_out());
            let status = self.decompress.decompress(
                input,
                &mut out[start + written..],
                FlushDecompress::Sync,
            );
            let used = usize::try_from(self.decompress.total_in() - before_in).unwrap_or(0);
            let produced = usize::try_from(self.decompress.total_out() - before_out).unwrap_or(0);
            out.truncate(start + written + produced);
            let status = status.map_err(|_| InflateError::Corrupt)?;
            input = &input[used..];
            if written + produced > max {
                return Err(InflateError::TooBig);
            }
            match status {
                Status::StreamEnd => {
                    // The client ended its stream (a final block): its next message starts a
                    // new one.
                    self.stream_ended = true;
                    return Ok(());
                }
                _ if input.is_empty() && produced < room => return Ok(()),
                _ if used == 0 && produced == 0 => return Err(InflateError::Corrupt),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn params(no_takeover: bool) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: no_takeover,
            client_no_context_takeover: no_takeover,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }

    /// A client's compressor: the server's with the roles' parameters swapped.
    fn client(p: &DeflateParams) -> Deflater {
        Deflater::new(
            &DeflateParams {
                server_no_context_takeover: p.client_no_context_takeover,
                server_max_window_bits: p.client_max_window_bits,
                ..*p
            },
            6,
        )
    }

    #[test]
    fn messages_round_trip_with_and_without_context_takeover() {
        for no_takeover in [false, true] {
            let p = params(no_takeover);
            let (mut sender, mut receiver) = (client(&p), Inflater::new(&p));
            for message in [&b"Hello"[..], b"", &[7u8; 100_000], b"", b"Hello"] {
                let mut wire = Vec::new();
                sender.compress(message, &mut wire);
                assert!(!wire.ends_with(&TRAILER));
                let mut back = Vec::new();
                receiver.inflate(&wire, 1 << 20, &mut back).unwrap();
                assert_eq!(back, message);
            }
        }
    }

    #[test]
    fn the_rfc_example_inflates() {
        // RFC 7692 §7.2.3.1: "Hello" compressed, as one frame.
        let wire = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let mut out = Vec::new();
        Inflater::new(&params(false))
            .inflate(&wire, 100, &mut out)
            .unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn a_bomb_is_refused_without_allocating_past_the_cap() {
        let p = params(false);
        let mut wire = Vec::new();
        client(&p).compress(&vec![0u8; 10 << 20], &mut wire);
        assert!(
            wire.len() < 20 << 10,
            "10 MiB of zeros: {} bytes",
            wire.len()
        );
        let mut inflater = Inflater::new(&p);
        let mut out = Vec::new();
        let cap = 64 << 10;
        assert_eq!(
            inflater.inflate(&wire, cap, &mut out),
            Err(InflateError::TooBig)
        );
        assert!(out.capacity() <= cap + 1, "capacity {}", out.capacity());
        assert!(out.is_empty());
        // Exactly at the cap is fine.
        let mut exact = Vec::new();
        client(&p).compress(&vec![1u8; cap], &mut exact);
        let mut out = Vec::new();
        Inflater::new(&p).inflate(&exact, cap, &mut out).unwrap();
        assert_eq!(out.len(), cap);
    }

    #[test]
    fn an_empty_message_is_one_byte_and_an_empty_payload_inflates_to_nothing() {
        let p = params(false);
        let mut wire = Vec::new();
        client(&p).compress(b"", &mut wire);
        assert_eq!(wire, [0x00]);
        let mut inflater = Inflater::new(&p);
        let mut out = Vec::new();
        inflater.inflate(&[], 10, &mut out).unwrap();
        inflater.inflate(&wire, 10, &mut out).unwrap();
        assert!(out.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn any_messages_round_trip_under_any_parameters(
            messages in proptest::collection::vec(
                proptest::collection::vec(0u8..4, 0..3000), 1..6),
            no_takeover: bool,
            server_bits in 9u8..=15,
            client_bits in 9u8..=15,
        ) {
            let p = DeflateParams {
                server_no_context_takeover: no_takeover,
                client_no_context_takeover: no_takeover,
                server_max_window_bits: server_bits,
                client_max_window_bits: client_bits,
            };
            let (mut sender, mut receiver) = (client(&p), Inflater::new(&p));
            for message in &messages {
                let mut wire = Vec::new();
                sender.compress(message, &mut wire);
                let mut back = Vec::new();
                receiver.inflate(&wire, message.len(), &mut back).unwrap();
                proptest::prop_assert_eq!(&back, message);
            }
        }
    }

    #[test]
    fn garbage_is_corrupt() {
        let mut out = Vec::new();
        let result = Inflater::new(&params(false)).inflate(&[0xff; 16], 1 << 20, &mut out);
        assert_eq!(result, Err(InflateError::Corrupt));
    }
}
