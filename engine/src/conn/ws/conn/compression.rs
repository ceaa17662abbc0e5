//! What the server sends compressed on a connection that agreed permessage-deflate: the echo
//! route's replies. A topic's messages are compressed once per delivery for all its members
//! (`routes/broadcast/compress.rs`); a handler's go uncompressed, which RFC 7692 allows
//! message by message.
//!
//! When the server starts every message afresh (`deflate_context_takeover = false`, the
//! default), the reply is compressed by the worker's shared compressor for its window size
//! ([`FreshCompressors`]): a connection holds no compression memory, and no compressor is made
//! per message. With context takeover the connection owns its compressor, made for its first
//! message and kept.

use std::cell::RefCell;

use ringstream_protocol::ws::OpCode;
use ringstream_protocol::ws::deflate::{DeflateParams, Deflater};

use crate::config::DEFLATE_LEVEL;
use crate::routes::broadcast::compress::{FreshCompressors, write_compressed_frame};

/// A scratch buffer larger than this is given back after its message.
const KEEP_SCRATCH: usize = 64 * 1024;

/// One connection's side of compression.
#[derive(Debug)]
pub(super) struct Compression {
    params: DeflateParams,
    /// With context takeover: the connection's own compressor and its scratch buffer.
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

    /// Appends to `out` one compressed data frame carrying `prefix` then `body`; `fresh` is
    /// the worker's shared compressors.
    pub(super) fn write_frame(
        &mut self,
        out: &mut Vec<u8>,
        opcode: OpCode,
        prefix: &[u8],
        body: &[u8],
        fresh: &RefCell<FreshCompressors>,
    ) {
        let joined;
        let message = if prefix.is_empty() {
            body
        } else {
            joined = [prefix, body].concat();
            &joined
        };
        let params = self.params;
        if params.server_no_context_takeover {
            fresh
                .borrow_mut()
                .write_frame(params.server_max_window_bits, opcode, message, out);
            return;
        }
        self.scratch.clear();
        self.deflater
            .get_or_insert_with(|| Box::new(Deflater::new(&params, DEFLATE_LEVEL)))
            .compress(message, &mut self.scratch);
        write_compressed_frame(opcode, &self.scratch, out);
        if self.scratch.capacity() > KEEP_SCRATCH {
            self.scratch = Vec::new();
        }
    }
}
