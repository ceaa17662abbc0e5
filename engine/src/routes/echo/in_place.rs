//! Echoes answered from the read buffer itself (the turbo echo): the client frame's header is
//! rewritten into the server's in place, and the frames leave from there without a copy.

use std::ops::Range;

use ringstream_protocol::ws::OpCode;
use ringstream_protocol::ws::frame::{FrameHeader, MAX_HEADER_LEN};

/// The server frames waiting in the read buffer, as ranges of it, in order. One is held inline:
/// a read holding a lone message, the usual case, touches no vector; from two on they all go
/// to `many`.
#[derive(Debug, Default)]
pub struct InPlaceEchoes {
    one: Option<Range<usize>>,
    many: Vec<Range<usize>>,
}

impl InPlaceEchoes {
    /// Whether no echo waits.
    pub fn is_empty(&self) -> bool {
        self.one.is_none() && self.many.is_empty()
    }

    /// How many echoes wait.
    pub fn len(&self) -> usize {
        if self.one.is_some() {
            1
        } else {
            self.many.len()
        }
    }

    /// The length of the first waiting echo.
    pub fn first_len(&self) -> Option<usize> {
        self.one
            .as_ref()
            .or(self.many.first())
            .map(ExactSizeIterator::len)
    }

    /// Adds the next echo.
    pub fn push(&mut self, frame: Range<usize>) {
        if self.is_empty() {
            self.one = Some(frame);
            return;
        }
        if let Some(one) = self.one.take() {
            self.many.push(one);
        }
        self.many.push(frame);
    }

    /// The lone waiting echo, taken out; `None` when none or several wait.
    pub fn take_one(&mut self) -> Option<Range<usize>> {
        self.one.take()
    }

    /// The several waiting echoes, taken out (the vector is handed back with
    /// [`InPlaceEchoes::restore`] to keep its allocation).
    pub fn take_many(&mut self) -> Vec<Range<usize>> {
        std::mem::take(&mut self.many)
    }

    /// Gives back the vector [`InPlaceEchoes::take_many`] took, emptied.
    pub fn restore(&mut self, mut many: Vec<Range<usize>>) {
        many.clear();
        self.many = many;
    }

    /// Takes every waiting echo out, in order.
    pub fn drain(&mut self) -> impl Iterator<Item = Range<usize>> + '_ {
        self.one.take().into_iter().chain(self.many.drain(..))
    }
}

/// Turns a client frame whose payload sits at `payload` in `buf` (already unmasked) into the
/// server's echo of it, in place: the server header (no mask, so exactly 4 bytes shorter than
/// the client's, lengths being minimal on both sides) is written just before the payload.
/// Returns the range of the server frame.
pub fn rewrite_in_place(buf: &mut [u8], payload: Range<usize>, opcode: OpCode) -> Range<usize> {
    let mut header = [0u8; MAX_HEADER_LEN];
    let len = FrameHeader {
        fin: true,
        rsv: 0,
        opcode,
        mask: None,
        payload_len: payload.len() as u64,
    }
    .encode(&mut header);
    let start = payload.start - len;
    buf[start..payload.start].copy_from_slice(&header[..len]);
    start..payload.end
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use ringstream_protocol::ws::{apply_mask, write_frame_header};

    #[test]
    fn an_echo_rewritten_in_place_is_the_server_frame() {
        for len in [0usize, 5, 125, 126, 300, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let key = [1, 2, 3, 4];
            let mut buf = Vec::new();
            FrameHeader {
                fin: true,
                rsv: 0,
                opcode: OpCode::Binary,
                mask: Some(key),
                payload_len: len as u64,
            }
            .write(&mut buf);
            let header_len = buf.len();
            buf.extend_from_slice(&payload);
            apply_mask(&mut buf[header_len..], key, 0);
            // The session unmasks in place before the rewrite.
            apply_mask(&mut buf[header_len..], key, 0);
            let frame = rewrite_in_place(&mut buf, header_len..header_len + len, OpCode::Binary);
            let mut expected = Vec::new();
            write_frame_header(&mut expected, OpCode::Binary, true, len as u64);
            expected.extend_from_slice(&payload);
            assert_eq!(&buf[frame], &expected[..], "len {len}");
        }
    }

    #[test]
    fn a_lone_echo_stays_inline_and_several_keep_their_order() {
        let mut echoes = InPlaceEchoes::default();
        assert!(echoes.is_empty());
        echoes.push(0..10);
        assert_eq!((echoes.len(), echoes.first_len()), (1, Some(10)));
        assert_eq!(echoes.take_one(), Some(0..10));
        assert!(echoes.is_empty());
        echoes.push(0..10);
        echoes.push(10..30);
        echoes.push(30..31);
        assert_eq!((echoes.len(), echoes.first_len()), (3, Some(10)));
        assert_eq!(echoes.take_one(), None);
        let many = echoes.take_many();
        assert_eq!(many, [0..10, 10..30, 30..31]);
        echoes.restore(many);
        assert!(echoes.is_empty());
        echoes.push(0..4);
        echoes.push(4..8);
        assert_eq!(echoes.drain().collect::<Vec<_>>(), [0..4, 4..8]);
        assert!(echoes.is_empty());
    }
}
