//! One member connection of the broadcast load: its one read buffer, the frames it parses in
//! place and verifies, the pongs it answers the server's pings with, its close handshake; and
//! the masked client frames it writes.

use std::io;
use std::ops::Range;

use compio::BufResult;
use compio::io::{AsyncReadExt, AsyncWriteExt};
use compio::net::TcpStream;
use ringstream_protocol::ws::{FrameHeader, OpCode, apply_mask};

use super::super::ws::{Client, KEY};
use super::message::{Header, Received, Verifier, Violation, encode_message};

/// Free room a read needs at the end of the buffer; below it, unparsed bytes move to the front.
const MIN_READ_ROOM: usize = 16 * 1024;
/// Largest server frame accepted (the server's `max_message_size` is far below it).
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Appends a masked client frame carrying `payload`.
pub(super) fn push_client_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    push_client_header(out, opcode, payload.len());
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], KEY, 0);
}

/// Appends the header of a masked client frame of `len` payload bytes.
fn push_client_header(out: &mut Vec<u8>, opcode: OpCode, len: usize) {
    FrameHeader {
        fin: true,
        rsv: 0,
        opcode,
        mask: Some(KEY),
        payload_len: len as u64,
    }
    .write(out);
}

/// Appends message `header` as a masked binary frame of `size` payload bytes.
pub(super) fn push_message(out: &mut Vec<u8>, header: Header, size: usize) {
    push_client_header(out, OpCode::Binary, size);
    let start = out.len();
    out.resize(start + size, 0);
    encode_message(header, &mut out[start..]);
    apply_mask(&mut out[start..], KEY, 0);
}

/// One member connection: its stream, its one read buffer, its verifier.
pub(super) struct Member {
    /// The upgraded connection.
    pub(super) stream: TcpStream,
    /// Bytes read; `buf[pos..]` is not parsed yet.
    buf: Vec<u8>,
    pos: usize,
    /// Pongs and the close waiting to be written (allocated by the first ping).
    out: Vec<u8>,
    /// Checks every message received.
    pub(super) verifier: Verifier,
}

impl Member {
    /// A member on an upgraded `client`, checking what it receives with `verifier`.
    pub(super) fn new(client: Client, verifier: Verifier) -> Self {
        Self {
            stream: client.stream,
            buf: client.buf,
            pos: client.pos,
            out: Vec::new(),
            verifier,
        }
    }

    /// Reads more bytes. Parsed bytes are dropped first, and unparsed ones move to the front
    /// when the room runs low, so the buffer keeps its size however long the stream runs.
    pub(super) async fn read_more(&mut self) -> io::Result<()> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.buf.capacity() - self.buf.len() < MIN_READ_ROOM {
            self.buf.drain(..self.pos);
            self.pos = 0;
            // Only a frame larger than the buffer needs more.
            self.buf.reserve(MIN_READ_ROOM);
        }
        let BufResult(result, buf) = self.stream.append(std::mem::take(&mut self.buf)).await;
        self.buf = buf;
        match result? {
            0 => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            _ => Ok(()),
        }
    }

    /// The next complete frame in the buffer and its payload's range, or `None`.
    fn next_frame(&mut self) -> io::Result<Option<(FrameHeader, Range<usize>)>> {
        let Some((header, len)) = FrameHeader::parse(&self.buf[self.pos..])
            .map_err(|e| io::Error::other(format!("bad server frame: {e:?}")))?
        else {
            return Ok(None);
        };
        let payload = usize::try_from(header.payload_len)
            .ok()
            .filter(|&n| n <= MAX_FRAME)
            .ok_or_else(|| io::Error::other("server frame too large"))?;
        if header.mask.is_some() || !header.fin {
            return Err(io::Error::other("masked or fragmented server frame"));
        }
        let start = self.pos + len;
        if self.buf.len() < start + payload {
            return Ok(None);
        }
        self.pos = start + payload;
        Ok(Some((header, start..self.pos)))
    }

    /// Handles every complete frame in the buffer: binary messages go to `on_message`
    /// verified, pings get a pong queued; a close from the server is an error.
    pub(super) fn take_frames(
        &mut self,
        mut on_message: impl FnMut(Result<Received, Violation>),
    ) -> io::Result<()> {
        while let Some((header, range)) = self.next_frame()? {
            match header.opcode {
                OpCode::Binary => on_message(self.verifier.check(&self.buf[range])),
                // The server pings every heartbeat_interval, busy or not.
                OpCode::Ping => push_client_frame(&mut self.out, OpCode::Pong, &self.buf[range]),
                OpCode::Pong => {}
                OpCode::Close => {
                    return Err(io::Error::other(format!(
                        "closed by the server: {}",
                        describe_close(&self.buf[range])
                    )));
                }
                other => return Err(io::Error::other(format!("unexpected {other:?} frame"))),
            }
        }
        Ok(())
    }

    /// Writes the queued pongs.
    pub(super) async fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let BufResult(result, mut out) = self.stream.write_all(std::mem::take(&mut self.out)).await;
        out.clear();
        self.out = out;
        result
    }

    /// The close handshake (RFC 6455 §5.5.1): sends 1000, reads up to the server's close.
    pub(super) async fn close(mut self) -> io::Result<()> {
        self.out.clear();
        push_client_frame(&mut self.out, OpCode::Close, &1000u16.to_be_bytes());
        self.flush().await?;
        loop {
            while let Some((header, _)) = self.next_frame()? {
                if header.opcode == OpCode::Close {
                    return Ok(());
                }
            }
            self.read_more().await?;
        }
    }
}

/// `1008 slow consumer` from a close frame's payload.
fn describe_close(payload: &[u8]) -> String {
    match payload {
        [hi, lo, reason @ ..] => format!(
            "{} {}",
            u16::from_be_bytes([*hi, *lo]),
            String::from_utf8_lossy(reason)
        ),
        _ => "no status".into(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use ringstream_protocol::ws::{FrameHeader, OpCode, apply_mask};

    use super::super::message::{Header, Received, Verifier, encode_message};
    use super::push_message;

    fn message(header: Header, size: usize) -> Vec<u8> {
        let mut payload = vec![0; size];
        encode_message(header, &mut payload);
        payload
    }

    #[test]
    fn published_frames_unmask_to_the_message() {
        let mut out = Vec::new();
        let header = Header {
            publisher: 1,
            seq: 0,
            sent_ns: 1234,
        };
        push_message(&mut out, header, 200);
        let (frame, len) = FrameHeader::parse(&out).unwrap().unwrap();
        assert_eq!((frame.opcode, frame.payload_len), (OpCode::Binary, 200));
        let mut payload = out[len..].to_vec();
        apply_mask(&mut payload, frame.mask.unwrap(), 0);
        assert_eq!(payload, message(header, 200)[..]);
        let mut verifier = Verifier::new(2, 200);
        assert_eq!(verifier.check(&payload), Ok(Received::Message(header)));
    }
}
