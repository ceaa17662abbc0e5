//! permessage-deflate (RFC 7692): negotiating it in the handshake (`offer`) and compressing and
//! decompressing messages with a cap on what a message may inflate to (`codec`).
//!
//! The engine does not offer it to clients yet (planned: a route option, compression of what
//! the server sends, once per parameter set for broadcast); `Session::with_deflate` takes
//! compressed messages.

mod codec;
mod offer;

pub use codec::{Deflater, InflateError, Inflater};
pub use offer::{DeflateConfig, DeflateParams, negotiate};
