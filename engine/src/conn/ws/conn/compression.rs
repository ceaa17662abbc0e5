//! What the server sends compressed on a connection that agreed permessage-deflate: the echo
//! route's replies. A topic's messages are compressed once per delivery for all its members
//! (`routes/broadcast/compress.rs`); a handler's go uncompressed, which RFC 7692 allows
//! message by message.
//!
//! The compressor is made for the first message and, when the server starts every message
//! afresh (`deflate_context_takeover = false`), dropped after each one: an idle connection then
//! holds no compression memory.

use ringstream_protocol::ws::OpCode;

use crate::config::DEFLATE_LEVEL;
use ringstream_protocol::ws::deflate::{DeflateParams, Deflater};
use ringstream_protocol::ws::frame::FrameHeader;

/// A scratch buffer larger than this is given back after its message.
const KEEP_SCRATCH: usize = 64 * 1024;

/// One connection's side of compression.
#[derive(Debug)]
pub(super) struct Compression {
    params: DeflateParams,
    deflater: Option<Box<Deflater>>,
    scratch: Vec<u8>,
}

impl Compression {
    pub(super) fn new(params: DeflateParams) -> Self {
        Self {
            params,
            deflater: None,
            scratch: Vec::new(),
        }
    }

    /// Appends to `out` one compressed data frame carrying `prefix` then `body`.
    pub(super) fn write_frame(
        &mut self,
        out: &mut Vec<u8>,
        opcode: OpCode,
        prefix: &[u8],
        body: &[u8],
    ) {
        let params = self.params;
        let deflater = self
            .deflater
            .get_or_insert_with(|| Box::new(Deflater::new(&params, DEFLATE_LEVEL)));
        self.scratch.clear();
        if prefix.is_empty() {
            deflater.compress(body, &mut self.scratch);
        } else {
            deflater.compress(&[prefix, body].concat(), &mut self.scratch);
        }
        FrameHeader {
            fin: true,
            rsv: 0b100,
            opcode,
            mask: None,
            payload_len: self.scratch.len() as u64,
        }
        .write(out);
        out.extend_from_slice(&self.scratch);
        if params.server_no_context_takeover {
            self.deflater = None;
        }
        if self.scratch.capacity() > KEEP_SCRATCH {
            self.scratch = Vec::new();
        }
    }
}
