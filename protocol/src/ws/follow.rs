//! Following the frames of a byte stream that passes through without being held: where each
//! frame starts, whether it ends a message, and the code of a close frame. A proxy's tunnel
//! passes an upstream's frames to the client as they come and uses this to count the
//! messages and to learn who closed, at the cost of one header parse per frame.

use super::coding::OpCode;
use super::frame::{FrameHeader, MAX_HEADER_LEN};

/// Where a stream is in its frames, across the chunks it arrives in.
#[derive(Debug, Default, Clone)]
pub struct FrameFollower {
    /// Payload bytes of the current frame still to come before the next header.
    skip: u64,
    /// The start of a header split across chunks.
    partial: [u8; MAX_HEADER_LEN],
    partial_len: usize,
    /// The current frame is a close frame whose code has not been read yet (its payload
    /// bytes read so far, 0 or 1, are in `code_bytes`).
    close_pending: Option<(u8, usize)>,
    /// Whole messages seen (data frames with FIN set).
    messages: u64,
    /// The first close frame's code: `Some(None)` for a close frame without one.
    close: Option<Option<u16>>,
    /// A header that is not a valid frame: following stopped.
    lost: bool,
}

impl FrameFollower {
    /// Follows `chunk`, the next bytes of the stream.
    pub fn follow(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() && !self.lost {
            if self.skip > 0 {
                let take = usize::try_from(self.skip).map_or(chunk.len(), |s| s.min(chunk.len()));
                self.read_close_code(&chunk[..take]);
                self.skip -= take as u64;
                chunk = &chunk[take..];
                continue;
            }
            let taken = if self.partial_len == 0 {
                match FrameHeader::parse(chunk) {
                    Ok(Some((header, len))) => {
                        self.start_frame(&header);
                        len
                    }
                    Ok(None) => {
                        self.partial[..chunk.len()].copy_from_slice(chunk);
                        self.partial_len = chunk.len();
                        chunk.len()
                    }
                    Err(_) => {
                        self.lost = true;
                        return;
                    }
                }
            } else {
                // Complete the split header from this chunk.
                let had = self.partial_len;
                let add = (MAX_HEADER_LEN - had).min(chunk.len());
                self.partial[had..had + add].copy_from_slice(&chunk[..add]);
                match FrameHeader::parse(&self.partial[..had + add]) {
                    Ok(Some((header, len))) => {
                        self.partial_len = 0;
                        self.start_frame(&header);
                        len - had
                    }
                    Ok(None) => {
                        self.partial_len = had + add;
                        add
                    }
                    Err(_) => {
                        self.lost = true;
                        return;
                    }
                }
            };
            chunk = &chunk[taken..];
        }
    }

    /// Whether the stream followed so far ends between two frames (where another frame may
    /// be inserted).
    pub fn at_boundary(&self) -> bool {
        self.skip == 0 && self.partial_len == 0 && !self.lost
    }

    /// Whole messages seen so far.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// The first close frame seen: `Some(Some(code))`, `Some(None)` for one without a code,
    /// `None` before any (or when its code was not readable).
    pub fn close(&self) -> Option<Option<u16>> {
        self.close
    }

    fn start_frame(&mut self, header: &FrameHeader) {
        self.skip = header.payload_len;
        match header.opcode {
            OpCode::Close if self.close.is_none() && self.close_pending.is_none() => {
                if header.payload_len < 2 {
                    self.close = Some(None);
                } else {
                    self.close_pending = Some((0, 0));
                }
            }
            OpCode::Text | OpCode::Binary | OpCode::Continuation if header.fin => {
                self.messages += 1;
            }
            _ => {}
        }
    }

    /// Reads what `payload` holds of a pending close frame's code.
    fn read_close_code(&mut self, payload: &[u8]) {
        let Some((first, have)) = self.close_pending.as_mut() else {
            return;
        };
        for &byte in payload.iter().take(2 - *have) {
            if *have == 0 {
                *first = byte;
            } else {
                self.close = Some(Some(u16::from_be_bytes([*first, byte])));
            }
            *have += 1;
        }
        if *have == 2 {
            self.close_pending = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::session::{write_close_frame, write_frame_header};

    fn stream() -> Vec<u8> {
        let mut s = Vec::new();
        write_frame_header(&mut s, OpCode::Text, true, 3);
        s.extend_from_slice(b"abc");
        write_frame_header(&mut s, OpCode::Binary, false, 300);
        s.extend_from_slice(&[7; 300]);
        write_frame_header(&mut s, OpCode::Ping, true, 0);
        write_frame_header(&mut s, OpCode::Continuation, true, 70_000);
        s.extend_from_slice(&vec![1; 70_000]);
        write_close_frame(&mut s, Some(4001), b"bye");
        s
    }

    #[test]
    fn messages_and_the_close_code_are_found_whatever_the_chunks() {
        let bytes = stream();
        for size in [1, 2, 3, 7, 13, 100, 4096, bytes.len()] {
            let mut follower = FrameFollower::default();
            for chunk in bytes.chunks(size) {
                follower.follow(chunk);
            }
            assert_eq!(follower.messages(), 2, "chunks of {size}");
            assert_eq!(follower.close(), Some(Some(4001)), "chunks of {size}");
            assert!(follower.at_boundary());
        }
        let mut half = FrameFollower::default();
        half.follow(&bytes[..bytes.len() / 2]);
        assert!(!half.at_boundary());
    }

    #[test]
    fn a_close_without_a_code_and_garbage_are_told_apart() {
        let mut follower = FrameFollower::default();
        let mut close = Vec::new();
        write_frame_header(&mut close, OpCode::Close, true, 0);
        follower.follow(&close);
        assert_eq!(follower.close(), Some(None));

        let mut lost = FrameFollower::default();
        lost.follow(&[0x83, 0x00, 0x81, 0x00]);
        assert_eq!((lost.messages(), lost.close()), (0, None));
    }
}
